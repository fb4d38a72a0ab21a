#!/usr/bin/env python3
"""WebSocket peers for the kernel tests (python `websockets` >= 12, sync
client). Prints key=value lines the Rust tests parse; every wait has a
timeout.

  ws_client.py sizes URL         text and binary messages of 0, 125, 126,
                                 65535, 65536 bytes and 1 MiB, each echoed
                                 byte for byte
  ws_client.py ping URL          a ping gets its pong
  ws_client.py close URL         close 1000 completes with code 1000
  ws_client.py many URL N        N concurrent clients, each its own echoes
  ws_client.py stats URL SECS    waits up to SECS for a stats push
"""
import json
import random
import sys
import threading
import time

from websockets.sync.client import connect

SIZES = [0, 125, 126, 65535, 65536, 1 << 20]
TIMEOUT = 30


def is_stats(msg):
    return isinstance(msg, str) and msg.startswith('{"type":"stats"')


def recv_echo(ws, timeout=TIMEOUT):
    """The next message that is not a stats push."""
    deadline = time.monotonic() + timeout
    while True:
        msg = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        if not is_stats(msg):
            return msg


def text_of(rng, n):
    """A str of exactly n UTF-8 bytes, with multi-byte characters."""
    parts, size = [], 0
    while size < n:
        c = rng.choice("abcXYZ019 \u00e9\u20ac") if n - size >= 3 else rng.choice("abc")
        parts.append(c)
        size += len(c.encode())
    return "".join(parts)


def open_ws(url):
    return connect(url, max_size=None, open_timeout=TIMEOUT, close_timeout=10,
                   ping_interval=None)


def sizes(url):
    rng = random.Random(6)
    ok = bad = 0
    with open_ws(url) as ws:
        for n in SIZES:
            t = text_of(rng, n)
            assert len(t.encode()) == n
            ws.send(t)
            got = recv_echo(ws)
            good = isinstance(got, str) and got == t
            print(f"text_{n}={'ok' if good else 'bad'}")
            ok, bad = ok + good, bad + (not good)
            b = rng.randbytes(n)
            ws.send(b)
            got = recv_echo(ws)
            good = isinstance(got, bytes) and got == b
            print(f"binary_{n}={'ok' if good else 'bad'}")
            ok, bad = ok + good, bad + (not good)
    print(f"ok={ok}")
    print(f"bad={bad}")


def ping(url):
    with open_ws(url) as ws:
        waiter = ws.ping(b"tapstack-ping")
        got = waiter.wait(TIMEOUT)
        print(f"pong={int(bool(got))}")
        ws.send("after ping")
        print(f"echo_after={int(recv_echo(ws) == 'after ping')}")


def close(url):
    ws = open_ws(url)
    ws.send("bye")
    recv_echo(ws)
    ws.close(code=1000, reason="done")
    print(f"close_code={ws.close_code}")
    print(f"close_reason={ws.close_reason}")


def many(url, n):
    ok = [0] * n
    errors = []
    lock = threading.Lock()

    def one(i):
        rng = random.Random(1000 + i)
        try:
            with open_ws(url) as ws:
                for k in range(3):
                    t = f"client {i} message {k} " + text_of(rng, rng.randint(0, 2000))
                    ws.send(t)
                    if recv_echo(ws, 60) != t:
                        raise RuntimeError(f"text echo {k} differs")
                    b = rng.randbytes(rng.randint(1, 20000))
                    ws.send(b)
                    if recv_echo(ws, 60) != b:
                        raise RuntimeError(f"binary echo {k} differs")
            ok[i] = 1
        except Exception as e:  # noqa: BLE001 - report every failure
            with lock:
                errors.append(f"client{i}: {e!r}")

    threading.stack_size(512 * 1024)
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    start = time.monotonic()
    for t in threads:
        t.start()
    deadline = time.monotonic() + 90
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    print(f"ok={sum(ok)}")
    print(f"failed={n - sum(ok)}")
    print(f"secs={time.monotonic() - start:.3f}")
    for e in errors[:10]:
        print(f"error: {e}")


def stats(url, secs):
    start = time.monotonic()
    with open_ws(url) as ws:
        deadline = start + secs
        while time.monotonic() < deadline:
            try:
                msg = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
            if is_stats(msg):
                obj = json.loads(msg)
                print("stats=1")
                print(f"after={time.monotonic() - start:.3f}")
                print(f"connections={obj.get('connections')}")
                print(f"has_data={int(isinstance(obj.get('data'), dict))}")
                data = obj.get('data')
                if isinstance(data, dict) and 'active_tcp_connections' in data:
                    print(f"active_tcp={data['active_tcp_connections']}")
                return
    print("stats=0")


def main():
    a = sys.argv[1:]
    mode = a[0] if a else ""
    if mode == "sizes":
        sizes(a[1])
    elif mode == "ping":
        ping(a[1])
    elif mode == "close":
        close(a[1])
    elif mode == "many":
        many(a[1], int(a[2]))
    elif mode == "stats":
        stats(a[1], float(a[2]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
