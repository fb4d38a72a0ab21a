"""Ethernet/IPv4/TCP/UDP built by hand for tests that write raw frames with
an AF_PACKET socket (inject.py, synflood.py, pktimpact.py). Standard library
only. Addresses are 4-byte strings (socket.inet_aton), MACs 6-byte ones.
"""
import struct


def mac_bytes(s):
    """'02:74:61:70:00:02' -> 6 bytes."""
    return bytes(int(x, 16) for x in s.split(":"))


def csum(data):
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ether(dst_mac, src_mac, payload, ethertype=0x0800):
    """An Ethernet II frame (IPv4 unless told otherwise)."""
    return dst_mac + src_mac + struct.pack("!H", ethertype) + payload


def ipv4(src, dst, proto, payload, ident=1, flags_frag=0x4000):
    """An IPv4 packet without options, TTL 64 (DF set unless told)."""
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident,
                      flags_frag, 64, proto, 0, src, dst)
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return hdr + payload


def l4_csum(src, dst, proto, seg):
    """A TCP/UDP checksum over the IPv4 pseudo-header and `seg`."""
    pseudo = src + dst + struct.pack("!BBH", 0, proto, len(seg))
    return csum(pseudo + seg)


def tcp(src, dst, sport, dport, seq, ack, flags, win, opts=b"", data=b""):
    """A TCP segment with a valid checksum; `opts` already padded."""
    off = (20 + len(opts)) // 4
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF,
                      ack & 0xFFFFFFFF, off << 4, flags, win, 0, 0)
    seg += opts + data
    c = l4_csum(src, dst, 6, seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def udp(src, dst, sport, dport, data):
    """A UDP datagram with a valid checksum (0 sent as 0xFFFF)."""
    seg = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    c = l4_csum(src, dst, 17, seg) or 0xFFFF
    return seg[:6] + struct.pack("!H", c) + seg[8:]
