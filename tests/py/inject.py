#!/usr/bin/env python3
"""Feeds garbage to the stack: random bytes, truncated and bit-flipped
copies of valid ARP/IPv4/ICMP/UDP/TCP frames addressed to the stack's MAC.

Sent from the kernel side of the TAP with an AF_PACKET raw socket, so the
frames reach the stack exactly as written. Standard library only.

usage: inject.py IFACE STACK_MAC STACK_IP HOST_IP COUNT SEED
prints key=value lines: sent, send_errors
"""
import random
import socket
import struct
import sys
import time

import rawframe
from rawframe import csum, ipv4, mac_bytes, udp


def tcp(src, dst, sport, dport, flags, data=b"", opts=b""):
    return rawframe.tcp(src, dst, sport, dport, 1000, 0, flags, 65535, opts, data)


def icmp_echo(ident, seq, data):
    msg = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + data
    return msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]


def templates(dst_mac, src_mac, sip, dip):
    eth_ip = dst_mac + src_mac + b"\x08\x00"
    arp = (dst_mac + src_mac + b"\x08\x06" +
           struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + src_mac + sip +
           b"\0" * 6 + dip)
    bcast_arp = b"\xff" * 6 + arp[6:]
    ping = eth_ip + ipv4(sip, dip, 1, icmp_echo(0x1234, 1, bytes(range(56))))
    u7 = eth_ip + ipv4(sip, dip, 17, udp(sip, dip, 5555, 7, b"hello" * 20))
    u_closed = eth_ip + ipv4(sip, dip, 17, udp(sip, dip, 5555, 4444, b"x" * 30))
    syn = eth_ip + ipv4(sip, dip, 6, tcp(sip, dip, 40000, 7, 0x02,
                                          opts=b"\x02\x04\x05\xb4\x01\x03\x03\x07"))
    rst = eth_ip + ipv4(sip, dip, 6, tcp(sip, dip, 40000, 7, 0x14))
    # first fragment of a 3000-byte UDP datagram (MF set, offset 0)
    big = udp(sip, dip, 5555, 7, bytes(3000))
    frag0 = eth_ip + ipv4(sip, dip, 17, big[:1480], ident=77, flags_frag=0x2000)
    frag1 = eth_ip + ipv4(sip, dip, 17, big[1480:2960], ident=77,
                          flags_frag=0x2000 | (1480 // 8))
    opts_ip = bytearray(ping)
    return [arp, bcast_arp, ping, u7, u_closed, syn, rst, frag0, frag1,
            bytes(opts_ip)]


def main():
    iface, stack_mac, stack_ip, host_ip, count, seed = sys.argv[1:7]
    count, rng = int(count), random.Random(int(seed))
    with open("/sys/class/net/%s/address" % iface) as f:
        host_mac = mac_bytes(f.read().strip())
    dst_mac = mac_bytes(stack_mac)
    tpl = templates(dst_mac, host_mac, socket.inet_aton(host_ip),
                    socket.inet_aton(stack_ip))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    sent = errors = 0
    for i in range(count):
        kind = i % 4
        base = bytearray(rng.choice(tpl))
        if kind == 0:  # random bytes, sometimes behind a valid Ethernet header
            n = rng.randint(1, 1514)
            body = bytearray(rng.getrandbits(8) for _ in range(n))
            if rng.random() < 0.5:
                body = bytearray(base[:14]) + body
            frame = body
        elif kind == 1:  # truncated valid frame
            frame = base[:rng.randint(1, len(base) - 1)]
        elif kind == 2:  # bit-flipped valid frame (flips after the MACs)
            for _ in range(rng.randint(1, 4)):
                bit = rng.randrange(12 * 8, len(base) * 8)
                base[bit // 8] ^= 1 << (bit % 8)
            frame = base
        else:  # valid header fields set to random extremes
            pos = rng.randrange(14, min(len(base), 60))
            base[pos] = rng.choice([0, 0xFF, rng.getrandbits(8)])
            if rng.random() < 0.3:
                frame = base + bytearray(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
            else:
                frame = base
        try:
            s.send(bytes(frame))
            sent += 1
        except OSError:
            errors += 1
        if i % 200 == 199:
            time.sleep(0.002)  # let the TAP queue drain (it holds 500-1000)
    # Garbage that is still a well-formed ARP packet (a flipped sender MAC)
    # rightly updates the stack's ARP cache (RFC 826). End with the truth,
    # a valid ARP request from the kernel side, as a real host would send.
    time.sleep(0.05)
    s.send(bytes(tpl[0]))
    print("sent=%d" % sent)
    print("send_errors=%d" % errors)


if __name__ == "__main__":
    main()
