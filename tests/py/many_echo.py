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
import os
import selectors
import sys
import time

from connectmany import connect_many

HANDSHAKES = 256
DEADLINE = 240


def main():
    host, port, n, go_file, ident = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    src = sys.argv[6] if len(sys.argv) > 6 else None
    end = time.monotonic() + DEADLINE
    opened, failed = connect_many(host, port, n, src, HANDSHAKES, end)
    sel = selectors.DefaultSelector()
    print(f"open={len(opened)}", flush=True)
    print(f"connect_failed={failed}", flush=True)
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
