#!/usr/bin/env python3
"""TCP peers for the kernel tests (standard library only).

Prints key=value lines the Rust tests parse. Every socket has a timeout, so
every mode ends by itself.

  tcp.py echo HOST PORT BYTES SEED [TIMEOUT]
      one thread sends BYTES of seeded random data, another reads and
      hashes what comes back; prints sent/received sizes and SHA-256s
  tcp.py chargen HOST PORT BYTES
      reads BYTES from chargen and checks them against the RFC 864 pattern
  tcp.py discard HOST PORT BYTES SEED
      sends BYTES, half-closes, waits for the server's FIN
  tcp.py refused HOST PORT        expects ConnectionRefusedError on connect
  tcp.py halfclose HOST PORT BYTES SEED
      sends BYTES, shutdown(SHUT_WR), then reads the whole echo and EOF
  tcp.py many HOST PORT N BYTES SEED [TIMEOUT [STALL]]
      N concurrent connections, each sends its own BYTES and checks its
      echo; with STALL a connection silent for STALL s fails, reported
      with its TCP_INFO and the output of $STALL_CMD if set
  tcp.py hold HOST PORT SECS      connects, prints ready=1, holds SECS
  tcp.py server PORT SECS         one connection: reads to EOF, then sends
                                  b"reply:"+data and closes
  tcp.py sender PORT BYTES SEED SECS
                                  one connection: sends BYTES of seeded
                                  random data, then closes
  tcp.py slowreader PAUSE         stdin -> hash; sleeps PAUSE s first
  tcp.py pcapgaps FILE SRC DST    data-segment gaps SRC->DST in a pcap
"""
import hashlib
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time

CHUNK = 64 * 1024


def stream(nbytes, seed):
    """Yields the seeded random stream in CHUNK pieces."""
    rng = random.Random(seed)
    left = nbytes
    while left > 0:
        n = min(CHUNK, left)
        yield rng.randbytes(n)
        left -= n


def stream_sha(nbytes, seed):
    h = hashlib.sha256()
    for c in stream(nbytes, seed):
        h.update(c)
    return h.hexdigest()


def connect(host, port, timeout):
    s = socket.create_connection((host, port), timeout=timeout)
    s.settimeout(timeout)
    return s


def echo(host, port, nbytes, seed, timeout=60.0):
    s = connect(host, port, timeout)
    sent_h = hashlib.sha256()
    result = {"sent": 0, "error": ""}

    def sender():
        try:
            for c in stream(nbytes, seed):
                s.sendall(c)
                sent_h.update(c)
                result["sent"] += len(c)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            result["error"] = repr(e)

    start = time.monotonic()
    t = threading.Thread(target=sender, daemon=True)
    t.start()
    recv_h = hashlib.sha256()
    received = 0
    eof = 0
    try:
        while True:
            b = s.recv(1 << 20)
            if not b:
                eof = 1
                break
            recv_h.update(b)
            received += len(b)
    except OSError as e:
        print(f"recv_error={e!r}")
    secs = time.monotonic() - start
    t.join(timeout)
    s.close()
    print(f"sent={result['sent']}")
    print(f"received={received}")
    print(f"eof={eof}")
    print(f"sent_sha={sent_h.hexdigest()}")
    print(f"recv_sha={recv_h.hexdigest()}")
    print(f"secs={secs:.3f}")
    print(f"send_error={result['error']}")


def rfc864_block():
    out = bytearray()
    for line in range(95):
        out += bytes(32 + (line + i) % 95 for i in range(72)) + b"\r\n"
    return bytes(out)


def chargen(host, port, nbytes, timeout=60.0):
    block = rfc864_block()
    period = len(block)
    pattern = block * (2 + (1 << 20) // period + 1)
    s = connect(host, port, timeout)
    start = time.monotonic()
    received = 0
    bad_at = -1
    while received < nbytes:
        b = s.recv(min(1 << 20, nbytes - received))
        if not b:
            break
        off = received % period
        if pattern[off:off + len(b)] != b and bad_at < 0:
            for i, x in enumerate(b):
                if pattern[off + i] != x:
                    bad_at = received + i
                    break
        received += len(b)
    secs = time.monotonic() - start
    s.close()
    print(f"received={received}")
    print(f"bad_at={bad_at}")
    print(f"secs={secs:.3f}")


def discard(host, port, nbytes, seed, timeout=60.0):
    s = connect(host, port, timeout)
    start = time.monotonic()
    sent = 0
    for c in stream(nbytes, seed):
        s.sendall(c)
        sent += len(c)
    s.shutdown(socket.SHUT_WR)
    extra = 0
    while True:
        b = s.recv(65536)
        if not b:
            break
        extra += len(b)
    secs = time.monotonic() - start
    s.close()
    print(f"sent={sent}")
    print(f"extra={extra}")
    print(f"secs={secs:.3f}")


def refused(host, port):
    try:
        s = socket.create_connection((host, port), timeout=5)
        s.close()
        print("result=connected")
    except ConnectionRefusedError:
        print("result=refused")
    except OSError as e:
        print(f"result=other {e!r}")


def halfclose(host, port, nbytes, seed, timeout=30.0):
    data = b"".join(stream(nbytes, seed))
    s = connect(host, port, timeout)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got = bytearray()
    eof = 0
    while True:
        b = s.recv(65536)
        if not b:
            eof = 1
            break
        got += b
    s.close()
    print(f"sent={len(data)}")
    print(f"received={len(got)}")
    print(f"equal={int(bytes(got) == data)}")
    print(f"eof={eof}")


def tcp_info_line(s):
    """The kernel's view of a connection (struct tcp_info), for a stall
    report: state, retransmission and window figures."""
    try:
        info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError as e:
        return f"tcp_info: {e!r}"
    state, ca_state, retransmits, probes, backoff = info[:5]
    names = ["rto", "ato", "snd_mss", "rcv_mss", "unacked", "sacked", "lost",
             "retrans", "fackets", "last_data_sent", "last_ack_sent",
             "last_data_recv", "last_ack_recv", "pmtu", "rcv_ssthresh", "rtt",
             "rttvar", "snd_ssthresh", "snd_cwnd", "advmss", "reordering",
             "rcv_rtt", "rcv_space", "total_retrans"]
    vals = struct.unpack_from(f"{len(names)}I", info, 8)
    fields = " ".join(f"{k}={v}" for k, v in zip(names, vals))
    return (f"tcp_info: state={state} ca_state={ca_state} "
            f"retransmits={retransmits} probes={probes} backoff={backoff} "
            f"{fields}")


def stall_report(s, i, got, sent):
    """What a stalled connection looked like from both ends: the kernel's
    TCP_INFO, and the output of $STALL_CMD (the stack's `ss -tia`)."""
    lines = [f"conn{i}: stalled: received {got} sent {sent[0]}",
             f"conn{i}: local={s.getsockname()} {tcp_info_line(s)}"]
    cmd = os.environ.get("STALL_CMD")
    if cmd:
        try:
            out = subprocess.run(cmd, shell=True, capture_output=True,
                                 text=True, timeout=10)
            lines += [f"stall_cmd: {ln}" for ln in
                      (out.stdout + out.stderr).splitlines()]
        except (OSError, subprocess.SubprocessError) as e:
            lines.append(f"stall_cmd: {e!r}")
    return lines


def many(host, port, n, nbytes, seed, timeout=60.0, stall=None):
    """With STALL, a connection that moves no byte for STALL seconds
    fails (its socket timeout), and its report follows the errors;
    TIMEOUT bounds the whole run."""
    stall = stall or timeout
    reports = []
    ok = [0] * n
    errors = []
    lock = threading.Lock()
    start_gate = threading.Barrier(n, timeout=timeout)

    def one(i):
        data = random.Random(seed * 7919 + i).randbytes(nbytes)
        try:
            s = connect(host, port, timeout)
            s.settimeout(stall)
            try:
                start_gate.wait()
            except threading.BrokenBarrierError:
                pass

            sent = [0]

            def send():
                try:
                    # sendall's timeout bounds the whole call (Python 3.5+):
                    # per chunk it bounds a pause in progress instead.
                    view = memoryview(data)
                    for at in range(0, len(view), CHUNK):
                        s.sendall(view[at:at + CHUNK])
                        sent[0] = at + len(view[at:at + CHUNK])
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

            t = threading.Thread(target=send, daemon=True)
            t.start()
            got = bytearray()
            while True:
                try:
                    b = s.recv(65536)
                except socket.timeout:
                    with lock:
                        reports.extend(stall_report(s, i, len(got), sent))
                    raise
                if not b:
                    break
                got += b
            t.join(timeout)
            s.close()
            if bytes(got) == data:
                ok[i] = 1
            else:
                with lock:
                    errors.append(f"conn{i}: got {len(got)} bytes, differ")
        except Exception as e:  # noqa: BLE001 - report every failure
            start_gate.abort()
            with lock:
                errors.append(f"conn{i}: {e!r}")

    threading.stack_size(256 * 1024)
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    start = time.monotonic()
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    secs = time.monotonic() - start
    print(f"ok={sum(ok)}")
    print(f"failed={n - sum(ok)}")
    print(f"secs={secs:.3f}")
    for e in errors[:10]:
        print(f"error: {e}")
    for line in reports:
        print(line)


def hold(host, port, secs):
    s = connect(host, port, 10)
    s.sendall(b"x" * 100)
    s.recv(100)
    # struct tcp_info: state, ca_state, retransmits, probes, backoff,
    # options, snd_wscale:4 | rcv_wscale:4, ...
    info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    options, scales = info[5], info[6]
    print(f"info_ts={int(bool(options & 1))}")
    print(f"info_sack={int(bool(options & 2))}")
    print(f"info_wscale={int(bool(options & 4))}")
    print(f"info_snd_wscale={scales & 15}")
    print("ready=1", flush=True)
    time.sleep(secs)
    s.close()


def listen(port, secs):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(1)
    srv.settimeout(secs)
    print("ready=1", flush=True)
    conn, peer = srv.accept()
    conn.settimeout(secs)
    return srv, conn, peer


def server(port, secs):
    srv, conn, peer = listen(port, secs)
    data = bytearray()
    eof = 0
    while True:
        b = conn.recv(65536)
        if not b:
            eof = 1  # the client's FIN (half-close) arrived
            break
        data += b
    conn.sendall(b"reply:" + bytes(data))
    conn.close()
    srv.close()
    print(f"peer={peer[0]}:{peer[1]}")
    print(f"eof_before_reply={eof}")
    print(f"received_len={len(data)}")
    print(f"received_sha={hashlib.sha256(data).hexdigest()}")
    print(f"received_head_hex={bytes(data[:64]).hex()}")


def sender(port, nbytes, seed, secs):
    srv, conn, peer = listen(port, secs)
    h = hashlib.sha256()
    start = time.monotonic()
    for c in stream(nbytes, seed):
        conn.sendall(c)
        h.update(c)
    conn.shutdown(socket.SHUT_WR)
    # Wait for the client's FIN so the close is orderly.
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass
    conn.close()
    srv.close()
    print(f"sent_sha={h.hexdigest()}")
    print(f"secs={time.monotonic() - start:.3f}")


def slowreader(pause):
    """Reads stdin: one read, then a pause, then as fast as possible."""
    inp = sys.stdin.buffer.raw
    h = hashlib.sha256()
    total = 0
    first = inp.read(65536) or b""
    h.update(first)
    total += len(first)
    time.sleep(pause)
    resumed = time.time()
    while True:
        b = inp.read(1 << 20)
        if not b:
            break
        h.update(b)
        total += len(b)
    print(f"resumed_at={resumed:.6f}")
    print(f"received={total}")
    print(f"sha={h.hexdigest()}")


def pcap_segments(path, src, dst):
    """(time, payload_len, window_field, flags) of TCP segments src->dst."""
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    if magic == 0xA1B2C3D4:
        endian, div = "<", 1e6
    elif magic == 0xA1B23C4D:
        endian, div = "<", 1e9
    else:
        raise SystemExit(f"unknown pcap magic {magic:#x}")
    off = 24
    out = []
    srcb, dstb = socket.inet_aton(src), socket.inet_aton(dst)
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        frame = data[off:off + incl]
        off += incl
        if len(frame) < 34 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        ihl = (ip[0] & 15) * 4
        if ip[9] != 6 or ip[12:16] != srcb or ip[16:20] != dstb:
            continue
        total = struct.unpack("!H", ip[2:4])[0]
        tcp = ip[ihl:]
        doff = (tcp[12] >> 4) * 4
        plen = total - ihl - doff
        flags = tcp[13]
        window = struct.unpack("!H", tcp[14:16])[0]
        out.append((sec + frac / div, plen, window, flags))
    return out


def pcapgaps(path, src, dst, min_gap):
    """Gaps between consecutive data segments src->dst, and the windows
    dst advertised back."""
    data = [s for s in pcap_segments(path, src, dst) if s[1] > 0]
    acks = [s for s in pcap_segments(path, dst, src) if not s[3] & 0x02]
    times = [s[0] for s in data]
    gaps = [(b - a, a) for a, b in zip(times, times[1:])]
    big = [(g, at) for g, at in gaps if g >= min_gap]
    print(f"data_segments={len(data)}")
    print(f"data_bytes={sum(s[1] for s in data)}")
    print(f"first_data_at={times[0] if times else 0:.6f}")
    print(f"last_data_at={times[-1] if times else 0:.6f}")
    print(f"min_window_field={min((s[2] for s in acks), default=-1)}")
    print(f"big_gaps={len(big)}")
    print("gaps=" + ",".join(f"{at:.6f}+{g:.3f}" for g, at in big[:50]))


def main():
    a = sys.argv[1:]
    mode = a[0] if a else ""
    if mode == "echo":
        echo(a[1], int(a[2]), int(a[3]), int(a[4]), float(a[5]) if len(a) > 5 else 60.0)
    elif mode == "chargen":
        chargen(a[1], int(a[2]), int(a[3]))
    elif mode == "discard":
        discard(a[1], int(a[2]), int(a[3]), int(a[4]))
    elif mode == "refused":
        refused(a[1], int(a[2]))
    elif mode == "halfclose":
        halfclose(a[1], int(a[2]), int(a[3]), int(a[4]))
    elif mode == "many":
        many(a[1], int(a[2]), int(a[3]), int(a[4]), int(a[5]),
             *[float(x) for x in a[6:8]])
    elif mode == "hold":
        hold(a[1], int(a[2]), float(a[3]))
    elif mode == "server":
        server(int(a[1]), float(a[2]))
    elif mode == "sender":
        sender(int(a[1]), int(a[2]), int(a[3]), float(a[4]))
    elif mode == "slowreader":
        slowreader(float(a[1]))
    elif mode == "pcapgaps":
        pcapgaps(a[1], a[2], a[3], float(a[4]) if len(a) > 4 else 0.15)
    elif mode == "sha":
        print(f"sha={stream_sha(int(a[1]), int(a[2]))}")
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
