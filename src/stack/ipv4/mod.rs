//! IPv4 input (RFC 791, RFC 1122 section 3.2.1): header validation and the
//! decision whether a packet is ours. Reassembly and fragmentation live in
//! their own modules.

pub mod fragment;
pub mod reassembly;

use std::net::Ipv4Addr;

use smoltcp::wire::{IpProtocol, Ipv4Packet};

use super::counters::Counters;
use reassembly::FragKey;

/// A validated IPv4 packet addressed to us.
pub struct Ipv4Input<'a> {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination: ours or a broadcast one.
    pub dst: Ipv4Addr,
    /// Transport protocol.
    pub protocol: IpProtocol,
    /// The IP header, options included.
    pub header: &'a [u8],
    /// Payload without Ethernet padding (bounded by the total length).
    pub payload: &'a [u8],
    /// Set when this packet is a fragment: (key, byte offset, more fragments).
    pub fragment: Option<(FragKey, usize, bool)>,
}

/// Validates version, IHL, total length against the bytes present,
/// header checksum, and addresses; every rejection is counted.
pub fn parse<'a>(
    bytes: &'a [u8],
    our_addr: Ipv4Addr,
    is_broadcast: impl Fn(Ipv4Addr) -> bool,
    counters: &mut Counters,
) -> Option<Ipv4Input<'a>> {
    if bytes.len() < 20 {
        counters.inc("ipv4.truncated");
        return None;
    }
    if bytes[0] >> 4 != 4 {
        counters.inc("ipv4.bad_version");
        return None;
    }
    let Ok(packet) = Ipv4Packet::new_checked(bytes) else {
        // IHL < 5, or total length shorter than the header or longer than
        // the bytes we got.
        counters.inc("ipv4.bad_length");
        return None;
    };
    let header_len = packet.header_len() as usize;
    if !packet.verify_checksum() {
        counters.inc("ipv4.bad_checksum");
        return None;
    }
    let (src, dst) = (packet.src_addr(), packet.dst_addr());
    if src.is_broadcast() || src.is_multicast() || is_broadcast(src) {
        counters.inc("ipv4.martian_source");
        return None;
    }
    if dst != our_addr && !is_broadcast(dst) {
        let reason = if dst.is_multicast() {
            "ipv4.multicast"
        } else {
            "ipv4.not_for_us"
        };
        counters.inc(reason);
        return None;
    }
    let total = packet.total_len() as usize;
    let protocol = packet.next_header();
    let offset = packet.frag_offset() as usize;
    let more = packet.more_frags();
    let fragment = (more || offset != 0).then(|| {
        let key = FragKey {
            src,
            dst,
            id: packet.ident(),
            protocol: protocol.into(),
        };
        (key, offset, more)
    });
    Some(Ipv4Input {
        src,
        dst,
        protocol,
        header: &bytes[..header_len],
        payload: &bytes[header_len..total],
        fragment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// An ICMP echo request from 10.0.0.1 to 10.0.0.2 captured from
    /// `ping -c1 -s 4` (IP header + 12 bytes of ICMP).
    const ECHO: [u8; 32] = [
        0x45, 0x00, 0x00, 0x20, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00, 10, 0, 0, 1, 10, 0,
        0, 2, 0x08, 0x00, 0xf7, 0xfd, 0x00, 0x01, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef,
    ];

    fn with_checksum(mut b: Vec<u8>) -> Vec<u8> {
        Ipv4Packet::new_unchecked(&mut b[..]).fill_checksum();
        b
    }

    fn run(b: &[u8]) -> (Option<usize>, Counters) {
        let mut c = Counters::new();
        let r = parse(b, US, |ip| ip == Ipv4Addr::new(10, 0, 0, 255), &mut c);
        (r.map(|p| p.payload.len()), c)
    }

    #[test]
    fn accepts_valid_and_strips_padding() {
        let mut b = with_checksum(ECHO.to_vec());
        b.extend_from_slice(&[0; 14]); // Ethernet minimum-frame padding
        assert_eq!(run(&b).0, Some(12));
    }

    #[test]
    fn rejects_bad_checksum_version_length_and_address() {
        let good = with_checksum(ECHO.to_vec());
        let mut bad = good.clone();
        bad[10] ^= 1;
        assert_eq!(run(&bad).1.get("ipv4.bad_checksum"), 1);
        let mut v6 = good.clone();
        v6[0] = 0x65;
        assert_eq!(run(&v6).1.get("ipv4.bad_version"), 1);
        let mut ihl = good.clone();
        ihl[0] = 0x44;
        assert_eq!(run(&ihl).1.get("ipv4.bad_length"), 1);
        assert_eq!(run(&good[..25]).1.get("ipv4.bad_length"), 1);
        assert_eq!(run(&good[..10]).1.get("ipv4.truncated"), 1);
        let mut other = good.clone();
        other[19] = 3;
        assert_eq!(run(&with_checksum(other)).1.get("ipv4.not_for_us"), 1);
        let mut bcast_src = good.clone();
        bcast_src[15] = 255;
        assert_eq!(
            run(&with_checksum(bcast_src)).1.get("ipv4.martian_source"),
            1
        );
    }

    #[test]
    fn fragments_are_flagged() {
        let mut b = ECHO.to_vec();
        b[6] = 0x20; // MF, offset 0
        let b = with_checksum(b);
        let mut c = Counters::new();
        let p = parse(&b, US, |_| false, &mut c).unwrap();
        let (key, off, more) = p.fragment.unwrap();
        assert_eq!((key.id, off, more), (0x1234, 0, true));
    }
}
