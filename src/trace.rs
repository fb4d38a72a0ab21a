//! One human-readable line per frame for `--trace`, in the spirit of
//! tcpdump: MACs, IPs, protocol, and for TCP the ports, flags, sequence
//! numbers, window and options. Every parse goes through `new_checked`, and
//! bad bytes become a description rather than a panic, because the input is
//! whatever arrived on the wire.

use std::fmt::Write as _;

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    Icmpv4Message, Icmpv4Packet, IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, TcpPacket,
    UdpPacket,
};

/// Describes one Ethernet frame in one line, never panicking on any bytes.
pub fn describe_frame(frame: &[u8]) -> String {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return format!("malformed Ethernet (len {})", frame.len());
    };
    let body = match eth.ethertype() {
        EthernetProtocol::Arp => describe_arp(eth.payload()),
        EthernetProtocol::Ipv4 => describe_ipv4(eth.payload()),
        EthernetProtocol::Ipv6 => format!("IPv6 len={}", eth.payload().len()),
        EthernetProtocol::Unknown(t) => {
            format!("ethertype 0x{t:04x} len={}", eth.payload().len())
        }
    };
    format!("{} > {} {body}", mac(eth.src_addr()), mac(eth.dst_addr()))
}

/// Colon-separated, as `ip link` prints it (smoltcp's Display uses dashes).
fn mac(a: EthernetAddress) -> String {
    let b = a.0;
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5]
    )
}

fn describe_arp(bytes: &[u8]) -> String {
    let Ok(packet) = ArpPacket::new_checked(bytes) else {
        return format!("ARP malformed (len {})", bytes.len());
    };
    let Ok(repr) = ArpRepr::parse(&packet) else {
        return format!(
            "ARP unsupported htype={} ptype=0x{:04x}",
            u16::from(packet.hardware_type()),
            u16::from(packet.protocol_type())
        );
    };
    match repr {
        ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr: sha,
            source_protocol_addr: spa,
            target_protocol_addr: tpa,
            ..
        } => match operation {
            ArpOperation::Request => format!("ARP who-has {tpa} tell {spa}"),
            ArpOperation::Reply => format!("ARP reply {spa} is-at {}", mac(sha)),
            ArpOperation::Unknown(op) => format!("ARP op {op} {spa} > {tpa}"),
        },
        // ArpRepr is non-exhaustive: future variants get a generic line.
        _ => "ARP unsupported".to_string(),
    }
}

fn describe_ipv4(bytes: &[u8]) -> String {
    let ip = match Ipv4Packet::new_checked(bytes) {
        Ok(ip) if ip.version() == 4 => ip,
        Ok(ip) => return format!("IPv4 malformed: version {}", ip.version()),
        Err(_) => return format!("IPv4 malformed: {}", ipv4_len_problem(bytes)),
    };
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let mut line = if ip.more_frags() || ip.frag_offset() != 0 {
        // Only a reassembled datagram has a complete transport header and
        // checksum, so fragments are described at the IP level only.
        describe_fragment(&ip)
    } else {
        match ip.next_header() {
            IpProtocol::Icmp => describe_icmp(ip.payload(), src, dst, ip.hop_limit()),
            IpProtocol::Tcp => describe_tcp(ip.payload(), src, dst),
            IpProtocol::Udp => describe_udp(ip.payload(), src, dst),
            p => format!("IPv4 {src} > {dst} proto {p} len={}", ip.payload().len()),
        }
    };
    if !ip.verify_checksum() {
        line.push_str(" [bad ip cksum]");
    }
    line
}

/// Why `Ipv4Packet::check_len` refused these bytes, read from the raw
/// header fields without trusting them.
fn ipv4_len_problem(bytes: &[u8]) -> String {
    let (Some(&vihl), Some(tl)) = (bytes.first(), bytes.get(2..4)) else {
        return format!("truncated header (len {})", bytes.len());
    };
    let header_len = usize::from(vihl & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([tl[0], tl[1]]));
    if bytes.len() < 20 {
        format!("truncated header (len {})", bytes.len())
    } else if header_len < 20 {
        format!("header length {header_len} < 20")
    } else if bytes.len() < header_len {
        format!("header length {header_len} > frame {}", bytes.len())
    } else if total_len < header_len {
        format!("total length {total_len} < header length {header_len}")
    } else {
        format!("total length {total_len} > frame {}", bytes.len())
    }
}

fn describe_fragment(ip: &Ipv4Packet<&[u8]>) -> String {
    format!(
        "IPv4 {} > {} frag id={} off={} len={}{} proto {}",
        ip.src_addr(),
        ip.dst_addr(),
        ip.ident(),
        ip.frag_offset(),
        ip.payload().len(),
        if ip.more_frags() { " MF" } else { "" },
        ip.next_header()
    )
}

fn describe_icmp(bytes: &[u8], src: Ipv4Address, dst: Ipv4Address, ttl: u8) -> String {
    let head = format!("IPv4 {src} > {dst} ICMP");
    let Ok(icmp) = Icmpv4Packet::new_checked(bytes) else {
        return format!("{head} malformed (len {})", bytes.len());
    };
    let what = match icmp.msg_type() {
        m @ (Icmpv4Message::EchoRequest | Icmpv4Message::EchoReply) => format!(
            "{m} id={} seq={} len={}",
            icmp.echo_ident(),
            icmp.echo_seq_no(),
            icmp.data().len()
        ),
        Icmpv4Message::DstUnreachable => format!(
            "{} ({}){}",
            icmp.msg_type(),
            smoltcp::wire::Icmpv4DstUnreachable::from(icmp.msg_code()),
            describe_quoted(icmp.data())
        ),
        Icmpv4Message::TimeExceeded => format!(
            "time exceeded ({}){}",
            smoltcp::wire::Icmpv4TimeExceeded::from(icmp.msg_code()),
            describe_quoted(icmp.data())
        ),
        m => format!("type {} code {}", u8::from(m), icmp.msg_code()),
    };
    let bad = if icmp.verify_checksum() {
        ""
    } else {
        " [bad icmp cksum]"
    };
    format!("{head} {what} ttl={ttl}{bad}")
}

/// The start of the datagram an ICMP error quotes (IP header + 8 bytes):
/// which packet the error is about. Read by hand because the quote is
/// deliberately truncated, so `new_checked` would refuse it.
fn describe_quoted(data: &[u8]) -> String {
    let Some(h) = data.get(..20) else {
        return String::new();
    };
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let src = Ipv4Address::new(h[12], h[13], h[14], h[15]);
    let dst = Ipv4Address::new(h[16], h[17], h[18], h[19]);
    let proto = IpProtocol::from(h[9]);
    match (proto, data.get(ihl..ihl + 4)) {
        (IpProtocol::Tcp | IpProtocol::Udp, Some(p)) if ihl >= 20 => {
            let sp = u16::from_be_bytes([p[0], p[1]]);
            let dp = u16::from_be_bytes([p[2], p[3]]);
            format!(" for {proto} {src}:{sp} > {dst}:{dp}")
        }
        _ => format!(" for {proto} {src} > {dst}"),
    }
}

fn describe_udp(bytes: &[u8], src: Ipv4Address, dst: Ipv4Address) -> String {
    let Ok(udp) = UdpPacket::new_checked(bytes) else {
        return format!("IPv4 {src} > {dst} UDP malformed (len {})", bytes.len());
    };
    let (s, d) = (IpAddress::Ipv4(src), IpAddress::Ipv4(dst));
    // A zero checksum means "not computed" in UDP over IPv4 (RFC 768).
    let bad = udp.checksum() != 0 && !udp.verify_checksum(&s, &d);
    format!(
        "IPv4 {src}:{} > {dst}:{} UDP len={}{}",
        udp.src_port(),
        udp.dst_port(),
        udp.payload().len(),
        if bad { " [bad udp cksum]" } else { "" }
    )
}

fn describe_tcp(bytes: &[u8], src: Ipv4Address, dst: Ipv4Address) -> String {
    let Ok(tcp) = TcpPacket::new_checked(bytes) else {
        return format!("IPv4 {src} > {dst} TCP malformed (len {})", bytes.len());
    };
    let mut line = format!(
        "IPv4 {src}:{} > {dst}:{} {} seq={}",
        tcp.src_port(),
        tcp.dst_port(),
        tcp_flags(&tcp),
        tcp.seq_number().0 as u32
    );
    if tcp.ack() {
        let _ = write!(line, " ack={}", tcp.ack_number().0 as u32);
    }
    let _ = write!(
        line,
        " win={} len={}",
        tcp.window_len(),
        tcp.payload().len()
    );
    if !tcp.options().is_empty() {
        let _ = write!(line, " <{}>", tcp_options(tcp.options()).join(","));
    }
    if !tcp.verify_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst)) {
        line.push_str(" [bad tcp cksum]");
    }
    line
}

fn tcp_flags(tcp: &TcpPacket<&[u8]>) -> String {
    let all = [
        (tcp.syn(), "SYN"),
        (tcp.fin(), "FIN"),
        (tcp.rst(), "RST"),
        (tcp.psh(), "PSH"),
        (tcp.ack(), "ACK"),
        (tcp.urg(), "URG"),
        (tcp.ece(), "ECE"),
        (tcp.cwr(), "CWR"),
    ];
    let set: Vec<&str> = all.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect();
    if set.is_empty() {
        "[none]".to_string()
    } else {
        format!("[{}]", set.join(","))
    }
}

/// Every option in wire order, including ones smoltcp's `TcpRepr` drops
/// (NOPs, a fourth SACK block, unknown kinds).
fn tcp_options(mut opts: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(&kind) = opts.first() {
        match kind {
            0 => {
                out.push("eol".to_string());
                break; // the rest is padding
            }
            1 => {
                out.push("nop".to_string());
                opts = &opts[1..];
                continue;
            }
            _ => {}
        }
        let len = opts.get(1).map_or(0, |&l| usize::from(l));
        // A length below 2 would never advance; one past the end is a lie.
        let data = if len >= 2 { opts.get(2..len) } else { None };
        let Some(data) = data else {
            out.push(format!("bad opt {kind} len {len}"));
            break;
        };
        out.push(tcp_option(kind, data));
        opts = &opts[len..];
    }
    out
}

fn tcp_option(kind: u8, data: &[u8]) -> String {
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    match (kind, data.len()) {
        (2, 2) => format!("mss {}", u16::from_be_bytes([data[0], data[1]])),
        (3, 1) => format!("wscale {}", data[0]),
        (4, 0) => "sackOK".to_string(),
        (5, n) if n > 0 && n % 8 == 0 => {
            let blocks: Vec<String> = data
                .chunks_exact(8)
                .map(|b| format!("{}-{}", be32(&b[..4]), be32(&b[4..])))
                .collect();
            format!("sack {}", blocks.join(" "))
        }
        (8, 8) => format!("TS val {} ecr {}", be32(&data[..4]), be32(&data[4..])),
        (kind, n) => format!("opt {kind} len {}", n + 2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::rng::Rng;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        EthernetRepr, Icmpv4Repr, Ipv4Repr, TcpControl, TcpRepr, TcpSeqNumber, TcpTimestampRepr,
        UdpRepr,
    };

    const MAC_A: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
    const MAC_B: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
    const IP_A: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
    const IP_B: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
    const HEAD: &str = "02:00:00:00:00:01 > 02:00:00:00:00:02";

    fn caps() -> ChecksumCapabilities {
        ChecksumCapabilities::default()
    }

    fn eth(ethertype: EthernetProtocol, payload: &[u8]) -> Vec<u8> {
        let repr = EthernetRepr {
            src_addr: MAC_A,
            dst_addr: MAC_B,
            ethertype,
        };
        let mut buf = vec![0u8; repr.buffer_len() + payload.len()];
        let mut frame = EthernetFrame::new_checked(&mut buf[..]).unwrap();
        repr.emit(&mut frame);
        frame.payload_mut().copy_from_slice(payload);
        buf
    }

    /// An IPv4 datagram A -> B with TTL 64 around `transport`.
    fn ipv4(proto: IpProtocol, transport: &[u8]) -> Vec<u8> {
        let repr = Ipv4Repr {
            src_addr: IP_A,
            dst_addr: IP_B,
            next_header: proto,
            payload_len: transport.len(),
            hop_limit: 64,
        };
        let mut buf = vec![0u8; repr.buffer_len() + transport.len()];
        let mut packet = Ipv4Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut packet, &caps());
        packet.payload_mut().copy_from_slice(transport);
        buf
    }

    fn tcp_bytes(repr: &TcpRepr) -> Vec<u8> {
        let mut buf = vec![0u8; repr.buffer_len()];
        let mut packet = TcpPacket::new_unchecked(&mut buf[..]);
        repr.emit(&mut packet, &IP_A.into(), &IP_B.into(), &caps());
        buf
    }

    fn tcp_frame(repr: &TcpRepr) -> Vec<u8> {
        eth(
            EthernetProtocol::Ipv4,
            &ipv4(IpProtocol::Tcp, &tcp_bytes(repr)),
        )
    }

    fn syn() -> TcpRepr<'static> {
        TcpRepr {
            src_port: 40312,
            dst_port: 7,
            control: TcpControl::Syn,
            seq_number: TcpSeqNumber(123),
            ack_number: None,
            window_len: 64240,
            window_scale: Some(7),
            max_seg_size: Some(1460),
            sack_permitted: true,
            sack_ranges: [None; 3],
            timestamp: Some(TcpTimestampRepr::new(1, 0)),
            payload: &[],
        }
    }

    fn arp(operation: ArpOperation, target_mac: EthernetAddress) -> Vec<u8> {
        let repr = ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr: MAC_A,
            source_protocol_addr: IP_A,
            target_hardware_addr: target_mac,
            target_protocol_addr: IP_B,
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
        eth(EthernetProtocol::Arp, &buf)
    }

    #[test]
    fn arp_request_and_reply() {
        let req = arp(ArpOperation::Request, EthernetAddress([0; 6]));
        assert_eq!(
            describe_frame(&req),
            format!("{HEAD} ARP who-has 10.0.0.2 tell 10.0.0.1")
        );
        let reply = arp(ArpOperation::Reply, MAC_B);
        assert_eq!(
            describe_frame(&reply),
            format!("{HEAD} ARP reply 10.0.0.1 is-at 02:00:00:00:00:01")
        );
    }

    #[test]
    fn icmp_echo_request_with_ttl() {
        let data = [0x5au8; 56];
        let repr = Icmpv4Repr::EchoRequest {
            ident: 12,
            seq_no: 3,
            data: &data,
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]), &caps());
        let frame = eth(EthernetProtocol::Ipv4, &ipv4(IpProtocol::Icmp, &buf));
        assert_eq!(
            describe_frame(&frame),
            format!("{HEAD} IPv4 10.0.0.1 > 10.0.0.2 ICMP echo request id=12 seq=3 len=56 ttl=64")
        );
    }

    #[test]
    fn tcp_syn_options_as_smoltcp_emits_them() {
        assert_eq!(
            describe_frame(&tcp_frame(&syn())),
            format!(
                "{HEAD} IPv4 10.0.0.1:40312 > 10.0.0.2:7 [SYN] seq=123 win=64240 len=0 \
                 <mss 1460,wscale 7,sackOK,TS val 1 ecr 0,eol>"
            )
        );
    }

    #[test]
    fn tcp_syn_linux_option_order_is_kept() {
        // Linux orders options mss, sackOK, TS, nop, wscale; TcpRepr would
        // lose the NOP and the order, so the trace must read the raw bytes.
        let mut seg = tcp_bytes(&TcpRepr {
            max_seg_size: None,
            sack_permitted: false,
            window_scale: None,
            timestamp: None,
            ..syn()
        });
        let opts: [u8; 20] = [
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
        seg.extend_from_slice(&opts);
        let mut packet = TcpPacket::new_unchecked(&mut seg[..]);
        packet.set_header_len(40);
        packet.fill_checksum(&IP_A.into(), &IP_B.into());
        let frame = eth(EthernetProtocol::Ipv4, &ipv4(IpProtocol::Tcp, &seg));
        assert_eq!(
            describe_frame(&frame),
            format!(
                "{HEAD} IPv4 10.0.0.1:40312 > 10.0.0.2:7 [SYN] seq=123 win=64240 len=0 \
                 <mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7>"
            )
        );
    }

    #[test]
    fn tcp_data_with_sack_blocks_and_ack() {
        let repr = TcpRepr {
            src_port: 7,
            dst_port: 40312,
            control: TcpControl::Psh,
            seq_number: TcpSeqNumber(-1), // 4294967295: sequence numbers are unsigned
            ack_number: Some(TcpSeqNumber(1000)),
            window_len: 502,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [Some((1000, 2000)), Some((3000, 4000)), None],
            timestamp: Some(TcpTimestampRepr::new(77, 66)),
            payload: b"hello",
        };
        let line = describe_frame(&tcp_frame(&repr));
        assert_eq!(
            line,
            format!(
                "{HEAD} IPv4 10.0.0.1:7 > 10.0.0.2:40312 [PSH,ACK] seq=4294967295 ack=1000 \
                 win=502 len=5 <sack 1000-2000 3000-4000,TS val 77 ecr 66>"
            )
        );
    }

    #[test]
    fn tcp_flag_combinations() {
        let base = TcpRepr {
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            timestamp: None,
            ..syn()
        };
        let synack = TcpRepr {
            ack_number: Some(TcpSeqNumber(124)),
            ..base
        };
        assert!(
            describe_frame(&tcp_frame(&synack))
                .contains(" [SYN,ACK] seq=123 ack=124 win=64240 len=0")
        );
        let finack = TcpRepr {
            control: TcpControl::Fin,
            ..synack
        };
        assert!(describe_frame(&tcp_frame(&finack)).contains(" [FIN,ACK] "));
        let rst = TcpRepr {
            control: TcpControl::Rst,
            ..base
        };
        let line = describe_frame(&tcp_frame(&rst));
        assert!(line.ends_with(" [RST] seq=123 win=64240 len=0"), "{line}");
        let ack = TcpRepr {
            control: TcpControl::None,
            ..synack
        };
        assert!(describe_frame(&tcp_frame(&ack)).contains(" [ACK] "));
    }

    #[test]
    fn udp_datagram() {
        let repr = UdpRepr {
            src_port: 5000,
            dst_port: 7,
        };
        let mut buf = vec![0u8; 8 + 5];
        let mut packet = UdpPacket::new_unchecked(&mut buf[..]);
        repr.emit(
            &mut packet,
            &IP_A.into(),
            &IP_B.into(),
            5,
            |p| p.copy_from_slice(b"hello"),
            &caps(),
        );
        let frame = eth(EthernetProtocol::Ipv4, &ipv4(IpProtocol::Udp, &buf));
        assert_eq!(
            describe_frame(&frame),
            format!("{HEAD} IPv4 10.0.0.1:5000 > 10.0.0.2:7 UDP len=5")
        );
        // Flip a payload bit: the UDP checksum no longer matches.
        let mut bad = frame.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(describe_frame(&bad).ends_with("UDP len=5 [bad udp cksum]"));
    }

    #[test]
    fn non_first_fragment_is_not_parsed_as_transport() {
        // Payload bytes that would look like a TCP header must not be read.
        let mut datagram = ipv4(IpProtocol::Icmp, &[0xffu8; 1480]);
        let mut packet = Ipv4Packet::new_unchecked(&mut datagram[..]);
        packet.set_ident(7);
        packet.set_dont_frag(false);
        packet.set_more_frags(true);
        packet.set_frag_offset(1480);
        packet.fill_checksum();
        let frame = eth(EthernetProtocol::Ipv4, &datagram);
        assert_eq!(
            describe_frame(&frame),
            format!("{HEAD} IPv4 10.0.0.1 > 10.0.0.2 frag id=7 off=1480 len=1480 MF proto ICMP")
        );
    }

    #[test]
    fn malformed_frames_and_bad_checksums() {
        assert_eq!(
            describe_frame(&[1, 2, 3, 4, 5, 6, 7]),
            "malformed Ethernet (len 7)"
        );
        assert_eq!(
            describe_frame(&eth(EthernetProtocol::Unknown(0x88cc), &[0; 4])),
            format!("{HEAD} ethertype 0x88cc len=4")
        );
        let mut short = ipv4(IpProtocol::Udp, &[0; 8]);
        short.truncate(12);
        assert_eq!(
            describe_frame(&eth(EthernetProtocol::Ipv4, &short)),
            format!("{HEAD} IPv4 malformed: truncated header (len 12)")
        );
        let mut cut = ipv4(IpProtocol::Udp, &[0; 8]);
        cut.truncate(24);
        assert_eq!(
            describe_frame(&eth(EthernetProtocol::Ipv4, &cut)),
            format!("{HEAD} IPv4 malformed: total length 28 > frame 24")
        );
        // Corrupt the TTL: IP header checksum fails; TTL is not in the TCP
        // pseudo-header, so the TCP checksum still holds.
        let mut frame = tcp_frame(&syn());
        frame[14 + 8] = 1;
        let line = describe_frame(&frame);
        assert!(line.ends_with("eol> [bad ip cksum]"), "{line}");
        // Corrupt the window: only the TCP checksum fails.
        let mut frame = tcp_frame(&syn());
        frame[14 + 20 + 14] ^= 0x01;
        let line = describe_frame(&frame);
        assert!(line.ends_with("eol> [bad tcp cksum]"), "{line}");
    }

    #[test]
    fn truncated_and_unknown_tcp_options() {
        assert_eq!(tcp_options(&[2, 4, 5]), vec!["bad opt 2 len 4"]);
        assert_eq!(tcp_options(&[1, 30, 0]), vec!["nop", "bad opt 30 len 0"]);
        assert_eq!(tcp_options(&[30, 3, 9, 0, 0]), vec!["opt 30 len 3", "eol"]);
        assert_eq!(tcp_options(&[3, 2]), vec!["opt 3 len 2"]);
    }

    #[test]
    fn random_and_truncated_bytes_never_panic() {
        let mut rng = Rng::new(0x7472_6163);
        let seeds = [tcp_frame(&syn()), arp(ArpOperation::Request, MAC_B)];
        let mut buf = [0u8; 200];
        let (mut reached_tcp, mut reached_arp) = (0, 0);
        for i in 0..20_000 {
            let len = rng.range(0, buf.len() as u64) as usize;
            if i % 2 == 0 {
                // Random bytes behind a valid header reach the deeper parsers.
                rng.fill(&mut buf);
                let proto = seeds[i % 4 / 2].as_slice();
                let keep = rng.range(0, proto.len() as u64) as usize;
                buf[..keep].copy_from_slice(&proto[..keep]);
            } else {
                rng.fill(&mut buf);
            }
            let line = describe_frame(&buf[..len]);
            assert!(!line.is_empty() && !line.contains('\n'));
            reached_tcp += usize::from(line.contains("[bad tcp cksum]"));
            reached_arp += usize::from(line.contains(" ARP "));
        }
        // The fuzzing must get past the outer headers to mean anything.
        assert!(
            reached_tcp > 50 && reached_arp > 50,
            "{reached_tcp} {reached_arp}"
        );
    }
}
