#!/usr/bin/env python3
"""Peers for tests/kernel_obs.rs (standard library only). Prints key=value
lines; every socket has a timeout and every mode ends by itself.

  obs.py hold HOST PORT SECS
      connects, prints port=LOCALPORT, holds the connection SECS
  obs.py bulkhold HOST PORT BYTES SECS
      echoes BYTES of seeded data through HOST:PORT, compares what came
      back byte for byte (sha256 both ways), prints ok=1 and port=LOCALPORT,
      then holds the connection SECS
  obs.py many HOST PORT N SECS
      starts N non-blocking connects, prints started=N, holds them SECS
  obs.py listen PORT BACKLOG SECS
      (for `tapstack run`) listens with BACKLOG and never accepts; prints
      pid=PID, exits after SECS
"""
import hashlib
import os
import random
import socket
import sys
import threading
import time


def hold(host, port, secs):
    s = socket.create_connection((host, int(port)), timeout=10)
    print(f"port={s.getsockname()[1]}", flush=True)
    time.sleep(float(secs))


def bulkhold(host, port, nbytes, secs):
    nbytes = int(nbytes)
    data = random.Random(7).randbytes(nbytes)
    s = socket.create_connection((host, int(port)), timeout=30)
    got = hashlib.sha256()
    count = [0]

    def reader():
        while count[0] < nbytes:
            b = s.recv(65536)
            if not b:
                break
            got.update(b)
            count[0] += len(b)

    t = threading.Thread(target=reader)
    t.start()
    s.sendall(data)
    t.join(60)
    sent = hashlib.sha256(data).hexdigest()
    ok = count[0] == nbytes and got.hexdigest() == sent
    print(f"received={count[0]}\nsent_sha={sent}\ngot_sha={got.hexdigest()}", flush=True)
    print(f"ok={int(ok)}\nport={s.getsockname()[1]}", flush=True)
    time.sleep(float(secs))


def many(host, port, n, secs):
    socks = []
    for _ in range(int(n)):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((host, int(port)))
        socks.append(s)
    print(f"started={len(socks)}", flush=True)
    time.sleep(float(secs))


def listen(port, backlog, secs):
    s = socket.socket()
    s.bind(("0.0.0.0", int(port)))
    s.listen(int(backlog))
    print(f"pid={os.getpid()}", flush=True)
    time.sleep(float(secs))


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    {"hold": hold, "bulkhold": bulkhold, "many": many, "listen": listen}[mode](*args)


if __name__ == "__main__":
    main()
