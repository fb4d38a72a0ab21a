#!/usr/bin/env python3
"""Helpers for the daemon's kernel tests (standard library only). Modes
marked (shim) run under `tapstack run`; the others on the kernel side.
Prints key=value lines; every socket has a timeout, every mode ends.

  daemon.py asyncecho PORT SECS       (shim) asyncio (epoll) echo server
  daemon.py errors HOST CLOSED RST DROP   (shim) every errno a program sees
  daemon.py rstserver PORT SECS       accepts; reads 1 byte; closes with RST
  daemon.py watcher PORT BYTES SECS   one connection: sends BYTES, then
                                      reports how it ended (EOF or reset)
  daemon.py killee HOST PORT UNREAD   (shim) connects; if UNREAD, waits
                                      until the peer's data arrived; then
                                      prints ready=1 and sleeps until killed
  daemon.py blockread HOST PORT      (shim) connects, blocks in recv,
                                      prints how it returned
  daemon.py udpserver HOST PORT      answers one datagram with b"from kernel"
  daemon.py udpclient HOST PORT      sends b"from kernel" until a reply
  daemon.py threads N                (shim) N threads each open a socket;
                                      prints the open descriptors after
  daemon.py listener PORT             (shim) listens, prints ready=1, sleeps
  daemon.py bindonce PORT             (shim) bind+listen once: bound=1
  daemon.py hostile PATH              malformed/oversized/hostile control
                                      messages and 1,000 connections
"""
import asyncio
import errno
import os
import select
import socket
import struct
import sys
import time


def asyncecho(port, secs):
    async def handle(reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
            writer.close()
            await writer.wait_closed()
        except OSError:
            pass

    async def main():
        server = await asyncio.start_server(handle, "0.0.0.0", port, backlog=256)
        print("ready=1", flush=True)
        async with server:
            await asyncio.sleep(secs)

    asyncio.run(main())


def errname(e):
    return errno.errorcode.get(e, str(e))


def expect(name, fn):
    """Runs fn; prints name=ERRNO of the OSError it raised (or OK)."""
    try:
        fn()
        print(f"{name}=OK", flush=True)
    except OSError as e:
        print(f"{name}={errname(e.errno)}", flush=True)


def errors(host, closed, rst, drop):
    def refused():
        s = socket.socket()
        s.settimeout(10)
        s.connect((host, closed))

    def nonblocking(port):
        def run():
            s = socket.socket()
            s.setblocking(False)
            r = s.connect_ex((host, port))
            assert r == errno.EINPROGRESS, f"connect_ex gave {errname(r)}"
            _, w, _ = select.select([], [s], [], 10)
            assert w, "never writable"
            e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if e:
                raise OSError(e, os.strerror(e))
        return run

    def unreachable():
        s = socket.socket()
        s.settimeout(10)
        t = time.monotonic()
        try:
            s.connect(("192.0.2.1", 80))
        finally:
            print(f"unreachable_secs={time.monotonic() - t:.3f}", flush=True)

    def in_use():
        a = socket.socket()
        a.bind(("0.0.0.0", 7300))
        a.listen()
        b = socket.socket()
        b.bind(("0.0.0.0", 7300))

    def reset():
        s = socket.socket()
        s.settimeout(10)
        s.connect((host, rst))
        s.sendall(b"x")
        try:
            got = s.recv(100)
            print(f"reset_recv={'EOF' if not got else 'DATA'}", flush=True)
        except OSError as e:
            print(f"reset_recv={errname(e.errno)}", flush=True)
        s.send(b"more")

    def timeout():
        s = socket.socket()
        s.settimeout(60)
        s.connect((host, drop))

    def udp_refused():
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(5)
        u.connect((host, closed))
        u.send(b"anyone?")
        u.recv(100)

    expect("refused", refused)
    expect("nonblocking_refused", nonblocking(closed))
    expect("nonblocking_ok", nonblocking(rst))
    expect("unreachable", unreachable)
    expect("in_use", in_use)
    expect("reset_send", reset)
    expect("udp_refused", udp_refused)
    expect("timeout", timeout)


def rstserver(port, secs):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(16)
    srv.settimeout(secs)
    print("ready=1", flush=True)
    end = time.monotonic() + secs
    while time.monotonic() < end:
        try:
            c, _ = srv.accept()
        except OSError:
            break
        c.settimeout(5)
        try:
            c.recv(1)
        except OSError:
            pass
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()


def watcher(port, nbytes, secs):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(1)
    srv.settimeout(secs)
    print("ready=1", flush=True)
    c, _ = srv.accept()
    c.settimeout(secs)
    if nbytes:
        c.sendall(b"u" * nbytes)
    try:
        while c.recv(65536):
            pass
        print("end=EOF", flush=True)
    except OSError as e:
        print(f"end={errname(e.errno)}", flush=True)


def killee(host, port, unread):
    s = socket.socket()
    s.settimeout(10)
    s.connect((host, port))
    if unread:
        # Wait (without reading) until the peer's bytes are here.
        r, _, _ = select.select([s], [], [], 10)
        assert r, "no data arrived"
    print("ready=1", flush=True)
    time.sleep(60)


def blockread(host, port):
    s = socket.socket()
    s.settimeout(10)
    s.connect((host, port))
    s.settimeout(60)
    print("ready=1", flush=True)
    try:
        got = s.recv(100)
        print(f"read={'EOF' if not got else 'DATA'}", flush=True)
    except OSError as e:
        print(f"read={errname(e.errno)}", flush=True)


def udpserver(host, port):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((host, port))
    u.settimeout(20)
    print("ready=1", flush=True)
    data, peer = u.recvfrom(2048)
    print(f"got={data.decode(errors='replace')}", flush=True)
    u.sendto(b"from kernel", peer)


def udpclient(host, port):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(0.2)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        u.sendto(b"from kernel", (host, port))
        try:
            data, _ = u.recvfrom(2048)
            print(f"reply={data.decode(errors='replace')}", flush=True)
            return
        except socket.timeout:
            pass
    print("reply=NONE")


def threads(n):
    import threading

    def one():
        socket.socket().close()

    # A duplicate (fcntl F_DUPFD_CLOEXEC underneath) of a UDP socket
    # still speaks the address header.
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    v = u.dup()
    v.settimeout(3)
    v.sendto(b"dup", ("10.0.0.1", 7999))
    try:
        v.recvfrom(100)
        print("dup_udp=reply")
    except ConnectionRefusedError:
        print("dup_udp=ECONNREFUSED")
    except OSError as e:
        print(f"dup_udp={errname(e.errno)}")
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(n):
        t = threading.Thread(target=one)
        t.start()
        t.join()
    print(f"fds_before={before}")
    print(f"fds_after={len(os.listdir('/proc/self/fd'))}")


def listener(port):
    s = socket.socket()
    s.bind(("0.0.0.0", port))
    s.listen()
    print("ready=1", flush=True)
    time.sleep(60)


def bindonce(port):
    s = socket.socket()
    try:
        s.bind(("0.0.0.0", port))
        s.listen()
        print("bound=1")
    except OSError as e:
        print(f"bound={errname(e.errno)}")


MSG_LEN = 24


def msg(op, a=0, b=0, magic=b"TS", version=1, length=MSG_LEN):
    return (magic + bytes([version, op]) + struct.pack("<HiII", length, 0, a, b)
            + bytes(6))


def control(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(5)
    s.connect(path)
    return s


def closed_after(path, payload):
    """Sends payload; True if the daemon then closes the connection."""
    s = control(path)
    s.send(payload)
    try:
        return s.recv(100) == b""
    except ConnectionResetError:
        return True


def reply(s, payload, fds=()):
    if fds:
        s.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i" * len(fds), *fds))])
    else:
        s.send(payload)
    r = s.recv(100)
    return struct.unpack("<i", r[6:10])[0] if len(r) == MSG_LEN else None


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def hostile(path):
    print(f"short_closed={int(closed_after(path, b'TS1'))}", flush=True)
    print(f"magic_closed={int(closed_after(path, msg(1, magic=b'XX')))}", flush=True)
    print(f"version_closed={int(closed_after(path, msg(1, version=9)))}", flush=True)
    print(f"length_closed={int(closed_after(path, msg(1, length=60000)))}", flush=True)
    print(f"oversized_closed={int(closed_after(path, b'TS' + bytes(4000)))}", flush=True)
    s = control(path)
    print(f"unknown_op={errname(reply(s, msg(200)))}", flush=True)
    print(f"bad_kind={errname(reply(s, msg(2, a=99)))}", flush=True)
    r, w = os.pipe()
    print(f"foreign_fd={errname(reply(s, msg(3), [r, w]))}", flush=True)
    print(f"no_fd={errname(reply(s, msg(4)))}", flush=True)
    print(f"still_served={int(reply(s, msg(1)) == 0)}", flush=True)
    # A client that never reads its replies is closed, not waited for.
    g = control(path)
    try:
        for _ in range(5000):
            g.send(msg(1))
    except OSError:
        pass
    pid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
    before = rss_kb(pid)
    conns = []
    for _ in range(1000):
        c = control(path)
        c.send(msg(1))
        conns.append(c)
    answered = sum(1 for c in conns if len(c.recv(100)) == MSG_LEN)
    print(f"thousand_answered={answered}", flush=True)
    print(f"rss_growth_kb={rss_kb(pid) - before}", flush=True)
    for c in conns:
        c.close()
    t = control(path)
    print(f"after_all={int(reply(t, msg(1)) == 0)}", flush=True)


def main():
    a = sys.argv[1:]
    mode = a[0] if a else ""
    if mode == "asyncecho":
        asyncecho(int(a[1]), float(a[2]))
    elif mode == "errors":
        errors(a[1], int(a[2]), int(a[3]), int(a[4]))
    elif mode == "rstserver":
        rstserver(int(a[1]), float(a[2]))
    elif mode == "watcher":
        watcher(int(a[1]), int(a[2]), float(a[3]))
    elif mode == "killee":
        killee(a[1], int(a[2]), a[3] == "1")
    elif mode == "blockread":
        blockread(a[1], int(a[2]))
    elif mode == "udpserver":
        udpserver(a[1], int(a[2]))
    elif mode == "udpclient":
        udpclient(a[1], int(a[2]))
    elif mode == "threads":
        threads(int(a[1]))
    elif mode == "listener":
        listener(int(a[1]))
    elif mode == "bindonce":
        bindonce(int(a[1]))
    elif mode == "hostile":
        hostile(a[1])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
