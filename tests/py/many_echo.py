#!/usr/bin/env python3
"""Many concurrent TCP echo connections from one process (open files are
capped at 20,000 per process here, so a test runs several of these).

  many_echo.py HOST PORT N GO_FILE ID [SRC]

Opens N connections (at most 256 handshakes in flight), prints "open=K",
waits until GO_FILE exists (every process holds its connections open),
then sends a distinct message on each, reads every echo back, checks it
byte for byte, prints key=value results and closes. Every wait is bounded.
With SRC, connections come from that local address (several processes
with several addresses get past one address's ephemeral ports).
"""
import errno
import os
import selectors
import socket
import sys
import time

HANDSHAKES = 256
IP_BIND_ADDRESS_NO_PORT = 24  # the port is chosen at connect(), per 4-tuple
DEADLINE = 240


def main():
    host, port, n, go_file, ident = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    src = sys.argv[6] if len(sys.argv) > 6 else None
    sel = selectors.DefaultSelector()
    end = time.monotonic() + DEADLINE
    opened, pending, failed = [], 0, 0
    started = 0
    while (started < n or pending) and time.monotonic() < end:
        while started < n and pending < HANDSHAKES:
            s = socket.socket()
            s.setblocking(False)
            if src:
                s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind((src, 0))
            err = s.connect_ex((host, port))
            if err not in (0, errno.EINPROGRESS):
                failed += 1
                s.close()
            else:
                sel.register(s, selectors.EVENT_WRITE, "connect")
                pending += 1
            started += 1
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            sel.unregister(s)
            pending -= 1
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                opened.append(s)
            else:
                failed += 1
                s.close()
    print(f"open={len(opened)}", flush=True)
    print(f"connect_failed={failed + pending}", flush=True)
    while not os.path.exists(go_file) and time.monotonic() < end:
        time.sleep(0.05)
    # Every connection sends its own message; all replies are checked.
    want = {}
    for i, s in enumerate(opened):
        msg = f"{ident}:{i:06d}:".encode() + os.urandom(16).hex().encode() + b"\n"
        want[s] = [msg, b""]
        try:
            s.send(msg)
        except OSError:
            pass
        sel.register(s, selectors.EVENT_READ)
    ok = bad = 0
    left = len(opened)
    while left and time.monotonic() < end:
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            entry = want[s]
            entry[1] += data
            if not data or len(entry[1]) >= len(entry[0]):
                if entry[1] == entry[0]:
                    ok += 1
                else:
                    bad += 1
                sel.unregister(s)
                left -= 1
    print(f"echo_ok={ok}")
    print(f"echo_bad={bad}")
    print(f"echo_missing={left}")
    for s in opened:
        s.close()


if __name__ == "__main__":
    main()
