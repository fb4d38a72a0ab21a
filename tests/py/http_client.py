#!/usr/bin/env python3
"""HTTP and WebSocket peers for the web server's kernel tests. Prints
key=value lines the Rust tests parse; every wait has a timeout.

  http_client.py keepalive HOST PORT N   N requests on one connection
  http_client.py pipeline HOST PORT      3 requests in one write, answers in order
  http_client.py absolute HOST PORT      a request target in absolute form
  http_client.py duphost HOST PORT       two Host headers
  http_client.py overlimit URL N         N WebSocket clients at once, held open
  http_client.py goaway URL N            N WebSocket clients wait for the server's close
  http_client.py slowloris HOST PORT N SECS [reconnect]
                                         N slow clients (one header byte every
                                         2 s) while curl-like GETs are timed
"""
import asyncio
import socket
import sys
import threading
import time
import urllib.request

TIMEOUT = 20


def read_response(f):
    """One response from a buffered socket file: (status, headers, body)."""
    line = f.readline()
    if not line:
        raise EOFError("connection closed before a response")
    status = int(line.split()[1])
    headers = {}
    while True:
        h = f.readline()
        if h in (b"\r\n", b""):
            break
        name, _, value = h.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


def read_body(f, headers, head_only=False):
    n = 0 if head_only else int(headers.get("content-length", "0"))
    return f.read(n)


def conn(host, port):
    s = socket.create_connection((host, int(port)), timeout=TIMEOUT)
    return s, s.makefile("rb")


def keepalive(host, port, n):
    s, f = conn(host, port)
    ok = 0
    for i in range(n):
        s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        status, headers = read_response(f)
        body = read_body(f, headers)
        good = status == 200 and b"<html" in body and headers.get("connection") == "keep-alive"
        ok += good
    # The server keeps the connection: one more request still works.
    s.sendall(f"GET /missing HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    status, headers = read_response(f)
    read_body(f, headers)
    print(f"ok={ok}")
    print(f"last_status={status}")
    print(f"last_connection={headers.get('connection')}")
    print(f"closed_after={int(f.read(1) == b'')}")


def pipeline(host, port):
    s, f = conn(host, port)
    reqs = (
        f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n"
        f"GET /nope HTTP/1.1\r\nHost: {host}\r\n\r\n"
        f"HEAD / HTTP/1.1\r\nHost: {host}\r\n\r\n"
        f"DELETE / HTTP/1.1\r\nHost: {host}\r\n\r\n"
    )
    s.sendall(reqs.encode())
    statuses = []
    for head_only in (False, False, True, False):
        status, headers = read_response(f)
        read_body(f, headers, head_only)
        statuses.append(str(status))
    print(f"statuses={','.join(statuses)}")


def one_request(host, port, raw):
    s, f = conn(host, port)
    s.sendall(raw.encode())
    status, headers = read_response(f)
    body = read_body(f, headers)
    print(f"status={status}")
    print(f"html={int(b'<html' in body)}")


def absolute(host, port):
    one_request(host, port, f"GET http://{host}:{port}/ HTTP/1.1\r\nHost: elsewhere\r\n\r\n")


def duphost(host, port):
    one_request(host, port, f"GET / HTTP/1.1\r\nHost: {host}\r\nHost: {host}\r\n\r\n")


async def ws_attempt(url, results, release):
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus
    try:
        async with connect(url, open_timeout=TIMEOUT, ping_interval=None, close_timeout=5) as ws:
            await ws.send("hi")
            msg = await asyncio.wait_for(ws.recv(), TIMEOUT)
            results["served" if msg == "hi" else "bad_echo"] += 1
            await release.wait()
    except InvalidStatus as e:
        key = "refused_503" if e.response.status_code == 503 else f"status_{e.response.status_code}"
        results[key] = results.get(key, 0) + 1
    except Exception as e:  # noqa: BLE001 - every other outcome is "no answer"
        results["no_answer"] += 1
        results.setdefault("error", repr(e)[:200])


async def overlimit_main(url, n):
    results = {"served": 0, "refused_503": 0, "no_answer": 0, "bad_echo": 0}
    release = asyncio.Event()
    tasks = [asyncio.create_task(ws_attempt(url, results, release)) for _ in range(n)]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = sum(v for k, v in results.items() if k != "error" and not isinstance(v, str))
        if done >= n:
            break
        await asyncio.sleep(0.1)
    release.set()
    await asyncio.wait(tasks, timeout=30)
    for k, v in sorted(results.items()):
        print(f"{k}={v}")


async def goaway_main(url, n):
    from websockets.asyncio.client import connect
    clients = []
    for _ in range(n):
        ws = await connect(url, open_timeout=TIMEOUT, ping_interval=None, close_timeout=5)
        clients.append(ws)
    print("ready", flush=True)
    codes = {}

    async def wait_close(ws):
        try:
            async for _ in ws:
                pass
        except Exception:  # noqa: BLE001 - the close code is what counts
            pass
        code = ws.close_code
        codes[code] = codes.get(code, 0) + 1

    await asyncio.wait([asyncio.create_task(wait_close(ws)) for ws in clients], timeout=60)
    print(f"closed_1001={codes.get(1001, 0)}")
    print(f"codes={codes}")


def slow_client(host, port, stop, reconnect, counts):
    """Sends a request head one byte every 2 s, never finishing it."""
    head = f"GET / HTTP/1.1\r\nHost: {host}\r\nX-Slow: " + "a" * 1000
    while not stop.is_set():
        try:
            s = socket.create_connection((host, int(port)), timeout=5)
        except OSError:
            counts["connect_failed"] += 1
            time.sleep(0.5)
            continue
        counts["connected"] += 1
        try:
            for b in head.encode():
                if stop.wait(2.0):
                    break
                s.send(bytes([b]))
        except OSError:
            pass
        s.close()
        if not reconnect:
            # Not reconnecting: hold the slot until dropped, then idle.
            stop.wait()
            return


def slowloris(host, port, n, secs, reconnect):
    threading.stack_size(256 * 1024)
    stop = threading.Event()
    counts = {"connected": 0, "connect_failed": 0}
    slow = [threading.Thread(target=slow_client, args=(host, port, stop, reconnect, counts),
                             daemon=True) for _ in range(n)]
    for t in slow:
        t.start()
    # Let the slow clients take their slots first.
    t0 = time.monotonic()
    while counts["connected"] < n and time.monotonic() - t0 < 30:
        time.sleep(0.1)
    print(f"slow_connected={counts['connected']}")
    ok = slow_ok = fail = 0
    worst = 0.0
    end = time.monotonic() + secs
    while time.monotonic() < end:
        start = time.monotonic()
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/", timeout=5) as r:
                body = r.read()
            took = time.monotonic() - start
            worst = max(worst, took)
            if r.status == 200 and b"<html" in body:
                ok += 1
                slow_ok += took > 1.0
            else:
                fail += 1
        except Exception:  # noqa: BLE001 - a failure is a failure
            fail += 1
        time.sleep(0.05)
    stop.set()
    total = ok + fail
    print(f"requests={total}")
    print(f"within_1s={ok - slow_ok}")
    print(f"failed={fail}")
    print(f"worst_ms={int(worst * 1000)}")


def main():
    a = sys.argv[1:]
    mode = a[0] if a else ""
    if mode == "keepalive":
        keepalive(a[1], a[2], int(a[3]))
    elif mode == "pipeline":
        pipeline(a[1], a[2])
    elif mode == "absolute":
        absolute(a[1], a[2])
    elif mode == "duphost":
        duphost(a[1], a[2])
    elif mode == "overlimit":
        asyncio.run(overlimit_main(a[1], int(a[2])))
    elif mode == "goaway":
        asyncio.run(goaway_main(a[1], int(a[2])))
    elif mode == "slowloris":
        slowloris(a[1], a[2], int(a[3]), float(a[4]), len(a) > 5 and a[5] == "reconnect")
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
