//! The sans-I/O core driven directly on a virtual clock. The "kernel peer"
//! is this test code: it builds frames by hand with `smoltcp::wire` and
//! checks what the stack emits, byte for byte where the bytes are fixed.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol, Ipv4Cidr, Ipv4Packet, UdpPacket,
};
use tapstack::stack::ip::RxChecksum;
use tapstack::stack::rng::Rng;
use tapstack::stack::time::earliest;
use tapstack::stack::udp::UdpHandle;
use tapstack::stack::{Instant, Stack, StackConfig};

const US: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const US_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x99]);
const OUTBOX_LIMIT: usize = 256;

fn config(ip: Ipv4Addr, mac: EthernetAddress) -> StackConfig {
    let mut c = StackConfig::new(mac, Ipv4Cidr::new(ip, 24));
    c.iface.outbox_limit = OUTBOX_LIMIT;
    c.seed = Some(7);
    c
}

/// Our stack (10.0.0.2), with its start-up announcement already drained.
fn stack() -> Stack {
    let mut s = Stack::new(config(US, US_MAC));
    let start = drain(&mut s);
    assert_eq!(start.len(), 1, "only the gratuitous ARP at start");
    s
}

fn drain(s: &mut Stack) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(f) = s.poll_transmit() {
        out.push(f.to_vec());
        s.recycle(f);
    }
    out
}

fn ether(dst: EthernetAddress, src: EthernetAddress, ty: EthernetProtocol, body: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 14 + body.len()];
    let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
    f.set_dst_addr(dst);
    f.set_src_addr(src);
    f.set_ethertype(ty);
    f.payload_mut().copy_from_slice(body);
    buf
}

fn arp(
    op: ArpOperation,
    sha: EthernetAddress,
    spa: Ipv4Addr,
    tha: EthernetAddress,
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation: op,
        source_hardware_addr: sha,
        source_protocol_addr: spa,
        target_hardware_addr: tha,
        target_protocol_addr: tpa,
    };
    let mut body = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ArpPacket::new_unchecked(&mut body[..]));
    let dst = if op == ArpOperation::Request {
        EthernetAddress::BROADCAST
    } else {
        tha
    };
    ether(dst, sha, EthernetProtocol::Arp, &body)
}

/// The peer asks who has our address: the stack answers and learns the
/// peer, so later replies need no resolution.
fn introduce_peer(s: &mut Stack, now: Instant) {
    let req = arp(
        ArpOperation::Request,
        PEER_MAC,
        PEER,
        EthernetAddress([0; 6]),
        US,
    );
    s.handle_frame(now, &req, RxChecksum::Verify);
    let out = drain(s);
    assert_eq!(out.len(), 1);
}

/// One IPv4 packet (or fragment) from `src` to `dst` in an Ethernet frame
/// from the peer's MAC to ours.
struct Ip<'a> {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    ident: u16,
    offset: usize,
    more: bool,
    payload: &'a [u8],
}

impl Ip<'_> {
    fn bytes(&self) -> Vec<u8> {
        let mut buf = vec![0u8; 20 + self.payload.len()];
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        p.set_version(4);
        p.set_header_len(20);
        p.set_total_len((20 + self.payload.len()) as u16);
        p.set_ident(self.ident);
        p.clear_flags();
        p.set_more_frags(self.more);
        p.set_frag_offset(self.offset as u16);
        p.set_hop_limit(64);
        p.set_next_header(self.protocol);
        p.set_src_addr(self.src);
        p.set_dst_addr(self.dst);
        p.payload_mut().copy_from_slice(self.payload);
        p.fill_checksum();
        buf
    }

    fn frame(&self) -> Vec<u8> {
        ether(US_MAC, PEER_MAC, EthernetProtocol::Ipv4, &self.bytes())
    }
}

fn ip(protocol: IpProtocol, ident: u16, payload: &[u8]) -> Ip<'_> {
    Ip {
        src: PEER,
        dst: US,
        protocol,
        ident,
        offset: 0,
        more: false,
        payload,
    }
}

fn echo_request(ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let repr = Icmpv4Repr::EchoRequest {
        ident,
        seq_no: seq,
        data,
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut Icmpv4Packet::new_unchecked(&mut buf[..]),
        &ChecksumCapabilities::default(),
    );
    buf
}

/// A parsed IPv4 frame the stack sent.
#[derive(Debug)]
struct Sent {
    eth_dst: EthernetAddress,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    ident: u16,
    offset: usize,
    more: bool,
    header: Vec<u8>,
    payload: Vec<u8>,
}

fn parse_ip(frame: &[u8]) -> Sent {
    let eth = EthernetFrame::new_checked(frame).expect("ethernet");
    assert_eq!(
        eth.ethertype(),
        EthernetProtocol::Ipv4,
        "not IPv4: {frame:02x?}"
    );
    let p = Ipv4Packet::new_checked(eth.payload()).expect("ipv4");
    assert!(p.verify_checksum(), "bad IP checksum");
    let hl = p.header_len() as usize;
    Sent {
        eth_dst: eth.dst_addr(),
        src: p.src_addr(),
        dst: p.dst_addr(),
        protocol: p.next_header(),
        ident: p.ident(),
        offset: p.frag_offset() as usize,
        more: p.more_frags(),
        header: eth.payload()[..hl].to_vec(),
        payload: p.payload().to_vec(),
    }
}

fn is_arp_request_for(frame: &[u8], target: Ipv4Addr) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    if eth.ethertype() != EthernetProtocol::Arp {
        return false;
    }
    matches!(
        ArpPacket::new_checked(eth.payload()).and_then(|p| ArpRepr::parse(&p)),
        Ok(ArpRepr::EthernetIpv4 { operation: ArpOperation::Request, target_protocol_addr, .. })
            if target_protocol_addr == target
    ) && eth.dst_addr() == EthernetAddress::BROADCAST
}

/// Reassembles fragments the stack sent (all of one datagram).
fn reassemble(frags: &[Sent]) -> Vec<u8> {
    let mut by_offset = BTreeMap::new();
    for f in frags {
        assert_eq!(f.ident, frags[0].ident);
        by_offset.insert(f.offset, f);
    }
    let mut out = Vec::new();
    let last = by_offset.len() - 1;
    for (i, (off, f)) in by_offset.iter().enumerate() {
        assert_eq!(*off, out.len(), "hole or overlap at {off}");
        assert_eq!(f.more, i != last);
        out.extend_from_slice(&f.payload);
    }
    out
}

fn send_udp(s: &mut Stack, now: Instant, h: UdpHandle, data: &[u8], dst: SocketAddrV4) {
    s.udp
        .send_to(now, h, data, Some(dst), &mut s.iface, |ip| {
            ip.is_broadcast()
        })
        .expect("send_to");
}

#[test]
fn gratuitous_arp_is_emitted_at_start() {
    let mut s = Stack::new(config(US, US_MAC));
    let out = drain(&mut s);
    #[rustfmt::skip]
    let expected: Vec<u8> = vec![
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // broadcast
        0x02, 0, 0, 0, 0, 0x02,             // our MAC
        0x08, 0x06,                         // ARP
        0x00, 0x01, 0x08, 0x00, 6, 4,       // Ethernet/IPv4
        0x00, 0x01,                         // request
        0x02, 0, 0, 0, 0, 0x02, 10, 0, 0, 2, // sender = us
        0, 0, 0, 0, 0, 0, 10, 0, 0, 2,       // target IP = us (RFC 5227)
    ];
    assert_eq!(out, vec![expected]);
}

#[test]
fn arp_request_for_our_address_gets_exact_reply() {
    let mut s = stack();
    let req = arp(
        ArpOperation::Request,
        PEER_MAC,
        PEER,
        EthernetAddress([0; 6]),
        US,
    );
    s.handle_frame(Instant::ZERO, &req, RxChecksum::Verify);
    let out = drain(&mut s);
    #[rustfmt::skip]
    let expected: Vec<u8> = vec![
        0x02, 0, 0, 0, 0, 0x99,             // to the asker
        0x02, 0, 0, 0, 0, 0x02,             // from us
        0x08, 0x06,
        0x00, 0x01, 0x08, 0x00, 6, 4,
        0x00, 0x02,                         // reply
        0x02, 0, 0, 0, 0, 0x02, 10, 0, 0, 2, // sender = us
        0x02, 0, 0, 0, 0, 0x99, 10, 0, 0, 1, // target = the asker
    ];
    assert_eq!(out, vec![expected]);
    // A request for another address is not answered.
    let other = arp(
        ArpOperation::Request,
        PEER_MAC,
        PEER,
        EthernetAddress([0; 6]),
        Ipv4Addr::new(10, 0, 0, 3),
    );
    s.handle_frame(Instant::ZERO, &other, RxChecksum::Verify);
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.counters().get("arp.request_answered"), 1);
}

#[test]
fn unresolved_neighbour_gets_three_requests_a_second_apart_then_drop() {
    let mut s = stack();
    let h = s
        .udp
        .bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5000))
        .unwrap();
    let dst = SocketAddrV4::new(PEER, 9);
    send_udp(&mut s, Instant::ZERO, h, b"one", dst);
    let out = drain(&mut s);
    assert_eq!(out.len(), 1, "exactly one ARP request, no datagram");
    assert!(is_arp_request_for(&out[0], PEER));
    // A second datagram while resolving: queued, no extra request.
    send_udp(&mut s, Instant::from_millis(500), h, b"two", dst);
    assert!(drain(&mut s).is_empty());

    // Dispatch far more often than the retry interval.
    let mut requests = vec![Instant::ZERO];
    let mut now = Instant::ZERO;
    while now < Instant::from_secs(6) {
        now += Duration::from_millis(10);
        s.handle_timeout(now);
        for f in drain(&mut s) {
            assert!(is_arp_request_for(&f, PEER), "unexpected frame {f:02x?}");
            requests.push(now);
        }
    }
    assert_eq!(requests.len(), 3, "{requests:?}");
    for w in requests.windows(2) {
        assert!(w[1] - w[0] >= Duration::from_secs(1), "{requests:?}");
    }
    assert_eq!(s.counters().get("arp.unresolved_drop"), 2);
    assert_eq!(s.iface.arp.pending_frames(), 0);
    assert_eq!(s.poll_at(), None);
}

#[test]
fn arp_answer_releases_queued_datagrams_in_order() {
    let mut s = stack();
    let h = s
        .udp
        .bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5000))
        .unwrap();
    let dst = SocketAddrV4::new(PEER, 9);
    for i in 0..5u8 {
        send_udp(&mut s, Instant::from_millis(u64::from(i)), h, &[i; 10], dst);
    }
    let out = drain(&mut s);
    assert_eq!(out.len(), 1);
    assert!(is_arp_request_for(&out[0], PEER));
    let reply = arp(ArpOperation::Reply, PEER_MAC, PEER, US_MAC, US);
    s.handle_frame(Instant::from_millis(300), &reply, RxChecksum::Verify);
    let out = drain(&mut s);
    assert_eq!(out.len(), 5);
    for (i, f) in out.iter().enumerate() {
        let p = parse_ip(f);
        assert_eq!(
            (p.eth_dst, p.dst, p.protocol),
            (PEER_MAC, PEER, IpProtocol::Udp)
        );
        let udp = UdpPacket::new_checked(&p.payload[..]).unwrap();
        assert!(udp.verify_checksum(&IpAddress::Ipv4(US), &IpAddress::Ipv4(PEER)));
        assert_eq!(udp.payload(), &[i as u8; 10], "datagram {i} out of order");
    }
    assert_eq!(s.poll_at(), None, "no more retries once answered");
    s.handle_timeout(Instant::from_secs(5));
    assert!(drain(&mut s).is_empty());
    // Resolved now: the next datagram goes straight out.
    send_udp(&mut s, Instant::from_secs(5), h, b"direct", dst);
    let out = drain(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(parse_ip(&out[0]).eth_dst, PEER_MAC);
}

#[test]
fn fragmented_echo_in_reverse_order_gets_fragmented_reply() {
    let mut s = stack();
    introduce_peer(&mut s, Instant::ZERO);
    let data: Vec<u8> = (0..3992u32).map(|i| (i * 7 % 251) as u8).collect();
    let icmp = echo_request(0x1234, 7, &data);
    assert_eq!(icmp.len(), 4000);
    let mut frames = Vec::new();
    for (start, len) in [(0, 1480), (1480, 1480), (2960, 1040)] {
        frames.push(
            Ip {
                offset: start,
                more: start + len < icmp.len(),
                ..ip(IpProtocol::Icmp, 0xabcd, &icmp[start..start + len])
            }
            .frame(),
        );
    }
    let t = Instant::from_millis(1);
    for f in frames.iter().rev() {
        s.handle_frame(t, f, RxChecksum::Verify);
    }
    let sent: Vec<Sent> = drain(&mut s).iter().map(|f| parse_ip(f)).collect();
    assert_eq!(
        sent.len(),
        3,
        "a 4000-byte reply needs 3 fragments at MTU 1500"
    );
    for f in &sent {
        assert_eq!((f.src, f.dst, f.protocol), (US, PEER, IpProtocol::Icmp));
        assert!(f.header.len() + f.payload.len() <= 1500);
    }
    let reply = reassemble(&sent);
    assert_eq!(reply.len(), 4000);
    let p = Icmpv4Packet::new_checked(&reply[..]).unwrap();
    assert!(p.verify_checksum());
    match Icmpv4Repr::parse(&p, &ChecksumCapabilities::default()).unwrap() {
        Icmpv4Repr::EchoReply {
            ident,
            seq_no,
            data: d,
        } => {
            assert_eq!((ident, seq_no), (0x1234, 7));
            assert!(d == &data[..], "echo payload differs");
        }
        other => panic!("not an echo reply: {other:?}"),
    }
    assert_eq!(s.counters().get("ipv4.reassembled"), 1);
}

#[test]
fn reassembly_timeout_sends_time_exceeded_if_first_fragment_seen() {
    let mut s = stack();
    introduce_peer(&mut s, Instant::ZERO);
    let payload = [0x55u8; 1480];
    let t0 = Instant::from_secs(1);
    // Datagram 0x4242: only the first fragment arrives.
    let first = Ip {
        more: true,
        ..ip(IpProtocol::Udp, 0x4242, &payload)
    };
    s.handle_frame(t0, &first.frame(), RxChecksum::Verify);
    // Datagram 0x4343: only a later fragment arrives (no error for it).
    let later = Ip {
        offset: 1480,
        ..ip(IpProtocol::Udp, 0x4343, &payload[..100])
    };
    s.handle_frame(t0, &later.frame(), RxChecksum::Verify);
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.poll_at(), Some(t0 + Duration::from_secs(30)));
    s.handle_timeout(t0 + Duration::from_millis(29_999));
    assert!(drain(&mut s).is_empty(), "too early");
    s.handle_timeout(t0 + Duration::from_secs(30));
    let out = drain(&mut s);
    assert_eq!(
        out.len(),
        1,
        "one error, for the datagram whose first fragment came"
    );
    let e = parse_ip(&out[0]);
    assert_eq!((e.dst, e.protocol), (PEER, IpProtocol::Icmp));
    let icmp = Icmpv4Packet::new_checked(&e.payload[..]).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!((icmp.msg_type().into(), icmp.msg_code()), (11u8, 1u8));
    // RFC 792: the original header plus the first 64 bits of its data.
    let quoted = &e.payload[8..];
    let orig = first.bytes();
    assert_eq!(quoted, &orig[..28]);
    assert_eq!(s.counters().get("ipv4.frag.timeout"), 2);
    assert_eq!(s.poll_at(), None);
}

#[test]
fn unknown_protocol_gets_rate_limited_protocol_unreachable() {
    let mut s = stack();
    let t = Instant::from_secs(1);
    introduce_peer(&mut s, t);
    let payload = [0xa5u8; 16];
    let pkt = ip(IpProtocol::Unknown(253), 1, &payload);
    for _ in 0..100 {
        s.handle_frame(t, &pkt.frame(), RxChecksum::Verify);
    }
    let out = drain(&mut s);
    assert_eq!(out.len(), 50, "burst of 50, then rate-limited");
    for f in &out {
        let e = parse_ip(f);
        assert_eq!((e.dst, e.protocol), (PEER, IpProtocol::Icmp));
        let icmp = Icmpv4Packet::new_checked(&e.payload[..]).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!((icmp.msg_type().into(), icmp.msg_code()), (3u8, 2u8));
        assert_eq!(
            &e.payload[8..],
            &pkt.bytes()[..],
            "quotes the whole small datagram"
        );
    }
    let c = s.counters();
    assert_eq!(c.get("icmp.error_rate_limited"), 50);
    assert_eq!(c.get("ipv4.unknown_protocol"), 100);
    // The bucket refills at 1000/s.
    s.handle_frame(
        t + Duration::from_millis(1),
        &pkt.frame(),
        RxChecksum::Verify,
    );
    assert_eq!(drain(&mut s).len(), 1);
}

/// Two stacks on a virtual link: frames move between them, and when the
/// link is quiet the clock jumps to the next deadline.
#[test]
fn two_stacks_exchange_a_maximum_udp_datagram() {
    let mac_a = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
    let mut a = Stack::new(config(PEER, mac_a));
    let mut b = Stack::new(config(US, US_MAC));
    let ha = a
        .udp
        .bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 1111))
        .unwrap();
    let hb = b
        .udp
        .bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 2222))
        .unwrap();
    let data: Vec<u8> = (0..65_507u32).map(|i| (i ^ (i >> 8)) as u8).collect();
    let mut now = Instant::ZERO;
    send_udp(&mut a, now, ha, &data, SocketAddrV4::new(US, 2222));

    let mut buf = vec![0u8; 70_000];
    let mut frames = 0;
    let mut echoed = false;
    let mut got_back = None;
    for _ in 0..10_000 {
        let mut moved = false;
        while let Some(f) = a.poll_transmit() {
            b.handle_frame(now, &f, RxChecksum::Verify);
            a.recycle(f);
            moved = true;
            frames += 1;
        }
        while let Some(f) = b.poll_transmit() {
            a.handle_frame(now, &f, RxChecksum::Verify);
            b.recycle(f);
            moved = true;
            frames += 1;
        }
        if !echoed && let Ok((n, from)) = b.udp.recv_from(hb, &mut buf, false) {
            assert_eq!(n, data.len());
            assert!(buf[..n] == data[..], "A -> B payload differs");
            assert_eq!(from, SocketAddrV4::new(PEER, 1111));
            let copy = buf[..n].to_vec();
            send_udp(&mut b, now, hb, &copy, from);
            echoed = true;
            continue;
        }
        if let Ok((n, _)) = a.udp.recv_from(ha, &mut buf, false) {
            got_back = Some(buf[..n].to_vec());
            break;
        }
        if !moved {
            let Some(next) = earliest(a.poll_at(), b.poll_at()) else {
                break;
            };
            now = now.max(next);
            a.handle_timeout(now);
            b.handle_timeout(now);
        }
    }
    assert!(echoed, "B never got the datagram ({frames} frames)");
    assert!(
        got_back.as_deref() == Some(&data[..]),
        "B -> A payload differs"
    );
    assert!(frames >= 90, "45 fragments each way, plus ARP: {frames}");
    assert_eq!(a.counters().get("ipv4.fragmented_tx"), 1);
    assert_eq!(b.counters().get("ipv4.reassembled"), 1);
}

/// Frames of every kind the stack parses: ARP, ping (whole and in
/// fragments), UDP to a bound port and to broadcast, an unknown protocol,
/// TCP; `random_frames_never_panic_and_the_stack_still_answers` mangles
/// them.
fn frame_templates() -> Vec<Vec<u8>> {
    let echo = echo_request(1, 1, &[0x61; 56]);
    let big: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let big_icmp = echo_request(2, 2, &big);
    let mut udp = vec![0u8; 8 + 32];
    {
        let mut u = UdpPacket::new_unchecked(&mut udp[..]);
        u.set_src_port(4000);
        u.set_dst_port(7);
        u.set_len(40);
        u.fill_checksum(&IpAddress::Ipv4(PEER), &IpAddress::Ipv4(US));
    }
    vec![
        arp(
            ArpOperation::Request,
            PEER_MAC,
            PEER,
            EthernetAddress([0; 6]),
            US,
        ),
        arp(ArpOperation::Reply, PEER_MAC, PEER, US_MAC, US),
        arp(
            ArpOperation::Request,
            PEER_MAC,
            PEER,
            EthernetAddress([0; 6]),
            PEER,
        ),
        ip(IpProtocol::Icmp, 1, &echo).frame(),
        Ip {
            more: true,
            ..ip(IpProtocol::Icmp, 2, &big_icmp[..1480])
        }
        .frame(),
        Ip {
            offset: 1480,
            ..ip(IpProtocol::Icmp, 2, &big_icmp[1480..])
        }
        .frame(),
        ip(IpProtocol::Udp, 3, &udp).frame(),
        Ip {
            dst: Ipv4Addr::new(10, 0, 0, 255),
            ..ip(IpProtocol::Udp, 4, &udp)
        }
        .frame(),
        ip(IpProtocol::Unknown(99), 5, &[0; 30]).frame(),
        ip(IpProtocol::Tcp, 6, &[0; 20]).frame(),
    ]
}

/// Mangles `f` one of several ways (or not): random bytes, a truncation,
/// flipped bits, or garbage behind a valid IP checksum.
fn mangle(rng: &mut Rng, f: &mut Vec<u8>) {
    match rng.range(0, 6) {
        0 => {
            *f = vec![0u8; rng.range(0, 1600) as usize];
            rng.fill(f);
        }
        1 => f.truncate(rng.range(0, f.len() as u64) as usize),
        2 => {
            for _ in 0..rng.range(1, 9) {
                let bit = rng.range(0, f.len() as u64 * 8) as usize;
                f[bit / 8] ^= 1 << (bit % 8);
            }
        }
        3 | 4 if f.len() >= 34 && f[12..14] == [0x08, 0x00] => {
            // Garbage past the checks: random header or payload bytes,
            // then a valid IP checksum so deeper layers see them.
            let n = rng.range(1, 6);
            for _ in 0..n {
                let at = if rng.chance(0.5) {
                    14 + rng.range(0, 20) as usize
                } else {
                    rng.range(14, f.len() as u64) as usize
                };
                f[at] = rng.next_u32() as u8;
            }
            f[14] = 0x45 | (f[14] & 0x0f).max(5);
            if let Ok(mut p) = Ipv4Packet::new_checked(&mut f[14..]) {
                p.fill_checksum();
            }
        }
        _ => {}
    }
}

/// Still alive: `s` answers a clean ping at `now`.
fn assert_answers_ping(s: &mut Stack, now: Instant) {
    introduce_peer(s, now);
    let ping = echo_request(0x7777, 1, b"still there?");
    s.handle_frame(
        now,
        &ip(IpProtocol::Icmp, 0x1111, &ping).frame(),
        RxChecksum::Verify,
    );
    let out = drain(s);
    assert_eq!(out.len(), 1);
    let r = parse_ip(&out[0]);
    assert_eq!((r.eth_dst, r.dst), (PEER_MAC, PEER));
    let p = Icmpv4Packet::new_checked(&r.payload[..]).unwrap();
    match Icmpv4Repr::parse(&p, &ChecksumCapabilities::default()).unwrap() {
        Icmpv4Repr::EchoReply { ident, data, .. } => {
            assert_eq!((ident, data), (0x7777, &b"still there?"[..]));
        }
        other => panic!("not an echo reply: {other:?}"),
    }
}

/// 100,000 malformed frames (seeded): random bytes, truncations, bit
/// flips, and valid-checksum garbage that reaches the upper layers. The
/// stack must not panic, its queues stay within their bounds, and it still
/// answers a ping afterwards.
#[test]
fn random_frames_never_panic_and_the_stack_still_answers() {
    let mut s = stack();
    let _h = s
        .udp
        .bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7))
        .unwrap();
    let templates = frame_templates();
    let mut rng = Rng::new(0xf022);
    let mut now = Instant::ZERO;
    let mut emitted = 0usize;
    for i in 0..100_000u32 {
        now += Duration::from_millis(1);
        let mut f = templates[rng.range(0, templates.len() as u64) as usize].clone();
        mangle(&mut rng, &mut f);
        s.handle_frame(now, &f, RxChecksum::Verify);
        assert!(
            s.iface.outbox.len() <= OUTBOX_LIMIT,
            "outbox over its bound"
        );
        if i % 100 == 0 {
            s.handle_timeout(now);
        }
        // Drained rarely, so the outbox does fill up to its bound.
        if i % 5000 == 0 {
            emitted += drain(&mut s).len();
        }
    }
    assert!(s.iface.arp.pending_frames() <= 512);
    assert!(s.reassembler.datagrams() <= 64);
    assert!(s.reassembler.bytes_charged() <= 4 << 20);
    emitted += drain(&mut s).len();
    let c = s.counters();
    assert!(emitted > 0);
    assert!(
        c.get("tx.outbox_full") > 0,
        "the outbox bound was never reached\n{c}"
    );
    assert!(
        c.get("icmp.echo_replied") > 0 && c.get("ipv4.reassembled") > 0,
        "{c}"
    );

    now += Duration::from_secs(1);
    assert_answers_ping(&mut s, now);
}

/// A transport checksum the device vouches for (the kernel built the
/// packet and left a partial sum) is not summed again; one it does not
/// vouch for is checked. Each transport answers only in the trusted case:
/// ICMP echo reply, UDP port unreachable, TCP RST.
#[test]
fn transport_checksums_are_skipped_only_when_the_device_vouches() {
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&9u16.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x02; // SYN
    // A partial checksum: the pseudo-header sum only, as the kernel leaves it.
    let pseudo = smoltcp::wire::checksum::pseudo_header_v4(&PEER, &US, IpProtocol::Tcp, 20);
    tcp[16..18].copy_from_slice(&pseudo.to_be_bytes());
    let mut udp = [0u8; 12];
    udp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&9u16.to_be_bytes());
    udp[4..6].copy_from_slice(&12u16.to_be_bytes());
    udp[6..8].copy_from_slice(&[0x12, 0x34]);
    let mut echo = echo_request(7, 1, b"ping");
    echo[2] ^= 0xff;
    let cases: [(IpProtocol, &[u8], &str); 3] = [
        (IpProtocol::Tcp, &tcp, "tcp.bad_checksum"),
        (IpProtocol::Udp, &udp, "udp.bad_checksum"),
        (IpProtocol::Icmp, &echo, "icmp.bad_checksum"),
    ];
    for (protocol, payload, counter) in cases {
        let mut s = stack();
        let t = Instant::from_secs(1);
        introduce_peer(&mut s, t);
        let frame = ip(protocol, 1, payload).frame();
        s.handle_frame(t, &frame, RxChecksum::Verify);
        s.handle_timeout(t);
        assert!(
            drain(&mut s).is_empty(),
            "{protocol}: answered a bad checksum"
        );
        assert_eq!(s.counters().get(counter), 1, "{protocol}");
        s.handle_frame(t, &frame, RxChecksum::Trusted);
        // The core's contract: output is produced by `handle_timeout`.
        s.handle_timeout(t);
        let out = drain(&mut s);
        assert_eq!(out.len(), 1, "{protocol}: no answer when trusted");
        let reply = parse_ip(&out[0]);
        let want = if protocol == IpProtocol::Udp {
            IpProtocol::Icmp
        } else {
            protocol
        };
        assert_eq!(reply.protocol, want, "{protocol}");
        assert_eq!(s.counters().get(counter), 1, "{protocol}");
    }
}
