#!/usr/bin/env python3
"""A SYN flood with a legitimate client alongside (standard library only).

From the kernel side of the TAP, an AF_PACKET raw socket sends COUNT SYNs
(Linux's options: MSS, SACK-permitted, timestamps, window scale) from
random spoofed sources in 198.18.0.0/15 (RFC 2544 benchmark space, never
routed) to the stack as fast as it can. Meanwhile a thread connects to the
stack's echo port over and over, sends 64 random bytes and checks the echo
byte for byte. After the flood it keeps connecting for AFTER seconds.

usage: synflood.py IFACE STACK_MAC STACK_IP DPORT COUNT SEED AFTER
prints key=value lines: sent, send_errors, flood_secs, during_ok,
during_fail, after_ok, after_fail, after_max_secs
"""
import multiprocessing
import os
import random
import socket
import struct
import sys
import time

import rawframe
from rawframe import ether, ipv4, mac_bytes

# Each legitimate attempt (connect + echo) must finish within this: less
# than the kernel's 1 s SYN retransmission timeout, so a SYN that the
# stack dropped (or answered only after its queue made room) is a failure.
DURING_TIMEOUT = 0.9
AFTER_TIMEOUT = 1.0
LEGIT_CLIENTS = 8


def syn_frame(dst_mac, src_mac, sip, dip, sport, dport, seq, tsval):
    opts = (b"\x02\x04\x05\xb4" + b"\x04\x02" + b"\x08\x0a" +
            struct.pack("!II", tsval, 0) + b"\x01\x03\x03\x07")
    seg = rawframe.tcp(sip, dip, sport, dport, seq, 0, 0x02, 64240, opts)
    return ether(dst_mac, src_mac, ipv4(sip, dip, 6, seg, ident=seq & 0xFFFF))


def attempt(host, port, timeout):
    """One connect + 64-byte echo; returns seconds taken or None."""
    t0 = time.monotonic()
    data = os.urandom(64)
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(max(0.01, timeout - (time.monotonic() - t0)))
            s.sendall(data)
            got = b""
            while len(got) < len(data):
                chunk = s.recv(len(data) - len(got))
                if not chunk:
                    return None
                got += chunk
            if got != data:
                return None
    except OSError:
        return None
    took = time.monotonic() - t0
    return took if took <= timeout else None


def main():
    iface, stack_mac, stack_ip, dport, count, seed, after = sys.argv[1:8]
    dport, count, after = int(dport), int(count), float(after)
    rng = random.Random(int(seed))
    with open("/sys/class/net/%s/address" % iface) as f:
        src_mac = mac_bytes(f.read().strip())
    dst_mac, dip = mac_bytes(stack_mac), socket.inet_aton(stack_ip)
    frames = []
    for _ in range(count):
        sip = bytes([198, 18 + rng.randrange(2), rng.randrange(256), rng.randrange(1, 255)])
        frames.append(syn_frame(dst_mac, src_mac, sip, dip, rng.randrange(1024, 65536),
                                dport, rng.getrandbits(32), rng.getrandbits(32)))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))

    # The legitimate client is its own process, so the flood loop (which
    # holds the GIL) does not starve it.
    ctx = multiprocessing.get_context("fork")
    flooding = ctx.Event()
    ok, fail, worst_during = ctx.Value("l", 0), ctx.Value("l", 0), ctx.Value("d", 0.0)

    def legit():
        # Attempts start with the flood (the process is forked before it,
        # so it is ready): those made before it would inflate the rate.
        flooding.wait(10)
        while flooding.is_set():
            took = attempt(stack_ip, dport, DURING_TIMEOUT)
            with ok.get_lock():
                if took is None:
                    fail.value += 1
                else:
                    ok.value += 1
                    worst_during.value = max(worst_during.value, took)

    # Several clients at once: each attempt waits behind the queued flood,
    # so one client alone makes only a few during it.
    clients = [ctx.Process(target=legit) for _ in range(LEGIT_CLIENTS)]
    for c in clients:
        c.start()
    time.sleep(0.2)
    sent = errors = 0
    flooding.set()
    t0 = time.monotonic()
    for fr in frames:
        try:
            s.send(fr)
            sent += 1
        except OSError:
            errors += 1
    flood_secs = time.monotonic() - t0
    # Attempts already under way when the flood ends count as "during".
    flooding.clear()
    for c in clients:
        c.join(DURING_TIMEOUT + 1)
        if c.is_alive():
            c.kill()
    after_ok = after_fail = 0
    worst = 0.0
    end = time.monotonic() + after
    while time.monotonic() < end:
        took = attempt(stack_ip, dport, AFTER_TIMEOUT)
        if took is None:
            after_fail += 1
        else:
            after_ok += 1
            worst = max(worst, took)
    print("sent=%d" % sent)
    print("send_errors=%d" % errors)
    print("flood_secs=%.3f" % flood_secs)
    print("during_ok=%d" % ok.value)
    print("during_fail=%d" % fail.value)
    print("during_max_secs=%.3f" % worst_during.value)
    print("after_ok=%d" % after_ok)
    print("after_fail=%d" % after_fail)
    print("after_max_secs=%.3f" % worst)


if __name__ == "__main__":
    main()
