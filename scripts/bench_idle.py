#!/usr/bin/env python3
"""The idle-connections row of scripts/bench.py (issue 15), and its helpers.

  bench_idle.py HOST PORT N SRC [OPEN_SECS]

opens N connections to HOST:PORT from address SRC and holds them until
stdin closes (one of several client processes: open files are capped at
20,000 per process here, and one source address has only so many
ephemeral ports).

  bench_idle.py hold PORT

is the kernel contender's server for the idle connections: it listens on
PORT with SO_REUSEPORT (several of them share the connections, each under
the open-file cap), accepts and holds every connection until stdin closes.
"""
import os
import re
import resource
import selectors
import socket
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "py"))
from connectmany import connect_many  # noqa: E402 (the path above first)

# Idle connections the tcp_idle_conns row holds open (issue 15: 100,000).
IDLE_CONNS = int(os.environ.get("BENCH_IDLE_CONNS", "100000"))
# Per client process (open files are capped at 20,000 per process here) and
# per kernel source address (its ephemeral ports).
IDLE_PER_CLIENT = 16000
# Per kernel holder process: SO_REUSEPORT spreads connections by a hash of
# the 4-tuple, not evenly, so well under the 20,000 cap.
IDLE_PER_HOLDER = 12000
# The kernel contender's idle connections go to the holders on this port;
# its request/response still runs against `tapbench serve-echo` on port 7.
HOLD_PORT = 7007
# Each contender's connections must be open within this many seconds: with
# the request/response runs and the settling, the row takes at most about
# (OPEN_SECS + 2 * BENCH_SECS + 40) s per contender.
IDLE_OPEN_SECS = float(os.environ.get("BENCH_IDLE_OPEN_SECS", "120"))
# Issue 15: 100,000 idle connections in 512 MiB of the stack's RSS.
IDLE_RSS_TARGET = 512 * 2**20 / 100000
# The slab caches an idle TCP socket and its file descriptor occupy (those
# of them this kernel has unmerged; the sum is over those present).
SOCKET_CACHES = ("TCP", "request_sock_TCP", "sock_inode_cache", "filp", "dentry",
                 "eppoll_epi", "tcp_bind_bucket", "tcp_bind2_bucket", "skbuff_head_cache")
PAGE = os.sysconf("SC_PAGE_SIZE")


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


def kernel_mem():
    """The kernel's memory (machine-wide, in bytes): "caches" = pages held
    by the SOCKET_CACHES slab caches (/proc/slabinfo), "slab" = Slab of
    /proc/meminfo (every cache: noisy while other work runs), "tcp_buf" =
    TCP buffer pages (the `mem` of /proc/net/sockstat)."""
    caches = 0
    with open("/proc/slabinfo") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] in SOCKET_CACHES:
                # name active num objsize perslab pagesperslab : ... : slabdata active num
                caches += int(parts[-2]) * int(parts[5]) * PAGE
    with open("/proc/meminfo") as f:
        slab = int(re.search(r"^Slab:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024
    with open("/proc/net/sockstat") as f:
        tcp_buf = int(re.search(r"^TCP:.* mem (\d+)", f.read(), re.M).group(1)) * PAGE
    return {"caches": caches, "slab": slab, "tcp_buf": tcp_buf}


def fd_count(pids):
    n = 0
    for pid in pids:
        try:
            n += len(os.listdir("/proc/%d/fd" % pid))
        except OSError:
            pass
    return n


def stack_established(c):
    """ESTABLISHED connections a tapstack contender holds (`tapstack ss`
    through its control socket), or None if that cannot be read (an older
    binary). A client whose final handshake ACK the stack dropped (a full
    accept queue behind SYN cookies) counts as open on its side only: the
    row divides by what the stack holds, not by what the clients opened."""
    try:
        out = subprocess.run([getattr(c.args, c.bin_attr), "--api", c.api, "ss"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return sum(1 for line in out.stdout.splitlines() if "ESTAB" in line)


def start_holders(ns, n):
    """The kernel contender's holders (`hold`), enough for n connections;
    returns them once they all listen."""
    holders = []
    try:
        for _ in range(-(-n // IDLE_PER_HOLDER) + 1):
            holders.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, "python3", HERE, "hold", str(HOLD_PORT)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for h in holders:  # bounded: a holder that cannot listen exits
            line = h.stdout.readline()
            if "ready" not in line:
                raise RuntimeError("idle holder did not start: %r" % line)
    except Exception:
        stop_all(holders)
        raise
    return holders


def stop_all(procs):
    for p in procs:  # stdin closing tells them to close and exit
        p.stdin.close()
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def measure(c, client_cpu, secs):
    """Issue 15: IDLE_CONNS idle connections opened at once from the kernel
    side (several client processes, one source address each), the time to
    open them all, the memory they cost the server per connection, and 1 B
    request/response on one more connection (echo, port 7) while all are
    open against the figure with no other connection open.

    tapstack: the stack's VmRSS growth per connection it holds (`ss`; the
    row's value). kernel: the connections go to `hold` processes
    (HOLD_PORT) behind the veth; the row's value is half the growth of the kernel's socket slab caches
    (client and server sockets both live in this one kernel) plus its TCP
    buffer pages; the holders' RSS and whole-Slab growth are in the
    detail. Every contender also records the kernel's growth (for tapstack:
    the client side alone)."""
    n = IDLE_CONNS
    kernel = c.key == "kernel"
    holders = start_holders(c.server_ns, n) if kernel else []
    port = HOLD_PORT if kernel else 7
    pids = [h.pid for h in holders] if kernel else c.server_pids()[:1]
    alone = c.tapbench("rr", 7, secs, "--size", 1, cpu=client_cpu)["per_s"]
    shares = [min(IDLE_PER_CLIENT, n - i) for i in range(0, n, IDLE_PER_CLIENT)]
    prefix = c.target.rsplit(".", 1)[0]
    srcs = ["%s.%d" % (prefix, 100 + i) for i in range(len(shares))]
    clients = []
    try:
        for src in srcs:
            ip(c.client_ns, "add", src, c.idle_dev, check=True)
        fds0, rss0, mem0 = fd_count(pids), sum(vm_rss(p) for p in pids), kernel_mem()
        t0 = time.monotonic()
        # Unpinned: the clients open their shares in parallel.
        clients = [subprocess.Popen(["ip", "netns", "exec", c.client_ns, "python3", HERE,
                                     c.target, str(port), str(k), src, str(IDLE_OPEN_SECS)],
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
        # The last handshakes' ACKs and accepts settle (the holders' accepts
        # are counted: bounded wait for every descriptor).
        time.sleep(1)
        end = time.monotonic() + 30
        while kernel and fd_count(pids) - fds0 < opened and time.monotonic() < end:
            time.sleep(0.2)
        held = fd_count(pids) - fds0
        rss1, mem1 = sum(vm_rss(p) for p in pids), kernel_mem()
        loaded = c.tapbench("rr", 7, secs, "--size", 1, cpu=client_cpu)["per_s"]
        # Counted after the measurements (listing 10^5 sockets allocates).
        stack_held = None if kernel else stack_established(c)
    finally:
        stop_all(clients)
        stop_all(holders)
        for src in srcs:
            ip(c.client_ns, "del", src, c.idle_dev, check=False)
    if kernel and held < opened:
        raise RuntimeError("the holders accepted %d of %d connections" % (held, opened))
    grew = {k: (mem1[k] - mem0[k]) / opened for k in mem0}
    if stack_held is not None and stack_held < 0.9 * opened:
        print("bench: idle row: the stack holds %d of the %d connections the clients "
              "opened" % (stack_held, opened), file=sys.stderr, flush=True)
    rss_per = (rss1 - rss0) / (stack_held or opened)
    value = (grew["caches"] / 2 + grew["tcp_buf"]) if kernel else rss_per
    return value, {"connections": opened, "open_secs": open_secs,
                   "open_per_s": opened / open_secs, "rss_before": rss0, "rss_after": rss1,
                   "server_rss_per_conn": rss_per, "stack_established": stack_held,
                   "kernel_caches_per_conn": grew["caches"],
                   "kernel_slab_per_conn": grew["slab"],
                   "kernel_tcp_buf_per_conn": grew["tcp_buf"],
                   "rr_alone_per_s": alone, "rr_all_open_per_s": loaded,
                   "rr_ratio": loaded / alone}


def idle_clients(host, port, n, src, open_secs):
    """Opens n connections from src (at most 512 handshakes in flight, for
    at most open_secs), prints open=K failed=F secs=T, holds them until
    stdin closes (or 600 s), then closes them. Every wait is bounded."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    start = time.monotonic()
    opened, failed = connect_many(host, port, n, src, 512, start + open_secs)
    print("open=%d failed=%d secs=%.3f" % (len(opened), failed, time.monotonic() - start),
          flush=True)
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ)
    sel.select(timeout=600)
    for s in opened:
        s.close()


def hold(port):
    """Accepts connections on port (SO_REUSEPORT) and holds them, idle,
    until stdin closes (or 900 s)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(4096)
    ls.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(ls, selectors.EVENT_READ)
    sel.register(sys.stdin, selectors.EVENT_READ)
    print("ready", flush=True)
    held = []
    end = time.monotonic() + 900
    while time.monotonic() < end:
        for key, _ in sel.select(timeout=1.0):
            if key.fileobj is not ls:  # stdin closed: done
                return
            for _ in range(256):
                try:
                    held.append(ls.accept()[0])
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as e:  # EMFILE: keep what we hold, accept no more
                    print("hold: %s" % e, file=sys.stderr, flush=True)
                    sel.unregister(ls)
                    break


def report(by_key, verdicts):
    """Prints the row against issue 15's targets (tapstack); adds the
    verdicts. The kernel and an older tapstack (`before`) are informational."""
    idle = by_key.get("tcp_idle_conns")
    if not idle:
        return
    runs = {k: ((idle.get(k + "_detail") or {}).get("runs") or [None])[0]
            for k in ("tapstack", "before", "kernel")}
    d = runs["tapstack"]
    if d:
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
        print("  info  the kernel (client side) grew %.0f B per connection in its socket "
              "slab caches meanwhile" % d["kernel_caches_per_conn"])
        verdicts.append({"metric": "tcp_idle_conns", "vs": "target", "target": IDLE_RSS_TARGET,
                         "ratio": idle["tapstack"], "verdict": "PASS" if rss_ok else "FAIL",
                         "issue": 15})
        verdicts.append({"metric": "tcp_idle_conns_rr", "vs": "alone", "target": 0.8,
                         "ratio": d["rr_ratio"], "verdict": "PASS" if rr_ok else "FAIL",
                         "issue": 15})
    b = runs["before"]
    if b:
        print("  info  before: RSS per idle connection %.0f B, opened in %.1f s, rr with all "
              "open %.2fx alone" % (idle["before"], b["open_secs"], b["rr_ratio"]))
    k = runs["kernel"]
    if k:
        print("  info  kernel (server behind a veth, python holders on port %d, rr on "
              "tapbench serve-echo): opened in %.1f s (%.0f/s), rr with all open %.0f/s vs "
              "alone %.0f/s: %.2fx" % (HOLD_PORT, k["open_secs"], k["open_per_s"],
                                       k["rr_all_open_per_s"], k["rr_alone_per_s"],
                                       k["rr_ratio"]))
        print("        kernel memory per connection %.0f B = half the growth of its socket "
              "slab caches (%s; both ends' sockets are in this one kernel: %.0f B) + TCP "
              "buffer pages (sockstat mem: %.0f B); whole Slab of /proc/meminfo grew %.0f B "
              "(machine-wide); the holders' RSS (python, not counted) %.0f B"
              % (idle["kernel"], ", ".join(SOCKET_CACHES), k["kernel_caches_per_conn"],
                 k["kernel_tcp_buf_per_conn"], k["kernel_slab_per_conn"],
                 k["server_rss_per_conn"]))


if __name__ == "__main__":
    if sys.argv[1] == "hold":
        hold(int(sys.argv[2]))
    else:
        idle_clients(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4],
                     float(sys.argv[5]) if len(sys.argv) > 5 else IDLE_OPEN_SECS)
