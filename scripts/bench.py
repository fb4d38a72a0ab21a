#!/usr/bin/env python3
"""Benchmark driver for scripts/bench.sh (standard library only).

`bench.py drive ...` runs every row of ROWS against every contender and
prints a table (metric | tapstack | kernel<->kernel | ratio) and a JSON file.
The other subcommands are the clients and servers it starts inside the
namespaces (`ip netns exec NS taskset -c CPU python3 bench.py SUB ...`).

Adding a row: write `def row_x(c) -> (value, extra_dict)` using
`c.client(...)`/`c.target`/`with c.serve() as s`, and append it to ROWS.
Adding a contender (e.g. a smoltcp server on a TAP): subclass Contender
and add it to CONTENDERS in `drive`.
"""
import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)
# Placement (see testing-notes): "split" = servers on CPU 1, clients on CPU 0
# (parallel, cross-CPU wake-ups); "same" = everything on CPU 0 (CPU cost
# per operation, most stable). Every contender runs at the same placement.
PLACEMENT = os.environ.get("BENCH_PLACEMENT", "split")
SERVER_CPU, CLIENT_CPU = {"split": ("1", "0"), "same": ("0", "0")}[PLACEMENT]


def ncpu():
    return os.cpu_count() or 1


def pin(cpu):
    return ["taskset", "-c", cpu] if ncpu() > 1 else []


# --------------------------------------------------------------- contenders

class Contender:
    name = "?"
    target = None

    def __init__(self, args):
        self.args = args

    def client(self, argv, timeout):
        """Runs a client in the client namespace; returns stdout."""
        cmd = ["ip", "netns", "exec", self.client_ns] + pin(CLIENT_CPU) + argv
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError("%s failed (%d): %s%s" % (argv[0], out.returncode,
                                                         out.stdout, out.stderr))
        return out.stdout

    def py_client(self, sub, *args, timeout=30):
        return self.client(["python3", HERE, sub] + [str(a) for a in args], timeout)


class Served:
    """What `serve()` yields; `result` is filled when the servers stop."""

    def __init__(self):
        self.result = {}


def spawn(ns, argv, **kw):
    return subprocess.Popen(["ip", "netns", "exec", ns] + pin(SERVER_CPU) + argv,
                            stdin=subprocess.DEVNULL, **kw)


def stop(proc, timeout=5):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out = proc.communicate()
    return out


def wait_ping(ns, ip, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run(["ip", "netns", "exec", ns, "ping", "-n", "-c1", "-W1", ip],
                           capture_output=True, timeout=5)
        if r.returncode == 0:
            return
        time.sleep(0.05)
    raise RuntimeError("%s did not answer ping within %ss" % (ip, timeout))


class Tapstack(Contender):
    name = "tapstack"
    target = "10.0.0.2"

    def __init__(self, args):
        super().__init__(args)
        self.client_ns = args.stack_ns

    class serve:
        def __init__(self, c):
            self.c = c

        def __enter__(self):
            a = self.c.args
            self.proc = spawn(a.stack_ns, [a.bin, "--tap", "tb0", "echo"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
            self.served = Served()
            try:
                wait_ping(a.stack_ns, self.c.target)
            except Exception:
                self.__exit__(None, None, None)
                raise
            return self.served

        def __exit__(self, *exc):
            _, err = stop(self.proc)
            counters = {}
            for line in err.split("tapstack: counters", 1)[-1].splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1].isdigit():
                    counters[parts[0]] = int(parts[1])
            self.served.result = {"counters": counters}
            return False

    def serve_ctx(self):
        return Tapstack.serve(self)


class Kernel(Contender):
    name = "kernel<->kernel"
    target = "10.9.0.2"

    def __init__(self, args):
        super().__init__(args)
        self.client_ns = args.client_ns

    class serve:
        def __init__(self, c):
            self.c = c

        def __enter__(self):
            ns = self.c.args.server_ns
            self.echo = spawn(ns, ["python3", HERE, "udp-echo-server", "0.0.0.0", "7"],
                              stdout=subprocess.PIPE, text=True)
            self.sink = spawn(ns, ["python3", HERE, "udp-sink", "0.0.0.0", "9"],
                              stdout=subprocess.PIPE, text=True)
            self.served = Served()
            for p in (self.echo, self.sink):  # both print "ready" once bound
                line = p.stdout.readline()
                if "ready" not in line:
                    self.__exit__(None, None, None)
                    raise RuntimeError("kernel server did not start: %r" % line)
            wait_ping(self.c.client_ns, self.c.target)
            return self.served

        def __exit__(self, *exc):
            stop(self.echo)
            out, _ = stop(self.sink)
            self.served.result = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", out or "")}
            return False

    def serve_ctx(self):
        return Kernel.serve(self)


# --------------------------------------------------------------------- rows
# Each row: (key, label, unit, better, function(contender) -> (value, extra)).

PING_N, FLOOD_N, DURATION = 1000, 20000, 3.0


def row_ping_rtt(c):
    with c.serve_ctx():
        out = c.client(["ping", "-n", "-c", str(PING_N), "-i", "0.002", "-W", "1",
                        c.target], timeout=60)
    times = [float(t) for t in re.findall(r"time=([\d.]+) ms", out)]
    if len(times) < PING_N * 0.9:
        raise RuntimeError("only %d of %d pings answered" % (len(times), PING_N))
    return statistics.median(times) * 1000.0, {"answered": len(times)}


def row_ping_flood(c):
    with c.serve_ctx():
        out = c.client(["ping", "-n", "-q", "-f", "-c", str(FLOOD_N), "-W", "1",
                        c.target], timeout=60)
    m = re.search(r"(\d+) packets transmitted, (\d+) received.*time (\d+)ms", out)
    if not m:
        raise RuntimeError("no ping summary: %s" % out)
    received, ms = int(m.group(2)), max(int(m.group(3)), 1)
    return received / (ms / 1000.0), {"received": received, "ms": ms}


def row_udp_rr(c):
    with c.serve_ctx():
        out = c.py_client("udp-rr", c.target, 7, DURATION, 64, timeout=DURATION + 20)
    kv = dict(re.findall(r"(\w+)=([\d.]+)", out))
    return int(kv["replies"]) / float(kv["seconds"]), kv


def row_udp_tput(c):
    size = 1472
    with c.serve_ctx() as served:
        out = c.py_client("udp-blast", c.target, 9, DURATION, size, timeout=DURATION + 20)
        time.sleep(0.5)  # let the receiver drain
    kv = dict(re.findall(r"(\w+)=([\d.]+)", out))
    res = served.result
    if "counters" in res:
        received = res["counters"].get("udp.rx_datagrams", 0)
    else:
        received = res.get("datagrams", 0)
    secs = float(kv["seconds"])
    extra = {"sent": int(kv["sent"]), "received": received}
    return received * size * 8 / secs / 1e6, extra


ROWS = [
    ("ping_rtt_median_us", "ping RTT median (1000 x -i 0.002)", "us", "lower", row_ping_rtt),
    ("ping_flood_pps", "ping -f -c 20000 rate", "pkt/s", "higher", row_ping_flood),
    ("udp_rr_per_s", "UDP echo 64 B round trips", "/s", "higher", row_udp_rr),
    ("udp_discard_mbit", "UDP 1472 B one-way to discard", "Mbit/s", "higher", row_udp_tput),
]


def drive(args):
    contenders = [Tapstack(args), Kernel(args)]
    rows = []
    for key, label, unit, better, fn in ROWS:
        row = {"metric": key, "label": label, "unit": unit, "better": better}
        for c in contenders:
            try:
                value, extra = fn(c)
            except Exception as e:  # a failed row is reported, not fatal
                print("bench: %s / %s failed: %s" % (key, c.name, e), file=sys.stderr)
                value, extra = None, {"error": str(e)}
            row[c.name] = value
            row[c.name + "_detail"] = extra
        a, b = row[contenders[0].name], row[contenders[1].name]
        row["ratio"] = (a / b) if a is not None and b else None
        rows.append(row)
        print("bench: %-20s done" % key, file=sys.stderr)

    names = [c.name for c in contenders]
    head = ["metric", "unit"] + names + ["ratio"]
    table = [head]
    for r in rows:
        fmt = lambda v: "-" if v is None else ("%.1f" % v if v < 1000 else "%.0f" % v)
        table.append([r["label"], r["unit"]] + [fmt(r[n]) for n in names] +
                     ["-" if r["ratio"] is None else "%.2f" % r["ratio"]])
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for i, row in enumerate(table):
        print(" | ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)))
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    print("ratio = tapstack / kernel<->kernel (for RTT lower is better); placement %s "
          "(server CPU %s, client CPU %s); kernel baseline servers are python3"
          % (PLACEMENT, SERVER_CPU, CLIENT_CPU))
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": ncpu(),
        "placement": {"name": PLACEMENT, "server_cpu": SERVER_CPU, "client_cpu": CLIENT_CPU},
        "rows": rows,
    }
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print("wrote %s" % args.json)
    if any(r[n] is None for r in rows for n in names):
        sys.exit(1)


# ------------------------------------------------------ clients and servers

def udp_echo_server(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, port))
    s.settimeout(120)  # bounded even if nobody stops it
    print("ready", flush=True)
    try:
        while True:
            data, peer = s.recvfrom(65536)
            s.sendto(data, peer)
    except socket.timeout:
        pass


def udp_sink(host, port):
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((host, port))
    s.settimeout(0.2)
    print("ready", flush=True)
    total = count = 0
    deadline = time.monotonic() + 120
    while not stopping and time.monotonic() < deadline:
        try:
            total += len(s.recv(65536))
            count += 1
        except (socket.timeout, InterruptedError):
            pass
    print("bytes=%d datagrams=%d" % (total, count), flush=True)


def udp_rr(host, port, secs, size):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    s.settimeout(0.5)
    msg = b"x" * size
    n = lost = 0
    start = time.monotonic()
    end = start + secs
    while time.monotonic() < end:
        s.send(msg)
        try:
            s.recv(65536)
            n += 1
        except socket.timeout:
            lost += 1
    print("replies=%d lost=%d seconds=%.3f" % (n, lost, time.monotonic() - start))


def udp_blast(host, port, secs, size):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    msg = b"\xa5" * size
    sent = errors = 0
    start = time.monotonic()
    end = start + secs
    while True:
        for _ in range(64):
            try:
                s.send(msg)
                sent += 1
            except OSError:  # ENOBUFS / refused: count and go on
                errors += 1
        if time.monotonic() >= end:
            break
    print("sent=%d errors=%d seconds=%.3f" % (sent, errors, time.monotonic() - start))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("drive")
    d.add_argument("--bin", required=True)
    d.add_argument("--stack-ns", required=True)
    d.add_argument("--client-ns", required=True)
    d.add_argument("--server-ns", required=True)
    d.add_argument("--json", required=True)
    for name in ("udp-echo-server", "udp-sink"):
        s = sub.add_parser(name)
        s.add_argument("host")
        s.add_argument("port", type=int)
    for name in ("udp-rr", "udp-blast"):
        s = sub.add_parser(name)
        s.add_argument("host")
        s.add_argument("port", type=int)
        s.add_argument("secs", type=float)
        s.add_argument("size", type=int)
    a = p.parse_args()
    if a.cmd == "drive":
        drive(a)
    elif a.cmd == "udp-echo-server":
        udp_echo_server(a.host, a.port)
    elif a.cmd == "udp-sink":
        udp_sink(a.host, a.port)
    elif a.cmd == "udp-rr":
        udp_rr(a.host, a.port, a.secs, a.size)
    elif a.cmd == "udp-blast":
        udp_blast(a.host, a.port, a.secs, a.size)


if __name__ == "__main__":
    main()
