"""The contenders of scripts/bench.py and the process, context-switch and
loss-rule helpers they run on (standard library only). Each contender
starts its servers in namespaces of its own that bench.sh made, runs the
clients in its client namespace, and stops them; bench.py's rows measure
through them. The contenders themselves are described in bench.py's doc."""
import atexit
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from bench_before import drop_unknown, help_flags

# The driver: the UDP clients and servers are its subcommands.
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench.py")
# Seconds per measured run (BENCH_SECS): the clients' durations and bounds.
SECS = float(os.environ.get("BENCH_SECS", "3"))
# The `busypoll` contender's `--busy-poll USECS`: the value Linux's
# documentation recommends for net.core.busy_read (SO_BUSY_POLL).
BUSY_POLL_US = 50


def ncpu():
    return os.cpu_count() or 1


def pin(cpu):
    return ["taskset", "-c", cpu] if cpu is not None and ncpu() > 1 else []


def sh(argv, input=None, check=True, timeout=20):
    out = subprocess.run(argv, input=input, capture_output=True, text=True,
                         timeout=timeout)
    if check and out.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(argv), out.stderr.strip()))
    return out.stdout


def spawn(ns, cpu, argv, **kw):
    # `ip netns exec` and taskset exec the program: proc.pid is the server.
    return subprocess.Popen(["ip", "netns", "exec", ns] + pin(cpu) + argv,
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


def wait_tcp(ns, ip, port, timeout=10):
    """Waits until ip:port accepts a TCP connection (smoltcp-baseline does not
    answer ping: smoltcp's auto-icmp-echo-reply feature is not enabled)."""
    probe = ("import socket,sys,time\n"
             "end=time.monotonic()+%f\n"
             "while time.monotonic()<end:\n"
             "  try:\n"
             "    socket.create_connection((%r,%d),1).close(); sys.exit(0)\n"
             "  except OSError: time.sleep(0.05)\n"
             "sys.exit(1)\n" % (timeout, ip, port))
    r = subprocess.run(["ip", "netns", "exec", ns, "python3", "-c", probe],
                       capture_output=True, timeout=timeout + 5)
    if r.returncode != 0:
        raise RuntimeError("%s:%d did not accept a connection within %ss" % (ip, port, timeout))


def wait_ready(procs, what):
    for p in procs:  # each prints "ready" once it listens
        line = p.stdout.readline()
        if "ready" not in line:
            raise RuntimeError("%s did not start: %r" % (what, line))


# ---------------------------------------------------- context switches

def thread_switches(pids):
    """{tid: (thread name, voluntary + nonvoluntary context switches)} for
    every thread of the processes pids alive now (tids are unique across
    processes). /proc/PID/status counts only the main
    thread, hence the per-thread files; a thread that has exited is gone from
    /proc, and its switches with it."""
    out = {}
    for i, pid in enumerate(pids):
        # The first process's threads keep their names; later processes'
        # (the program under `tapstack run`) are prefixed "run:".
        out.update(process_switches(pid, "run:" if i else ""))
    return out


def process_switches(pid, prefix):
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                kv = dict(re.findall(r"^(\w+):\s*(.*)$", f.read(), re.M))
        except OSError:  # the thread ended meanwhile
            continue
        # The main thread is named after the program, like tapstack's stack thread.
        name = prefix + ("main" if int(tid) == pid else kv["Name"])
        out[int(tid)] = (name, int(kv["voluntary_ctxt_switches"]) +
                         int(kv["nonvoluntary_ctxt_switches"]))
    return out


def switches_used(before, after, ops):
    """The server's switches between two thread_switches() snapshots, per
    operation, with a breakdown by thread name and the threads that exited
    in between (their switches are missing from the total)."""
    by_name = {}
    exited = [t for t in before if t not in after or after[t][1] < before[t][1]]
    for tid, (name, n) in after.items():
        base = before[tid][1] if tid in before and tid not in exited else 0
        by_name[name] = by_name.get(name, 0) + n - base
    ops = max(ops, 1)
    return {"per_op": sum(by_name.values()) / ops,
            "by_thread": {k: round(v / ops, 3) for k, v in sorted(by_name.items())},
            "threads_before": len(before), "threads_after": len(after),
            "threads_exited": len(exited)}


def cpu_ipis():
    """Interprocessor interrupts each CPU has taken (the RES and CAL lines
    of /proc/interrupts: a wake-up of a thread on another CPU sends one),
    as a list by CPU; machine-wide, so meaningful on a quiet machine."""
    counts = []
    try:
        with open("/proc/interrupts") as f:
            lines = f.read().splitlines()
    except OSError:
        return counts
    for line in lines:
        parts = line.split()
        if parts and parts[0] in ("RES:", "CAL:"):
            values = [int(v) for v in parts[1:] if v.isdigit()]
            counts = [a + b for a, b in zip(counts, values)] if counts else values
    return counts


def children_switches():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_nvcsw + ru.ru_nivcsw


# ------------------------------------------------------------- loss rules

NFT_TABLE = "tsbench"


def nft_drop(ns, iif, pct):
    """Drops pct% of the TCP frames arriving at ns through iif, one by one
    (prerouting: the sender's frames, after they crossed the link)."""
    rule = ("table ip %s {\n chain pre {\n"
            "  type filter hook prerouting priority -300; policy accept;\n"
            "  iifname \"%s\" meta l4proto tcp numgen random mod 100 < %d counter drop\n"
            " }\n}\n" % (NFT_TABLE, iif, pct))
    sh(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rule)


def nft_dropped(ns):
    out = sh(["ip", "netns", "exec", ns, "nft", "list", "table", "ip", NFT_TABLE],
             check=False)
    m = re.search(r"counter packets (\d+)", out)
    return int(m.group(1)) if m else None


def nft_clear(ns):
    sh(["ip", "netns", "exec", ns, "nft", "delete", "table", "ip", NFT_TABLE], check=False)


# --------------------------------------------------------------- contenders

class Contender:
    key = "?"
    target = None

    def __init__(self, args):
        self.args = args
        self.procs = []

    def client(self, argv, cpu, timeout):
        """Runs a client in the client namespace; returns stdout."""
        cmd = ["ip", "netns", "exec", self.client_ns] + pin(cpu) + argv
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError("%s failed (%d): %s%s" % (os.path.basename(argv[0]),
                                                         out.returncode, out.stdout,
                                                         out.stderr.strip()))
        return out.stdout

    def py_client(self, sub, *args, cpu=None, timeout=30):
        return self.client(["python3", HERE, sub] + [str(a) for a in args], cpu, timeout)

    def tapbench(self, sub, port, *args, cpu=None):
        out = self.client([self.args.tapbench, sub, "%s:%d" % (self.target, port)] +
                          [str(a) for a in args], cpu, timeout=SECS + 30)
        lines = [l for l in out.splitlines() if l.startswith("{")]
        if not lines:
            raise RuntimeError("tapbench %s printed no result: %r" % (sub, out))
        return json.loads(lines[-1])

    log = None

    def read_log(self):
        if self.log is None:
            return ""
        self.log.seek(0)
        text = self.log.read()
        self.log.close()
        self.log = None
        return text

    def alive(self):
        return all(p.poll() is None for p in self.procs)

    def server_pids(self):
        """The processes serving the request/response and connection rows."""
        return [self.procs[0].pid]

    def stop_servers(self):
        outs = [stop(p) for p in self.procs]
        self.procs = []
        return outs


class Tapstack(Contender):
    key = "tapstack"
    target = "10.0.0.2"
    tap = "tb0"

    def __init__(self, args):
        super().__init__(args)
        self.client_ns = self.stack_ns = args.stack_ns
        # A control socket of its own (`tapstack ss` in the idle row): the
        # default path is per TAP name, shared with any other run's stack.
        api_dir = tempfile.mkdtemp(prefix="tsbench-api-")
        atexit.register(shutil.rmtree, api_dir, True)
        self.api = os.path.join(api_dir, "api.sock")

    # Set per row by run_row: the loss rows drop single frames, so the TAP
    # offloads are off there (as TSO/GSO are off on the kernel's veth).
    offload = True
    # Set per row by run_row: flags of the echo subcommand.
    echo_flags = ()
    # The binary under test (Before: an older one).
    bin_attr = "bin"

    @property
    def idle_dev(self):  # where the idle row adds its kernel source addresses
        return self.tap

    def echo_argv(self):
        flags = [] if self.offload else ["--no-offload"]
        # The same congestion control as the kernel contender, when we have
        # it (bbr, cubic, reno), so the rows compare stacks, not algorithms.
        if self.args.kernel_cc in ("bbr", "cubic", "reno"):
            flags += ["--cc", self.args.kernel_cc]
        return (["--api", self.api, "--tap", self.tap] + flags +
                ["echo", "--ws-port", "0"] + list(self.echo_flags))

    def start(self, kind, cpu):
        # stderr to a file, not a pipe: a pipe nobody reads during the run
        # would block a server that logs a lot.
        self.log = tempfile.TemporaryFile(mode="w+")
        p = spawn(self.stack_ns, cpu, [getattr(self.args, self.bin_attr)] + self.echo_argv(),
                  stdout=subprocess.DEVNULL, stderr=self.log, text=True)
        self.procs = [p]
        wait_ping(self.client_ns, self.target)

    def stop_servers(self):
        super().stop_servers()
        err = self.last_err = self.read_log()
        counters = {}
        for line in (err or "").split("tapstack: counters", 1)[-1].splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                counters[parts[0]] = int(parts[1])
        return {"counters": counters}

    def loss_setup(self, pct):
        nft_drop(self.stack_ns, self.tap, pct)

    def loss_teardown(self):
        dropped = nft_dropped(self.stack_ns)
        nft_clear(self.stack_ns)
        return dropped


class Before(Tapstack):
    """`tapstack echo` from an older build (BENCH_BEFORE / BENCH_BEFORE_REV)
    on TAP tb3 in a namespace of its own: the same server as the tapstack
    contender, in every row that one runs in (issue 12: the benchmark must
    not get slower, same run, before and after). A flag this binary does not
    know (it predates it) is left out, with a note, rather than failing."""
    key = "before"
    tap = "tb3"
    bin_attr = "before"

    def __init__(self, args):
        Tapstack.__init__(self, args)
        self.client_ns = self.stack_ns = args.before_ns
        self.known = self.takes_value = self.dropped = None

    def echo_argv(self):
        if self.known is None:
            # Which flags take a value: from the current binary's help.
            self.takes_value = help_flags(self.args.bin)
            self.known = help_flags(self.args.before)
            if "--tap" not in self.known:
                raise RuntimeError("%s --help names no --tap: not a tapstack binary?"
                                   % self.args.before)
        argv, dropped = drop_unknown(super().echo_argv(), self.known, self.takes_value)
        if dropped and dropped != self.dropped:
            print("bench: before: %s does not know %s: runs without" % (
                self.args.before, " ".join(dropped)), file=sys.stderr, flush=True)
        self.dropped = dropped
        return argv

    def stop_servers(self):
        out = super().stop_servers()
        if self.dropped:
            out["flags_left_out"] = self.dropped
        # An older binary's complaints end up in target/bench.json.
        out["stderr_tail"] = (self.last_err or "").split("tapstack: counters", 1)[0][-2000:]
        return out


class Smoltcp(Tapstack):
    key = "smoltcp"
    tap = "tb1"

    def __init__(self, args):
        Contender.__init__(self, args)
        self.client_ns = self.stack_ns = args.smol_ns

    def start(self, kind, cpu):
        self.log = tempfile.TemporaryFile(mode="w+")
        p = spawn(self.stack_ns, cpu, [self.args.smoltcp, "--tap", self.tap],
                  stdout=subprocess.DEVNULL, stderr=self.log, text=True)
        self.procs = [p]
        if kind == "tcp":
            wait_tcp(self.client_ns, self.target, 9)
        else:  # ICMP and UDP echo
            wait_ping(self.client_ns, self.target)

    def stop_servers(self):
        Contender.stop_servers(self)
        err = self.read_log()
        return {"stderr": err[-2000:]} if "fatal" in err else {}


class Kernel(Contender):
    key = "kernel"
    target = "10.9.0.2"
    idle_dev = "vb"  # the client's end of the veth

    def __init__(self, args):
        super().__init__(args)
        self.client_ns = args.client_ns
        self.server_ns = args.server_ns

    def start(self, kind, cpu):
        ns = self.server_ns
        if kind == "tcp":
            tb = self.args.tapbench
            argvs = [[tb, "serve-discard", "9"], [tb, "serve-chargen", "19"],
                     [tb, "serve-echo", "7"]]
        else:
            argvs = [["python3", HERE, "udp-echo-server", "0.0.0.0", "7"],
                     ["python3", HERE, "udp-sink", "0.0.0.0", "9"]]
        self.procs = [spawn(ns, cpu, a, stdout=subprocess.PIPE, text=True) for a in argvs]
        try:
            wait_ready(self.procs, "kernel-side server")
            wait_ping(self.client_ns, self.target)
        except Exception:
            self.stop_servers()
            raise

    def server_pids(self):
        return [self.procs[2].pid]  # serve-echo: the rr and cps rows use port 7

    def stop_servers(self):
        outs = super().stop_servers()
        if len(outs) == 2:  # the UDP servers: the sink counts what it got
            return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", outs[1][0] or "")}
        return {}

    # Loss on the veth: the sender's segmentation offloads are turned off so
    # frames cross the veth one segment each (testing-notes), and dropped on
    # arrival in the receiver's namespace. ethtool if there is one: with
    # `gso_max_segs 1` instead, TCP builds one skb per segment and the kernel
    # sender manages only ~0.25 Gbit/s at 1% loss (~2 Gbit/s with ethtool).
    def offloads(self, on):
        if shutil.which("ethtool"):
            flag = "on" if on else "off"
            sh(["ip", "netns", "exec", self.server_ns, "ethtool", "-K", "vc",
                "tso", flag, "gso", flag], check=on)
        else:
            sh(["ip", "-n", self.server_ns, "link", "set", "vc", "gso_max_segs",
                "65535" if on else "1"], check=on)

    def loss_setup(self, pct):
        self.offloads(False)
        nft_drop(self.client_ns, "vb", pct)

    def loss_teardown(self):
        dropped = nft_dropped(self.client_ns)
        nft_clear(self.client_ns)
        self.offloads(True)
        return dropped


class Daemon(Tapstack):
    """`tapstack up` (no services of its own) and the kernel contender's
    tapbench servers, unmodified, under `tapstack run`: every socket they
    open is a socketpair end the daemon pumps to and from the stack."""
    key = "daemon"
    tap = "tb2"

    def __init__(self, args):
        Tapstack.__init__(self, args)  # its own control socket
        self.client_ns = self.stack_ns = args.daemon_ns

    def start(self, kind, cpu):
        if kind != "tcp":
            raise NotApplicable()
        self.log = tempfile.TemporaryFile(mode="w+")
        flags = [] if self.offload else ["--no-offload"]
        if self.args.kernel_cc in ("bbr", "cubic", "reno"):
            flags += ["--cc", self.args.kernel_cc]
        daemon = spawn(self.stack_ns, cpu, [self.args.bin, "--tap", self.tap, "--api",
                                            self.api] + flags + ["up"],
                       stdout=subprocess.DEVNULL, stderr=self.log, text=True)
        self.procs = [daemon]
        try:
            wait_ping(self.client_ns, self.target)
            tb = self.args.tapbench
            for argv in ([tb, "serve-discard", "9"], [tb, "serve-chargen", "19"],
                         [tb, "serve-echo", "7"]):
                # `tapstack run` execs the program: the pid is tapbench's.
                self.procs.append(spawn(self.stack_ns, cpu, [self.args.bin, "--api", self.api,
                                                             "run", "--"] + argv,
                                        stdout=subprocess.PIPE, text=True))
            wait_ready(self.procs[1:], "tapbench under tapstack run")
        except Exception:
            self.stop_servers()
            raise

    def server_pids(self):
        return [self.procs[0].pid, self.procs[3].pid]  # the daemon, serve-echo

    def stop_servers(self):
        # The programs first, then the daemon (its counters are printed at exit).
        programs, self.procs = self.procs[1:], self.procs[:1]
        for p in programs:
            stop(p)
        return Tapstack.stop_servers(self)


class BusyPoll(Tapstack):
    """`tapstack --busy-poll BUSY_POLL_US echo` on TAP tb4 (issue 15: busy
    polling is off by default and measured separately): the same server as
    the tapstack contender, in the request/response and connections/s rows."""
    key = "busypoll"
    tap = "tb4"

    def __init__(self, args):
        Tapstack.__init__(self, args)  # its own control socket
        self.client_ns = self.stack_ns = args.busy_ns

    def echo_argv(self):
        return ["--busy-poll", str(BUSY_POLL_US)] + super().echo_argv()


class NotApplicable(Exception):
    pass
