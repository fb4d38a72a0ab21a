#!/usr/bin/env python3
"""Benchmark driver for scripts/bench.sh (standard library only).

`bench.py drive ...` measures every row of ROWS for every contender and
prints a table (metric | placement | tapstack | smoltcp | kernel | ratios),
the issue-5, -15 (bench_scale.py, bench_idle.py) and -11 targets with
PASS/FAIL, and a JSON file.

Contenders (bench_contenders.py), each in namespaces of its own that
bench.sh made:
  tapstack  `tapstack echo` on TAP tb0, the kernel side is the client
  before    (with --before) an older tapstack binary's `echo` on TAP tb3, in
            every row tapstack runs in, measured right after it (issue 12)
  smoltcp   `smoltcp-baseline` (smoltcp 0.14 iface + tcp sockets) on TAP tb1
  kernel    the kernel talking to itself over a veth pair (10.9.0.0/24),
            with `tapbench serve-*` (TCP) or python3 (UDP) servers
  daemon    `tapstack up` on TAP tb2 and the same `tapbench serve-*`
            servers, unmodified, under `tapstack run` (LD_PRELOAD shim: their
            sockets are socketpair ends pumped by the daemon; issue 11),
            compared with tapstack's in-process services
  busypoll  `tapstack --busy-poll 50 echo` on TAP tb4, in the
            request/response and connections/s rows (issue 15: busy polling
            is off by default and measured separately)
The TCP clients are `tapbench` (Rust, std::net) in the kernel's namespace.

TCP rows: all contenders' servers are started, then each contender is
measured RUNS times, alternating (t s k t s k ...), and the median is kept.
Placement is per row (see testing-notes): "split" = server CPU 1, client
CPU 0; "same" = both on CPU 0; "unpinned" = no taskset.

Rows with `per` also count context switches per operation (issue 5: how
often the stack and application threads wake each other): the server's
threads from /proc before and after each run, the client's by getrusage.

Adding a row: append Row(...) to ROWS with a function measure(c, row) ->
(value, extra) (set up and tear down inside it, as m_loss_recv does);
per="FIELD" if extra[FIELD] counts operations and switches are wanted.
"""
import argparse
import json
import os
import re
import signal
import socket
import statistics
import sys
import time

import bench_idle
import bench_scale
from bench_before import before_report
from bench_contenders import (SECS, Before, BusyPoll, Daemon, Kernel, NotApplicable, Smoltcp,
                              Tapstack, children_switches, cpu_ipis, ncpu, switches_used,
                              thread_switches)

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
PLACEMENTS = {  # name -> (server CPU, client CPU); None = not pinned
    "split": ("1", "0"),
    "same": ("0", "0"),
    "unpinned": (None, None),
}
# The UDP/ping rows (one run each) use this placement.
DEFAULT_PLACEMENT = os.environ.get("BENCH_PLACEMENT", "split")
# BENCH_ROWS=REGEX measures only the rows whose key matches (e.g. "loss|bulk").
ROW_FILTER = re.compile(os.environ.get("BENCH_ROWS", ""))
# BENCH_ONLY=REGEX measures only the contenders whose key matches (a quick A/B).
ONLY_FILTER = re.compile(os.environ.get("BENCH_ONLY", ""))


# --------------------------------------------------------------------- rows

class Row:
    def __init__(self, key, label, unit, better, placement, measure, kind="tcp",
                 runs=None, contenders=("tapstack", "smoltcp", "kernel"), pct=0, per=None,
                 echo_flags=()):
        self.key, self.label, self.unit, self.better = key, label, unit, better
        self.placement, self.measure, self.kind = placement, measure, kind
        self.runs = RUNS if runs is None else runs
        self.contenders = contenders
        self.pct = pct
        self.echo_flags = echo_flags
        # The field of tapbench's result that counts operations: if set, the
        # context switches per operation are measured too (issue 5: wake-ups).
        self.per = per

    @property
    def server_cpu(self):
        return PLACEMENTS[self.placement][0]

    @property
    def client_cpu(self):
        return PLACEMENTS[self.placement][1]


PING_N, FLOOD_N = 1000, 20000


def m_ping_rtt(c, row):
    out = c.client(["ping", "-n", "-c", str(PING_N), "-i", "0.002", "-W", "1",
                    c.target], row.client_cpu, timeout=60)
    times = [float(t) for t in re.findall(r"time=([\d.]+) ms", out)]
    if len(times) < PING_N * 0.9:
        raise RuntimeError("only %d of %d pings answered" % (len(times), PING_N))
    return statistics.median(times) * 1000.0, {"answered": len(times)}


def m_ping_flood(c, row):
    out = c.client(["ping", "-n", "-q", "-f", "-c", str(FLOOD_N), "-W", "1",
                    c.target], row.client_cpu, timeout=60)
    m = re.search(r"(\d+) packets transmitted, (\d+) received.*time (\d+)ms", out)
    if not m:
        raise RuntimeError("no ping summary: %s" % out)
    received, ms = int(m.group(2)), max(int(m.group(3)), 1)
    return received / (ms / 1000.0), {"received": received, "ms": ms}


def m_udp_rr(c, row):
    out = c.py_client("udp-rr", c.target, 7, SECS, 64, cpu=row.client_cpu,
                      timeout=SECS + 20)
    kv = dict(re.findall(r"(\w+)=([\d.]+)", out))
    return int(kv["replies"]) / float(kv["seconds"]), kv


def m_udp_tput(c, row):
    out = c.py_client("udp-blast", c.target, 9, SECS, 1472, cpu=row.client_cpu,
                      timeout=SECS + 20)
    time.sleep(0.5)  # let the receiver drain
    kv = dict(re.findall(r"(\w+)=([\d.]+)", out))
    return None, {"sent": int(kv["sent"]), "seconds": float(kv["seconds"])}


def udp_tput_finish(c, extra, served):
    """The UDP throughput is what the receiver counted, known at stop."""
    if "counters" in served:
        received = served["counters"].get("udp.rx_datagrams", 0)
    else:
        received = served.get("datagrams", 0)
    extra["received"] = received
    return received * 1472 * 8 / extra["seconds"] / 1e6


def m_bulk_send(c, row):
    r = c.tapbench("bulk-send", 9, SECS, cpu=row.client_cpu)
    return r["gbit_per_s"], r


def m_bulk_recv(c, row):
    r = c.tapbench("bulk-recv", 19, SECS, cpu=row.client_cpu)
    return r["gbit_per_s"], r


def m_rr(c, row):
    r = c.tapbench("rr", 7, SECS, "--size", 1, cpu=row.client_cpu)
    return r["per_s"], r


def m_cps(c, row):
    r = c.tapbench("cps", 7, SECS, cpu=row.client_cpu)
    return r["per_s"], r


def m_loss_recv(c, row):
    c.loss_setup(row.pct)
    try:
        r = c.tapbench("bulk-recv", 19, SECS, cpu=row.client_cpu)
    finally:
        r_dropped = c.loss_teardown()
    r["nft_dropped"] = r_dropped
    return r["gbit_per_s"], r


def m_idle(c, row):
    return bench_idle.measure(c, row.client_cpu, SECS)

# The rows that also run the kernel contender's tapbench servers under
# `tapstack run` (issue 11), compared with tapstack's in-process services.
WITH_DAEMON = ("tapstack", "smoltcp", "kernel", "daemon")
# The rows where busy polling (off by default) is measured as well.
WITH_BUSY = WITH_DAEMON + ("busypoll",)

ROWS = [
    Row("ping_rtt_median_us", "ping RTT median (1000 x -i 0.002)", "us", "lower",
        DEFAULT_PLACEMENT, m_ping_rtt, kind="udp", runs=1),
    Row("ping_flood_pps", "ping -f -c 20000 rate", "pkt/s", "higher",
        DEFAULT_PLACEMENT, m_ping_flood, kind="udp", runs=1),
    Row("udp_rr_per_s", "UDP echo 64 B round trips (python client)", "/s", "higher",
        DEFAULT_PLACEMENT, m_udp_rr, kind="udp", runs=1),
    Row("udp_discard_mbit", "UDP 1472 B one-way to discard", "Mbit/s", "higher",
        DEFAULT_PLACEMENT, m_udp_tput, kind="udp", runs=1, contenders=("tapstack", "kernel")),
    Row("tcp_bulk_to_stack_gbit", "TCP bulk kernel->server (discard)", "Gbit/s", "higher",
        "split", m_bulk_send, contenders=WITH_DAEMON),
    Row("tcp_bulk_from_stack_gbit", "TCP bulk server->kernel (chargen)", "Gbit/s", "higher",
        "split", m_bulk_recv, contenders=WITH_DAEMON),
    Row("tcp_rr_unpinned", "TCP 1 B request/response", "rt/s", "higher",
        "unpinned", m_rr, per="round_trips", contenders=WITH_BUSY),
    Row("tcp_rr_same_cpu", "TCP 1 B request/response", "rt/s", "higher", "same", m_rr,
        per="round_trips", contenders=WITH_BUSY),
    Row("tcp_cps", "TCP connections (1 B echo, close)", "conn/s", "higher", "split", m_cps,
        per="connections", contenders=WITH_BUSY),
    Row("tcp_loss1_from_stack_gbit", "TCP server->kernel, 1% server frames dropped",
        "Gbit/s", "higher", "split", m_loss_recv, pct=1),
    Row("tcp_idle_conns", "TCP %d idle connections: server memory per connection"
        % bench_idle.IDLE_CONNS, "B", "lower", "same", m_idle, runs=1,
        contenders=("tapstack", "kernel"),
        echo_flags=("--max-connections", str(bench_idle.IDLE_CONNS + 1000))),
    Row("tcp_loss5_from_stack_gbit", "TCP server->kernel, 5% server frames dropped",
        "Gbit/s", "higher", "split", m_loss_recv, pct=5),
]

# Issue 5: (row, contender, least ratio tapstack/contender)
TARGETS = [
    ("tcp_bulk_to_stack_gbit", "smoltcp", 1.0),
    ("tcp_bulk_from_stack_gbit", "smoltcp", 1.5),
    ("tcp_rr_same_cpu", "smoltcp", 1.1),
    ("tcp_rr_unpinned", "smoltcp", 1.1),
    ("tcp_cps", "smoltcp", 3.0),
    ("tcp_cps", "kernel", 0.8),
    ("tcp_loss1_from_stack_gbit", "smoltcp", 3.0),
    ("tcp_loss1_from_stack_gbit", "kernel", 0.7),
    ("tcp_loss5_from_stack_gbit", "smoltcp", 3.0),
    ("tcp_loss5_from_stack_gbit", "kernel", 0.7),
]


# Issue 11: (row, least ratio daemon/tapstack): programs under `tapstack run`
# against the same services in the stack's process. None = no target, the
# ratio is printed for information.
DAEMON_TARGETS = [
    ("tcp_bulk_to_stack_gbit", 0.6),
    ("tcp_bulk_from_stack_gbit", 0.6),
    ("tcp_rr_same_cpu", 0.5),
    ("tcp_rr_unpinned", 0.5),
    ("tcp_cps", None),
]


def run_row(row, contenders):
    """Starts the servers of every contender, measures each RUNS times in
    turn, stops them. Returns {contender key: (median or None, detail)}."""
    # An older tapstack (BENCH_BEFORE) runs wherever tapstack does.
    active = [c for c in contenders if c.key in row.contenders or
              (c.key == "before" and "tapstack" in row.contenders)]
    results = {c.key: [] for c in active}
    errors = {}
    started = []
    for c in active:
        try:
            c.offload = row.pct == 0
            c.echo_flags = row.echo_flags
            c.start(row.kind, row.server_cpu)
            started.append(c)
        except NotApplicable:
            errors[c.key] = "n/a"
        except Exception as e:
            errors[c.key] = "server: %s" % e
            c.stop_servers()
    try:
        for i in range(row.runs):
            for c in started:
                if c.key in errors:
                    continue
                try:
                    if not c.alive():
                        raise RuntimeError("the server died")
                    if row.per:
                        pids = c.server_pids()
                        before, client0 = thread_switches(pids), children_switches()
                        ipis0 = cpu_ipis()
                    value, extra = row.measure(c, row)
                    if row.per:
                        # The client is the only child reaped during measure().
                        ops = max(extra[row.per], 1)
                        ipis = [b - a for a, b in zip(ipis0, cpu_ipis())]
                        extra["switches"] = switches_used(before, thread_switches(pids), ops)
                        extra["switches"]["client_per_op"] = (
                            (children_switches() - client0) / ops)
                        extra["switches"]["ipis_per_op"] = [n / ops for n in ipis]
                    results[c.key].append((value, extra))
                except Exception as e:  # a failed contender is reported, not fatal
                    errors[c.key] = str(e).strip().splitlines()[-1][:300] if str(e) else repr(e)
    finally:
        served = {c.key: c.stop_servers() for c in started}
    out = {}
    for c in active:
        runs = results[c.key]
        if c.key in errors:
            out[c.key] = (None, {"error": errors[c.key], "runs": [r[1] for r in runs],
                                 "server": served.get(c.key) or {}})
            continue
        if row.measure is m_udp_tput:
            runs = [(udp_tput_finish(c, runs[0][1], served[c.key]), runs[0][1])]
        values = [v for v, _ in runs]
        out[c.key] = (statistics.median(values),
                      {"values": values, "runs": [r[1] for r in runs],
                       "server": served.get(c.key) or {}})
        if row.per:
            sw = [e["switches"] for _, e in runs]
            out[c.key][1]["switches"] = {
                "server_per_op": statistics.median(x["per_op"] for x in sw),
                "client_per_op": statistics.median(x["client_per_op"] for x in sw),
                "threads_exited": sum(x["threads_exited"] for x in sw),
                "ipis_per_op": [statistics.median(x["ipis_per_op"][i] for x in sw)
                                for i in range(min(len(x["ipis_per_op"]) for x in sw))],
                "by_thread": {n: statistics.median(x["by_thread"].get(n, 0) for x in sw)
                              for n in sorted({n for x in sw for n in x["by_thread"]})}}
    return out


def fmt(v):
    if v is None:
        return "-"
    if v >= 1000:
        return "%.0f" % v
    if v >= 10:
        return "%.1f" % v
    return "%.3g" % v


def ratio(a, b, better):
    if a is None or not b:
        return None
    return (b / a) if better == "lower" else (a / b)


def print_table(table):
    widths = [max(len(t[i]) for t in table) for i in range(len(table[0]))]
    for i, t in enumerate(table):
        print(" | ".join(cell.ljust(widths[j]) for j, cell in enumerate(t)))
        if i == 0:
            print("-+-".join("-" * w for w in widths))


def print_switches(rows, names):
    """Issue 5 asks how often the application and stack threads wake each
    other: context switches per operation, informational (no target)."""
    rows = [r for r in rows if r.get("switches")]
    if not rows:
        return
    table = [["metric", "per"] + ["server %s" % k for k in names] +
             ["client %s" % k for k in names]]
    threads, exited = [], 0
    for r in rows:
        sw = r["switches"]
        cells = [r["metric"], r["switches_per"].rstrip("s").replace("_", " ")]
        for side in ("server_per_op", "client_per_op"):
            cells += ["-" if not sw[k] else "%.2f" % sw[k][side] for k in names]
        table.append(cells)
        threads.append("  %s: %s" % (r["metric"], "; ".join(
            "%s %s" % (k, ", ".join("%s %.2f" % t for t in sw[k]["by_thread"].items()
                                    if t[1] >= 0.005))
            for k in names if sw[k] and len(sw[k]["by_thread"]) > 1)))
        exited += sum(sw[k]["threads_exited"] for k in names if sw[k])
    print("\nContext switches (voluntary + involuntary) per operation, median of the runs "
          "(informational, no target):")
    print_table(table)
    print("Server: all threads of the server process (/proc/PID/task/*/status before and "
          "after each run; kernel: the tapbench serve-echo process). Client: the tapbench "
          "process (getrusage of children). The kernel's softirq work for the veth (both "
          "ends' TCP/IP) runs in no process of its own (inline in the syscalls, or "
          "ksoftirqd) and is not counted. Server switches by thread name:")
    print("\n".join(threads))
    if exited:
        print("WARNING: %d server thread(s) exited during runs: their switches are missing"
              % exited)
    print_ipis(rows, names)


def print_ipis(rows, names):
    """What the wake-ups cost: a wake-up of a thread asleep on another CPU
    is an interprocessor interrupt, which on a VM whose idle vCPUs halt
    costs the waker tens of microseconds (README, Threads)."""
    ncpus = max((len(r["switches"][k].get("ipis_per_op") or [])
                 for r in rows for k in names if r["switches"].get(k)), default=0)
    if not ncpus:
        return  # /proc/interrupts unreadable
    table = [["metric", "per", "placement"] + names]
    for r in rows:
        sw = r["switches"]
        cells = [r["metric"], r["switches_per"].rstrip("s").replace("_", " "),
                 "%s/%s" % (r["server_cpu"] or "-", r["client_cpu"] or "-")]
        cells += ["-" if not (sw[k] and sw[k].get("ipis_per_op")) else
                  " / ".join("%.2f" % n for n in sw[k]["ipis_per_op"]) for k in names]
        table.append(cells)
    print("\nInterprocessor interrupts per operation taken by CPU %s (RES + CAL lines "
          "of /proc/interrupts, machine-wide, median of the runs; placement: server/client "
          "CPU):" % " / ".join(str(i) for i in range(ncpus)))
    print_table(table)


def drive(args):
    t0 = time.monotonic()
    # The older tapstack (BENCH_BEFORE) comes with tapstack, even under
    # BENCH_ONLY=tapstack, and measures right after it in every round.
    before = [Before(args)] if args.before and (
        ONLY_FILTER.search("before") or ONLY_FILTER.search("tapstack")) else []
    contenders = [c for c in [Tapstack(args)] + before + [Smoltcp(args), Kernel(args),
                                                             Daemon(args), BusyPoll(args)]
                  if c.key == "before" or ONLY_FILTER.search(c.key)]
    names = (["tapstack"] + ["before"] * bool(args.before) +
             ["smoltcp", "kernel", "daemon", "busypoll"])
    ratios = [("tapstack_vs_smoltcp", "tapstack", "smoltcp"),
              ("tapstack_vs_kernel", "tapstack", "kernel"),
              ("daemon_vs_tapstack", "daemon", "tapstack"),
              ("busypoll_vs_kernel", "busypoll", "kernel")]
    if args.before:
        ratios.append(("tapstack_vs_before", "tapstack", "before"))
    rows = []
    for row in ROWS:
        if not ROW_FILTER.search(row.key):
            continue
        res = run_row(row, contenders)
        r = {"metric": row.key, "label": row.label, "unit": row.unit,
             "better": row.better, "placement": row.placement,
             "server_cpu": row.server_cpu, "client_cpu": row.client_cpu,
             "runs": row.runs}
        for key in names:
            value, detail = res.get(key, (None, {"error": "n/a"}))
            r[key] = value
            r[key + "_detail"] = detail
        if row.per:
            r["switches_per"] = row.per
            r["switches"] = {k: r[k + "_detail"].get("switches") for k in names}
        for name, a, b in ratios:
            r[name] = ratio(r[a], r[b], row.better)
        rows.append(r)
        print("bench: %-28s %s  (%.0f s)" % (row.key, "  ".join(
            "%s=%s" % (c.key, fmt(r[c.key])) for c in contenders), time.monotonic() - t0),
            file=sys.stderr, flush=True)

    head = (["metric", "unit", "placement (srv/cli CPU)"] + names +
            ["%s/%s" % (a, b) for _, a, b in ratios])
    table = [head]
    for r in rows:
        pl = "%s (%s/%s)" % (r["placement"], r["server_cpu"] or "-", r["client_cpu"] or "-")
        table.append([r["label"], r["unit"], pl] + [fmt(r[k]) for k in names] +
                     ["-" if r[k] is None else "%.2f" % r[k] for k, _, _ in ratios])
    print()
    print_table(table)
    print("TCP rows: median of %d runs of %.0f s, contenders alternating. Ratios are "
          "tapstack/other (inverted for RTT, so > 1 is better). Kernel baseline: veth, "
          "tapbench servers (the same worker pool as tapstack's) for TCP, python3 for UDP; kernel "
          "TCP congestion control %s (tapstack runs the same, smoltcp CUBIC). Loss rows: nft prerouting drop of TCP frames "
          "from the server, one frame at a time (veth: TSO/GSO off; tapstack: --no-offload). "
          "daemon: `tapstack up` with the kernel contender's tapbench servers unmodified "
          "under `tapstack run` (both pinned to the server CPU)."
          % (RUNS, SECS, args.kernel_cc))
    if args.before:
        print("before: %s (an older tapstack, `echo` on a TAP of its own, measured right "
              "after tapstack in every round)." % args.before)
    print_switches(rows, names)

    verdicts = before_report(rows) if args.before else []
    by_key = {r["metric"]: r for r in rows}
    print("\nIssue 5 targets (tapstack / baseline, same run, same placement):")
    for line in bench_scale.ratio_verdicts(by_key, TARGETS, 5, verdicts, ROW_FILTER,
                                           ONLY_FILTER):
        print(line)

    bench_scale.report(by_key, verdicts, ROW_FILTER, ONLY_FILTER)
    bench_idle.report(by_key, verdicts)
    if ONLY_FILTER.search("daemon") and any(ROW_FILTER.search(k) for k, _ in DAEMON_TARGETS):
        print("\nIssue 11 targets (programs under `tapstack run` / the same services in "
              "tapstack's process, same run, same placement):")
    for key, least in DAEMON_TARGETS:
        if not ROW_FILTER.search(key) or not ONLY_FILTER.search("daemon"):
            continue
        r = by_key.get(key)
        got = r and r["daemon_vs_tapstack"]
        if least is None:
            print("  info  %-28s             measured %s" % (
                key, "-" if got is None else "%.2fx" % got))
            continue
        verdict = "FAIL" if got is None or got < least else "PASS"
        verdicts.append({"metric": key, "vs": "tapstack (daemon/in-process)",
                         "target": least, "ratio": got, "verdict": verdict, "issue": 11})
        print("  %-4s  %-28s >= %.1fx %-8s measured %s%s" % (
            verdict, key, least, "in-proc", "-" if got is None else "%.2fx" % got,
            "" if got is not None else " (not measured)"))

    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": ncpu(),
        "secs_per_run": SECS,
        "runs": RUNS,
        "kernel_tcp_cc": args.kernel_cc,
        "placements": {k: {"server_cpu": v[0], "client_cpu": v[1]}
                       for k, v in PLACEMENTS.items()},
        "rows": rows,
        "targets": verdicts,
        "seconds": round(time.monotonic() - t0, 1),
    }
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print("wrote %s (%.0f s)" % (args.json, time.monotonic() - t0))
    missing = [(r["metric"], k) for r in rows for k in names
               if r[k] is None and r[k + "_detail"].get("error") != "n/a"]
    if missing:
        print("bench: not measured: %s" % ", ".join("%s/%s" % m for m in missing),
              file=sys.stderr)
    # An older binary that cannot do a row (it predates what the row needs)
    # is reported (error and stderr tail in the JSON), not a failed run.
    if any(k != "before" for _, k in missing):
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
    d.add_argument("--smoltcp", required=True)
    d.add_argument("--tapbench", required=True)
    d.add_argument("--stack-ns", required=True)
    d.add_argument("--smol-ns", required=True)
    d.add_argument("--client-ns", required=True)
    d.add_argument("--server-ns", required=True)
    d.add_argument("--daemon-ns", required=True)
    d.add_argument("--busy-ns", required=True)
    d.add_argument("--json", required=True)
    d.add_argument("--kernel-cc", default="?")
    # An older tapstack binary and its namespace (BENCH_BEFORE in bench.sh).
    d.add_argument("--before")
    d.add_argument("--before-ns")
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
