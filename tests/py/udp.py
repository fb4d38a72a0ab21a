#!/usr/bin/env python3
"""UDP peers for the kernel tests (standard library only).

Prints key=value lines the Rust tests parse.

  udp.py flood HOST PORT COUNT MAXSIZE SEED
      pipelined echo client: COUNT datagrams of random size 1..MAXSIZE,
      each tagged (4-byte sequence number) with a payload derived from
      the sequence number; checks every reply byte for byte.
  udp.py refused HOST PORT      expects ConnectionRefusedError on recv
  udp.py request HOST PORT N    sends N datagrams "ping-<i>", prints each
                                reply as reply<i>_hex=..., replies=N
  udp.py silent HOST PORT N     sends N datagrams, expects no reply (1 s)
  udp.py server PORT SECS       echo server on 0.0.0.0:PORT, replies
                                b"reply:"+data, exits after the first
                                datagram or SECS
"""
import random
import socket
import struct
import sys
import time


def payload(seq, maxsize, seed):
    rng = random.Random(seed * 1_000_003 + seq)
    size = rng.randint(1, maxsize)
    tag = struct.pack("!I", seq)
    if size < len(tag):
        return rng.randbytes(size)
    return tag + rng.randbytes(size - len(tag))


def flood(host, port, count, maxsize, seed):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.connect((host, port))
    window, timeout, give_up = 16, 0.1, 0.5
    outstanding = {}  # seq -> (bytes, time sent)
    tiny = {}  # bytes -> seq, for datagrams too short to carry the tag
    nxt = ok = bad = dup = late = refused = 0
    done, given_up = set(), set()
    start = time.monotonic()
    deadline = start + 60
    while (nxt < count or outstanding) and time.monotonic() < deadline:
        now = time.monotonic()
        for q in [q for q, (_, t) in outstanding.items() if now - t > give_up]:
            d, _ = outstanding.pop(q)
            tiny.pop(d, None)
            given_up.add(q)
        while nxt < count and len(outstanding) < window:
            data = payload(nxt, maxsize, seed)
            outstanding[nxt] = (data, time.monotonic())
            if len(data) < 4:
                tiny.setdefault(data, nxt)
            s.send(data)
            nxt += 1
        s.settimeout(timeout)
        try:
            reply = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionRefusedError:
            refused += 1
            continue
        if len(reply) < 4:
            q = tiny.get(reply)
        else:
            q = struct.unpack("!I", reply[:4])[0]
        if q is None or q not in outstanding:
            if q in done:
                dup += 1
            elif q in given_up:
                late += 1
            else:
                bad += 1  # matches nothing that was sent
            continue
        expected, _ = outstanding.pop(q)
        if len(expected) < 4:
            tiny.pop(expected, None)
        if reply == expected:
            ok += 1
            done.add(q)
        else:
            bad += 1
    lost = len(given_up) + len(outstanding)
    print("sent=%d" % nxt)
    print("ok=%d" % ok)
    print("bad=%d" % bad)
    print("dup=%d" % dup)
    print("lost=%d" % lost)
    print("late=%d" % late)
    print("refused=%d" % refused)
    print("seconds=%.2f" % (time.monotonic() - start))


def refused(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    s.settimeout(3)
    s.send(b"anyone there?")
    try:
        data = s.recv(2048)
        print("result=reply %r" % data)
    except ConnectionRefusedError:
        print("result=refused")
    except socket.timeout:
        print("result=timeout")


def request(host, port, n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    s.settimeout(2)
    got = 0
    for i in range(n):
        s.send(b"ping-%d" % i)
        try:
            data = s.recv(65536)
        except (socket.timeout, ConnectionRefusedError) as e:
            print("error%d=%s" % (i, type(e).__name__))
            continue
        print("reply%d_hex=%s" % (i, data.hex()))
        got += 1
    print("replies=%d" % got)


def silent(host, port, n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    for i in range(n):
        s.send(b"x" * (1 + 100 * i))
    s.settimeout(1)
    try:
        data = s.recv(65536)
        print("result=reply %d bytes" % len(data))
    except ConnectionRefusedError:
        print("result=refused")
    except socket.timeout:
        print("result=silent")


def server(port, secs):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    s.settimeout(secs)
    print("ready=1", flush=True)
    try:
        data, peer = s.recvfrom(65536)
    except socket.timeout:
        print("received_hex=")
        return
    s.sendto(b"reply:" + data, peer)
    print("peer=%s:%d" % peer)
    print("received_hex=%s" % data.hex(), flush=True)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "flood":
        flood(args[0], int(args[1]), int(args[2]), int(args[3]), int(args[4]))
    elif cmd == "refused":
        refused(args[0], int(args[1]))
    elif cmd == "request":
        request(args[0], int(args[1]), int(args[2]))
    elif cmd == "silent":
        silent(args[0], int(args[1]), int(args[2]))
    elif cmd == "server":
        server(int(args[0]), float(args[1]))
    else:
        sys.exit("unknown command %r" % cmd)


if __name__ == "__main__":
    main()
