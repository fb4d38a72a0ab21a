#!/usr/bin/env python3
"""The idle-connections row of scripts/bench.py (issue 15), and its client.

  bench_idle.py HOST PORT N SRC

opens N connections to HOST:PORT from address SRC and holds them until
stdin closes (one of several client processes: open files are capped at
20,000 per process here, and one source address has only so many
ephemeral ports).
"""
import errno
import os
import re
import resource
import selectors
import socket
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)
# Idle connections the tcp_idle_conns row holds open (issue 15: 100,000).
IDLE_CONNS = int(os.environ.get("BENCH_IDLE_CONNS", "100000"))
# Per client process (open files are capped at 20,000 per process here) and
# per kernel source address (its ephemeral ports).
IDLE_PER_CLIENT = 16000
# Issue 15: 100,000 idle connections in 512 MiB of the stack's RSS.
IDLE_RSS_TARGET = 512 * 2**20 / 100000


def ip(ns, op, src, dev, check):
    """`ip addr add|del SRC/24 dev DEV` in namespace NS."""
    out = subprocess.run(["ip", "-n", ns, "addr", op, src + "/24", "dev", dev],
                         capture_output=True, text=True, timeout=20)
    if check and out.returncode != 0:
        raise RuntimeError("ip addr %s %s failed: %s" % (op, src, out.stderr.strip()))


def vm_rss(pid):
    """Resident memory of a process, in bytes."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS for %d" % pid)


def measure(c, client_cpu, secs):
    """Issue 15: IDLE_CONNS idle connections to echo opened at once from the
    kernel side (several client processes, one source address each), the
    time to open them all, the stack's VmRSS growth per connection, and 1 B
    request/response on one more connection while all are open against the
    figure with no other connection open."""
    n = IDLE_CONNS
    pid = c.server_pid()
    alone = c.tapbench("rr", 7, secs, "--size", 1, cpu=client_cpu)["per_s"]
    shares = [min(IDLE_PER_CLIENT, n - i) for i in range(0, n, IDLE_PER_CLIENT)]
    srcs = ["10.0.0.%d" % (100 + i) for i in range(len(shares))]
    clients = []
    try:
        for src in srcs:
            ip(c.client_ns, "add", src, c.tap, check=True)
        rss0 = vm_rss(pid)
        t0 = time.monotonic()
        # Unpinned: the clients open their shares in parallel.
        clients = [subprocess.Popen(["ip", "netns", "exec", c.client_ns, "python3", HERE,
                                     c.target, "7", str(k), src],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                   for k, src in zip(shares, srcs)]
        opened = failed = 0
        for p in clients:  # each prints once all its connections are up (bounded)
            kv = dict(re.findall(r"(\w+)=(\S+)", p.stdout.readline()))
            opened += int(kv.get("open", 0))
            failed += int(kv.get("failed", 0))
        open_secs = time.monotonic() - t0
        if opened < n:
            raise RuntimeError("opened %d of %d idle connections (%d failed)"
                               % (opened, n, failed))
        time.sleep(1)  # the last handshakes' ACKs and accepts settle
        rss1 = vm_rss(pid)
        loaded = c.tapbench("rr", 7, secs, "--size", 1, cpu=client_cpu)["per_s"]
    finally:
        for p in clients:  # stdin closing tells them to close and exit
            p.stdin.close()
        for p in clients:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for src in srcs:
            ip(c.client_ns, "del", src, c.tap, check=False)
    per_conn = (rss1 - rss0) / opened
    return per_conn, {"connections": opened, "open_secs": open_secs,
                      "open_per_s": opened / open_secs, "rss_before": rss0, "rss_after": rss1,
                      "rr_alone_per_s": alone, "rr_all_open_per_s": loaded,
                      "rr_ratio": loaded / alone}


def idle_clients(host, port, n, src):
    """Opens n connections from src (at most 512 handshakes in flight),
    prints open=K failed=F secs=T, holds them until stdin closes (or 600 s),
    then closes them. Every wait is bounded."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sel = selectors.DefaultSelector()
    start = time.monotonic()
    end = start + 300
    opened, pending, failed, started = [], 0, 0, 0
    while (started < n or pending) and time.monotonic() < end:
        while started < n and pending < 512:
            s = socket.socket()
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT
            try:
                s.bind((src, 0))
                err = s.connect_ex((host, port))
            except OSError as e:
                err = e.errno
            started += 1
            if err not in (0, errno.EINPROGRESS):
                failed += 1
                s.close()
                continue
            sel.register(s, selectors.EVENT_WRITE)
            pending += 1
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            sel.unregister(s)
            pending -= 1
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                opened.append(s)
            else:
                failed += 1
                s.close()
    print("open=%d failed=%d secs=%.3f" % (len(opened), failed + pending,
                                            time.monotonic() - start), flush=True)
    sel.close()
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ)
    sel.select(timeout=600)
    for s in opened:
        s.close()


def report(by_key, verdicts):
    """Prints the row against issue 15's targets; adds the verdicts."""
    idle = by_key.get("tcp_idle_conns")
    detail = idle and idle["tapstack_detail"].get("runs")
    if detail:
        d = detail[0]
        rss_ok = idle["tapstack"] <= IDLE_RSS_TARGET
        rr_ok = d["rr_ratio"] >= 0.8
        print("\nIssue 15, %d idle connections opened from %d kernel addresses in %.1f s "
              "(%.0f/s):" % (d["connections"], -(-d["connections"] // IDLE_PER_CLIENT),
                            d["open_secs"], d["open_per_s"]))
        print("  %-4s  stack RSS per idle connection %.0f B <= %.0f B (512 MiB / 100,000)"
              % ("PASS" if rss_ok else "FAIL", idle["tapstack"], IDLE_RSS_TARGET))
        print("  %-4s  1 B rr with all open %.0f/s vs alone %.0f/s: %.2fx >= 0.8x"
              % ("PASS" if rr_ok else "FAIL", d["rr_all_open_per_s"], d["rr_alone_per_s"],
                 d["rr_ratio"]))
        verdicts.append({"metric": "tcp_idle_conns", "vs": "target", "target": IDLE_RSS_TARGET,
                         "ratio": idle["tapstack"], "verdict": "PASS" if rss_ok else "FAIL"})
        verdicts.append({"metric": "tcp_idle_conns_rr", "vs": "alone", "target": 0.8,
                         "ratio": d["rr_ratio"], "verdict": "PASS" if rr_ok else "FAIL"})


if __name__ == "__main__":
    idle_clients(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
