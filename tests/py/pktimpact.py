#!/usr/bin/env python3
"""Same-script TCP tests, the way gVisor's packetimpact runs them: hand-made
segments go to a device under test (DUT) from an address no kernel owns, and
the DUT's replies are captured and written down in a normalized form, so the
same case script can be run against tapstack and against Linux and the two
records compared line by line (tests/packetimpact.rs does the comparing).

  --side stack: the DUT is `tapstack --no-offload echo` on the TAP --iface
    (started by the Rust test); active opens run `tapstack connect` on one of
    the spare TAPs --active-ifaces, one process per case.
  --side linux: the DUT is the kernel in namespace --dut-ns behind the veth
    --iface; pktimpact_app.py runs the same services there (echo 7,
    discard 9, chargen 19, HTTP 8080) and opens connections on request.

The tester is 10.0.0.3 with a made-up MAC: the kernel on the tester's side
drops frames sent to that MAC (not its own) and owns no such address, so
only this script answers; it also answers ARP for 10.0.0.3.

Standard library only (AF_PACKET raw sockets). Prints one line per step:
  OBS<TAB>case<TAB>step<TAB>reply | reply ...   ("-" for no reply)
and `done cases=N secs=S` at the end.
"""
import argparse
import array
import fcntl
import math
import os
import queue
import socket
import struct
import subprocess
import sys
import termios
import threading
import time

import pktimpact_cases
import rawframe
from rawframe import ether, ipv4
import pktimpact_cases_close  # noqa: F401 (registers its cases)
import pktimpact_cases_flags  # noqa: F401 (registers its cases)
from pktimpact_cases import ACK, FIN, RST, SYN, CaseError

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_QDISC_BYPASS = 20
SO_TIMESTAMPNS = 35
TESTER_IP = "10.0.0.3"
DUT_IP = "10.0.0.2"
TESTER_MAC = bytes.fromhex("020000000003")
DUT_MAC = bytes.fromhex("027461700002")


def build_opts(opts):
    """opts: list of (name, value); padded with NOPs like Linux does."""
    out = b""
    for name, val in opts:
        if name == "mss":
            out += struct.pack("!BBH", 2, 4, val)
        elif name == "sackok":
            out += b"\x01\x01\x04\x02"
        elif name == "ts":
            out += b"\x01\x01" + struct.pack("!BBII", 8, 10, val[0], val[1])
        elif name == "ws":
            out += b"\x01" + struct.pack("!BBB", 3, 3, val)
        elif name == "sack":
            out += b"\x01\x01" + struct.pack("!BB", 5, 2 + 8 * len(val))
            for left, right in val:
                out += struct.pack("!II", left, right)
    while len(out) % 4:
        out += b"\x01"
    return out


def parse_opts(raw):
    out = {}
    i = 0
    while i < len(raw):
        kind = raw[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(raw) or raw[i + 1] < 2:
            out["bad"] = True
            break
        n = raw[i + 1]
        body = raw[i + 2:i + n]
        if kind == 2 and n == 4:
            out["mss"] = struct.unpack("!H", body)[0]
        elif kind == 3 and n == 3:
            out["ws"] = body[0]
        elif kind == 4:
            out["sackok"] = True
        elif kind == 5:
            out["sack"] = [struct.unpack("!II", body[j:j + 8])
                           for j in range(0, len(body) - 7, 8)]
        elif kind == 8 and n == 10:
            out["ts"] = struct.unpack("!II", body)
        else:
            out["opt%d" % kind] = True
        i += n
    return out


def tcp_frame(src_port, dst_port, seq, ack, flags, win, opts=b"", data=b""):
    sip, dip = socket.inet_aton(TESTER_IP), socket.inet_aton(DUT_IP)
    seg = rawframe.tcp(sip, dip, src_port, dst_port, seq, ack, flags, win, opts, data)
    return ether(DUT_MAC, TESTER_MAC, ipv4(sip, dip, 6, seg))


class Seg:
    """A segment the DUT sent, with the time it was captured."""

    def __init__(self, at, sport, dport, seq, ack, flags, win, opts, data):
        self.at, self.sport, self.dport = at, sport, dport
        self.seq, self.ack, self.flags, self.win = seq, ack, flags, win
        self.opts, self.data = opts, data

    def seg_len(self):
        return len(self.data) + (1 if self.flags & SYN else 0) + \
            (1 if self.flags & FIN else 0)


class Link:
    """One interface: a capture thread that answers ARP for the tester and
    hands each TCP segment from the DUT to the queue of its tester port."""

    def __init__(self, iface):
        self.iface = iface
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                                  socket.htons(ETH_P_ALL))
        self.sock.bind((iface, ETH_P_ALL))
        # Straight to the driver: a TAP whose reader just attached still
        # has the no-op qdisc until linkwatch runs (up to a second), which
        # would drop our first ARP reply.
        self.sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        # The kernel's receive time, so delays are not our own lateness.
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.settimeout(0.2)
        self.lock = threading.Lock()
        self.queues = {}
        self.busy = False
        self.arp_seen = threading.Event()
        self.stop = False
        threading.Thread(target=self._run, daemon=True).start()

    def _arp(self, op, eth_dst, tha, tpa):
        return (eth_dst + TESTER_MAC + b"\x08\x06" +
                struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + TESTER_MAC +
                socket.inet_aton(TESTER_IP) + tha + socket.inet_aton(tpa))

    def resolve(self, timeout=3.0):
        """Asks the DUT for its MAC until it answers: the DUT then knows
        the tester too (RFC 826 learns from the request), so no case waits
        on ARP. Returns whether it answered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send(self._arp(1, b"\xff" * 6, b"\0" * 6, DUT_IP))
            if self.arp_seen.wait(0.2):
                return True
        return False

    def send(self, frame):
        """Sends a frame; a TAP with no reader yet refuses (ENOBUFS): a
        few bounded retries, then the frame is lost like on a wire."""
        for _ in range(5):
            try:
                with self.lock:
                    self.sock.send(frame)
                return
            except OSError:
                time.sleep(0.01)

    def subscribe(self, port):
        q = queue.Queue()
        with self.lock:
            self.queues[port] = q
        return q

    def _run(self):
        while not self.stop:
            try:
                frame, anc, _, addr = self.sock.recvmsg(
                    65536, socket.CMSG_SPACE(16))
            except socket.timeout:
                continue
            except OSError:
                return
            self.busy = True
            at = time.time()
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", data[:16])
                    at = sec + nsec / 1e9
            if addr[2] == PACKET_OUTGOING or len(frame) < 34:
                self.busy = False
                continue
            etype = struct.unpack("!H", frame[12:14])[0]
            if etype == 0x0806:
                self._on_arp(frame)
            elif etype == 0x0800:
                self._on_ip(frame, at)
            self.busy = False

    def backlog(self):
        """True while frames that already arrived are not yet sorted into
        the queues (the capture thread was not scheduled): a step does not
        end on silence that is only our own lateness."""
        buf = array.array("i", [0])
        fcntl.ioctl(self.sock.fileno(), termios.FIONREAD, buf)
        return buf[0] > 0 or self.busy

    def _on_arp(self, frame):
        op = struct.unpack("!H", frame[20:22])[0]
        if op == 2 and frame[28:32] == socket.inet_aton(DUT_IP):
            self.arp_seen.set()
        if op == 1 and frame[38:42] == socket.inet_aton(TESTER_IP):
            sha, spa = frame[22:28], frame[28:32]
            self.send(self._arp(2, sha, sha, socket.inet_ntoa(spa)))

    def _on_ip(self, frame, at):
        ip = frame[14:]
        ihl = (ip[0] & 15) * 4
        if ip[9] != 6 or ip[16:20] != socket.inet_aton(TESTER_IP):
            return
        total = struct.unpack("!H", ip[2:4])[0]
        tcp = ip[ihl:total]
        sport, dport, seq, ack, off, flags, win = struct.unpack(
            "!HHIIBBH", tcp[:16])
        hl = (off >> 4) * 4
        seg = Seg(at, sport, dport, seq, ack, flags, win,
                  parse_opts(tcp[20:hl]), tcp[hl:])
        with self.lock:
            q = self.queues.get(dport)
        if q is not None:
            q.put(seg)


def time_class(t):
    """Coarse classes of the gap before a reply (since the previous reply
    of the step, or the send): now (< 0.09 s), then a factor of two wide,
    centred on 0.125 s * 2^k (~0.25s, ~0.5s, ~1s, ~2s, ~4s): the usual
    timer values (0.2 s, 1 s, 2 s) sit far from the edges, so load on the
    machine does not flip them, but an RTO and its double differ."""
    if t < 0.09:
        return "now"
    return "~%gs" % (0.125 * 2 ** round(math.log2(t / 0.125)))


class Conn:
    """The tester's end of one case: its own tester port, the sequence
    state of both sides, and the record of normalized replies."""

    def __init__(self, link, name, index, dut_port):
        self.link, self.name = link, name
        self.tport = 30000 + index
        self.dport = dut_port
        self.tisn = ((index + 1) * 0x01000193 + 0x10000) & 0xFFFFFFFF
        self.snd_nxt = self.tisn
        self.disn = None
        self.rcv_nxt = 0
        self.win = 65535
        self.ts_on = True
        self.tsvals = []          # what we sent, index = our segment number
        self.ts_recent = 0        # the DUT's latest TSval
        self.q = link.subscribe(self.tport)
        self.t_send = time.monotonic()
        self.t_wall = time.time()  # the clock of Seg.at (kernel stamps)
        self.records = []
        self.handle = None
        self.drop_rtx = True      # leave out repeats in untimed steps
        self.drop_probes = False  # leave out zero-window probes
        self.hi = None            # highest sequence end the DUT sent
        self.timed = False
        self.last_ack = None
        self.quiet = 0.3          # silence that ends a step
        self.coalesce = True      # merge contiguous data (segmentation)
        self.syn_at = None

    # -- sending ---------------------------------------------------------
    def send(self, flags, seq=None, ack=None, data=b"", win=None, opts=None,
             ts=None, tsval=None, advance=True):
        """Sends one segment; seq/ack default to the tracked next values.
        With timestamps on, carries TSval (ours, increasing) and TSecr."""
        seq = self.snd_nxt if seq is None else seq
        if ack is None:
            ack = self.rcv_nxt if flags & ACK else 0
        opt_list = list(opts or [])
        if ts if ts is not None else self.ts_on:
            val = tsval if tsval is not None else 1000 + 10 * len(self.tsvals)
            ecr = self.ts_recent if flags & ACK else 0
            opt_list.append(("ts", (val, ecr)))
            self.tsvals.append(val)
        else:
            self.tsvals.append(None)
        frame = tcp_frame(self.tport, self.dport, seq, ack, flags,
                          self.win if win is None else win,
                          build_opts(opt_list), data)
        if advance and not flags & RST:
            end = seq + len(data) + (1 if flags & SYN else 0) + \
                (1 if flags & FIN else 0)
            if ((end - self.snd_nxt) & 0xFFFFFFFF) < 1 << 31:
                self.snd_nxt = end & 0xFFFFFFFF
        self.t_send = time.monotonic()
        self.t_wall = time.time()
        self.link.send(frame)

    def syn(self, opts=None, **kw):
        """Our SYN with Linux's usual options (window scale 0: windows are
        literal)."""
        if opts is None:
            opts = [("mss", 1460), ("sackok", True), ("ws", 0)]
        self.send(SYN, opts=opts, **kw)

    def ack(self, **kw):
        self.send(ACK, **kw)

    def app(self, label, action, **kw):
        """Has the DUT's application act (e.g. `c.handle.shutdown`) and
        records what the DUT sends because of it."""
        self.t_send, self.t_wall = time.monotonic(), time.time()
        action()
        return self.obs(label, **kw)

    # -- receiving -------------------------------------------------------
    def collect(self, quiet=0.3, limit=1.5, dur=None, first=None, until=0,
                want=None):
        """Replies until `quiet` s pass with none (or for exactly `dur` s),
        at most `limit` s after the last send; the first reply may take
        up to `first` s; returns at once after a segment with a flag in
        `until` (so the handshake's RTT is the machine's, not ours).
        With `want`, silence does not end the step before the DUT has sent
        up to ISN+want (its application's answer; a loaded machine may
        take a while): then `limit` is at least 4 s."""
        out = []
        start = self.t_send
        if want is not None:
            limit = max(limit, 4.0)
        end = start + (dur if dur is not None else limit)
        last = start if first is None else start + first - quiet
        while True:
            now = time.monotonic()
            wait = end - now
            if dur is None and not self._wanting(want):
                wait = min(wait, last + quiet - now)
            try:
                if wait > 0:
                    seg = self.q.get(timeout=wait)
                elif now < end and self.link.backlog():
                    time.sleep(0.005)
                    continue
                else:
                    seg = self.q.get_nowait()
            except queue.Empty:
                if wait > 0:
                    continue
                return out
            if self._skip(seg):
                continue
            out.append(seg)
            last = time.monotonic()
            self._learn(seg)
            if seg.flags & until:
                return out

    def _wanting(self, want):
        """True while the DUT has not yet sent up to ISN+want."""
        if want is None or self.disn is None:
            return False
        return ((self.rcv_nxt - self.disn - want) & 0xFFFFFFFF) >= 1 << 31

    def _skip(self, seg):
        """Retransmissions and window probes in steps that are not about
        them (their timing is compared in the cases that are)."""
        seg.rtx = False
        if seg.flags & SYN and not seg.flags & ACK and not self.timed and \
                self.syn_at is not None and seg.at - self.syn_at > 0.9:
            # The SYN's own RTO (1 s), not a reaction to this step.
            return True
        if seg.seg_len() and not seg.flags & RST:
            end = (seg.seq + seg.seg_len()) & 0xFFFFFFFF
            behind = self.hi is not None and \
                ((self.hi - end) & 0xFFFFFFFF) < 1 << 31
            if behind:
                seg.rtx = True
                # A repeat that ACKs nothing new tells nothing new.
                if self.drop_rtx and not self.timed and \
                        seg.ack == self.last_ack:
                    return True
            else:
                self.hi = end
        if seg.flags & ACK:
            self.last_ack = seg.ack
        if self.drop_probes and self.disn is not None and \
                not seg.flags & (SYN | FIN | RST):
            # Linux probes with SND.UNA-1 and no data, others with one
            # byte at SND.UNA (RFC 9293 3.8.6.1 allows either).
            back = (self.rcv_nxt - seg.seq) & 0xFFFFFFFF
            if (back, len(seg.data)) in ((1, 0), (0, 1)):
                return True
        return False

    def _learn(self, seg):
        if seg.flags & SYN and not seg.flags & RST:
            self.disn = seg.seq
            self.rcv_nxt = (seg.seq + 1) & 0xFFFFFFFF
            if self.dport == 0:
                self.dport = seg.sport
        elif self.disn is not None and seg.seq == self.rcv_nxt:
            self.rcv_nxt = (seg.seq + seg.seg_len()) & 0xFFFFFFFF
        if "ts" in seg.opts:
            self.ts_recent = seg.opts["ts"][0]

    def obs(self, label, timed=False, **kw):
        """Collects the replies to what was just sent and records them;
        a timed step records retransmissions and each reply's delay."""
        self.timed = timed
        segs = self.collect(**kw)
        prev = self.t_wall
        items = []
        for s in coalesce(segs, self.coalesce):
            items.append(self.norm(s, timed, prev))
            prev = s.at
        self.records.append((label, items))
        return segs

    def x(self, label, flags, timed=False, quiet=None, limit=1.5, dur=None,
          want=None, **kw):
        """send() then obs(); `quiet` defaults to the Conn's."""
        self.send(flags, **kw)
        return self.obs(label, timed=timed, limit=limit, dur=dur, want=want,
                        quiet=self.quiet if quiet is None else quiet)

    # -- normalizing -------------------------------------------------------
    def num(self, v, anchors):
        for name, base in anchors:
            if base is None:
                continue
            d = (v - base) & 0xFFFFFFFF
            if d >= 1 << 31:
                d -= 1 << 32
            if abs(d) < 1 << 22:
                return "%s%+d" % (name, d)
        return "0" if v == 0 else "?"

    def norm(self, s, timed, start):
        fl = "".join(ch for bit, ch in ((SYN, "S"), (FIN, "F"), (RST, "R"),
                                          (ACK, "A")) if s.flags & bit) or "."
        parts = [fl, "seq=" + self.num(s.seq, [("d", self.disn),
                                                ("t", self.tisn)])]
        if s.flags & ACK:
            parts.append("ack=" + self.num(s.ack, [("t", self.tisn),
                                                    ("d", self.disn)]))
        if not s.flags & RST:
            parts.append("w0" if s.win == 0 else "w+")
        if s.data:
            parts.append("len=%d" % len(s.data))
        names = sorted(k for k in s.opts if k not in ("sack",))
        if names:
            parts.append("opt=" + ",".join(names))
        if "sack" in s.opts:
            parts.append("sack=" + ",".join(
                "%s:%s" % (self.num(a, [("t", self.tisn)]),
                           self.num(b, [("t", self.tisn)]))
                for a, b in s.opts["sack"]))
        if "ts" in s.opts:
            ecr = s.opts["ts"][1]
            if ecr == 0:
                parts.append("ecr=0")
            elif ecr in self.tsvals:
                parts.append("ecr=#%d" % self.tsvals.index(ecr))
            else:
                parts.append("ecr=?")
        if getattr(s, "rtx", False) and not timed:
            parts.append("rtx")
        if timed:
            parts.append("+" + time_class(s.at - start))
            if os.environ.get("PKTIMPACT_RAW"):  # debugging: the seconds
                parts.append("(%.3f)" % (s.at - start))
        return " ".join(parts)


def coalesce(segs, merge_data=True):
    """Merges what differs only in how the DUT cut it: a pure ACK next to
    a segment with the same seq and ack (ACK then FIN, ACK then data, or
    the reverse within 50 ms) is dropped, and contiguous data/FIN segments
    with the same ack become one (Linux sends a response and its FIN in
    two segments where a stack that queues both sends one)."""
    out = []
    for s in segs:
        if out:
            p = out[-1]
            pure = not p.data and not p.flags & (SYN | FIN | RST)
            same = p.ack == s.ack and p.flags & ACK and s.flags & ACK
            if pure and same and s.seq == p.seq and not s.flags & (SYN | RST) \
                    and (s.data or s.flags & FIN):
                out[-1] = s
                continue
            # The same pure ACK passed by the FIN on another CPU (Linux:
            # the app's close and the softirq's ACK race).
            s_pure = not s.data and not s.flags & (SYN | FIN | RST)
            if s_pure and same and s.seq == p.seq and p.flags & FIN and \
                    abs(s.at - p.at) < 0.05:
                continue
            if merge_data and same and p.data and \
                    not p.flags & (SYN | FIN | RST) and \
                    not s.flags & (SYN | RST) and \
                    s.seq == (p.seq + len(p.data)) & 0xFFFFFFFF and \
                    (s.data or s.flags & FIN) and abs(s.at - p.at) < 0.05:
                m = Seg(p.at, p.sport, p.dport, p.seq, s.ack,
                        p.flags | s.flags, s.win, dict(p.opts),
                        p.data + s.data)
                m.opts.update(s.opts)
                m.rtx = p.rtx and s.rtx
                out[-1] = m
                continue
        out.append(s)
    return out


class StackDut:
    """tapstack as the DUT: services run by the Rust test; active opens run
    `tapstack connect` on a spare TAP (one per case at a time)."""

    def __init__(self, tapstack, active_ifaces):
        self.tapstack = tapstack
        self.free = queue.Queue()
        for name in active_ifaces:
            self.free.put(Link(name))

    def connect(self, case, index, port):
        link = self.free.get(timeout=60)
        # PKTIMPACT_TRACE=DIR keeps a --trace log of each connect.
        trace = os.environ.get("PKTIMPACT_TRACE")
        err = open(os.path.join(trace, "%s.log" % case), "w") if trace \
            else subprocess.DEVNULL
        proc = subprocess.Popen(
            [self.tapstack, "--tap", link.iface, "--no-host-config",
             "--no-offload"] + (["--trace"] if trace else []) +
            ["connect", "%s:%d" % (TESTER_IP, port)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        return StackActive(self, link, proc)


class StackActive:
    def __init__(self, dut, link, proc):
        self.dut, self.link, self.proc = dut, link, proc

    def write(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def shutdown(self):
        self.proc.stdin.close()

    def release(self):
        self.proc.kill()
        self.proc.wait()
        self.dut.free.put(self.link)


class LinuxDut:
    """The kernel as the DUT: pktimpact_app.py in the DUT's namespace runs
    the services and opens connections on request."""

    def __init__(self, ns, link):
        app = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "pktimpact_app.py")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, app],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "ready" not in line:
            raise SystemExit("pktimpact_app.py did not start: %r" % line)
        self.link = link
        self.lock = threading.Lock()

    def cmd(self, line):
        with self.lock:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()

    def connect(self, case, index, port):
        self.cmd("connect %d %s %d" % (index, TESTER_IP, port))
        return LinuxActive(self, index)


class LinuxActive:
    def __init__(self, dut, index):
        self.dut, self.index, self.link = dut, index, dut.link

    def write(self, data):
        self.dut.cmd("write %d %s" % (self.index, data.hex()))

    def shutdown(self):
        self.dut.cmd("shutdown %d" % self.index)

    def release(self):
        self.dut.cmd("close %d" % self.index)


class Runner:
    def __init__(self, link, dut):
        self.link, self.dut = link, dut

    def listen(self, name, index, port):
        return Conn(self.link, name, index, port)

    def active(self, name, index):
        """A connection the DUT opens to our port; returns the Conn after
        the DUT's SYN is seen (recorded as step 'syn')."""
        tport = 30000 + index
        handle = self.dut.connect(name, index, tport)
        c = Conn(handle.link, name, index, 0)
        c.handle = handle
        c.drop_rtx = False  # SYN repeats are what SYN-SENT cases compare
        c.t_send, c.t_wall = time.monotonic(), time.time()
        segs = c.obs("syn", quiet=0.05, limit=5.0, first=5.0)
        if not segs or not segs[0].flags & SYN:
            raise CaseError("no SYN from the DUT")
        c.syn_at = segs[0].at  # wall clock, as Seg.at
        return c


def run_case(runner, index, name, fn, out, out_lock):
    rec = []
    conns = []

    def listen(port):
        c = runner.listen(name, index, port)
        conns.append(c)
        return c

    def active():
        c = runner.active(name, index)
        conns.append(c)
        return c

    try:
        fn(listen, active)
    except CaseError as e:
        rec.append(("error", [str(e)]))
    except Exception as e:  # a bug in the script: report, do not hide
        rec.append(("error", ["%s: %s" % (type(e).__name__, e)]))
    finally:
        for c in conns:
            if c.handle is not None:
                c.handle.release()
    lines = []
    for c in conns:
        for label, items in c.records:
            lines.append("OBS\t%s\t%s\t%s" % (name, label,
                                              " | ".join(items) or "-"))
    for label, items in rec:
        lines.append("OBS\t%s\t%s\t%s" % (name, label, " | ".join(items)))
    with out_lock:
        out.extend(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", choices=["stack", "linux"], required=True)
    ap.add_argument("--iface", required=True)
    ap.add_argument("--active-ifaces", default="")
    ap.add_argument("--tapstack", default="")
    ap.add_argument("--dut-ns", default="")
    ap.add_argument("--cases", default="")
    ap.add_argument("--jobs", type=int, default=6)
    args = ap.parse_args()
    t0 = time.monotonic()
    link = Link(args.iface)
    if not link.resolve():
        raise SystemExit("the DUT does not answer ARP on %s" % args.iface)
    if args.side == "stack":
        dut = StackDut(args.tapstack, [i for i in
                                       args.active_ifaces.split(",") if i])
    else:
        dut = LinuxDut(args.dut_ns, link)
    runner = Runner(link, dut)
    wanted = set(n for n in args.cases.split(",") if n)
    cases = [(i, n, f) for i, (n, f) in enumerate(pktimpact_cases.CASES)
             if not wanted or n in wanted]
    out, out_lock = [], threading.Lock()
    todo = queue.Queue()
    for item in cases:
        todo.put(item)

    def worker():
        while True:
            try:
                i, n, f = todo.get_nowait()
            except queue.Empty:
                return
            run_case(runner, i, n, f, out, out_lock)

    workers = [threading.Thread(target=worker, daemon=True)
               for _ in range(args.jobs)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=max(1.0, 90 - (time.monotonic() - t0)))
    order = {n: i for i, n, _ in cases}
    out.sort(key=lambda l: order[l.split("\t")[1]])
    for line in out:
        print(line)
    print("done cases=%d secs=%.1f" % (len(cases), time.monotonic() - t0))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
