use super::*;
use smoltcp::wire::{Ipv4Packet, TcpPacket};

const US: [u8; 4] = [10, 0, 0, 2];
const PEER: [u8; 4] = [10, 0, 0, 1];
/// NOP, NOP, timestamps (RFC 7323) as our stack sends them.
const TS_OPTS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7];

/// One segment as the stack emits it: Ethernet, IPv4 (no options, no DF,
/// TTL 64), TCP 7 -> 40000 with ACK 5000, window 0x1000 and the
/// timestamp options; both checksums valid.
struct Seg {
    seq: u32,
    ident: u16,
    flags: u8,
    payload: Vec<u8>,
    opts: Vec<u8>,
    dport: u16,
    ack: u32,
}

fn seg(seq: u32, ident: u16, len: usize, flags: u8) -> Seg {
    Seg {
        seq,
        ident,
        flags,
        payload: (0..len).map(|i| (seq as usize + i) as u8).collect(),
        opts: TS_OPTS.to_vec(),
        dport: 40000,
        ack: 5000,
    }
}

impl Seg {
    fn frame(&self) -> Vec<u8> {
        let thl = 20 + self.opts.len();
        let mut f = vec![0u8; L4 + thl + self.payload.len()];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&[2, 0x74, 0x61, 0x70, 0, 2]);
        f[12..14].copy_from_slice(&[8, 0]);
        let total = (f.len() - ETH) as u16;
        f[ETH] = 0x45;
        f[ETH + 2..ETH + 4].copy_from_slice(&total.to_be_bytes());
        f[ETH + 4..ETH + 6].copy_from_slice(&self.ident.to_be_bytes());
        f[ETH + 8] = 64;
        f[ETH + 9] = 6;
        f[ETH + 12..ETH + 16].copy_from_slice(&US);
        f[ETH + 16..ETH + 20].copy_from_slice(&PEER);
        f[L4..L4 + 2].copy_from_slice(&7u16.to_be_bytes());
        f[L4 + 2..L4 + 4].copy_from_slice(&self.dport.to_be_bytes());
        f[L4 + 4..L4 + 8].copy_from_slice(&self.seq.to_be_bytes());
        f[L4 + 8..L4 + 12].copy_from_slice(&self.ack.to_be_bytes());
        f[L4 + 12] = ((thl / 4) as u8) << 4;
        f[L4 + 13] = self.flags;
        f[L4 + 14..L4 + 16].copy_from_slice(&0x1000u16.to_be_bytes());
        f[L4 + 20..L4 + thl].copy_from_slice(&self.opts);
        f[L4 + thl..].copy_from_slice(&self.payload);
        fill_checksums(&mut f);
        f
    }
}

fn fill_checksums(f: &mut [u8]) {
    Ipv4Packet::new_unchecked(&mut f[ETH..]).fill_checksum();
    let (s, d): (Ipv4Address, Ipv4Address) = (US.into(), PEER.into());
    TcpPacket::new_unchecked(&mut f[L4..]).fill_checksum(&s.into(), &d.into());
}

fn tcp_ok(f: &[u8]) -> bool {
    let ip = Ipv4Packet::new_checked(&f[ETH..]).unwrap();
    let (s, d) = (ip.src_addr().into(), ip.dst_addr().into());
    ip.verify_checksum()
        && TcpPacket::new_checked(ip.payload())
            .unwrap()
            .verify_checksum(&s, &d)
}

const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

#[test]
fn header_layout_is_the_legacy_struct_in_host_order() {
    let h = VnetHdr {
        flags: 1,
        gso_type: 1,
        hdr_len: 0x0142,
        gso_size: 0x05a8,
        csum_start: 34,
        csum_offset: 16,
    };
    let b = h.to_bytes();
    assert_eq!(VnetHdr::from_bytes(&b), h);
    if cfg!(target_endian = "little") {
        assert_eq!(b, [1, 1, 0x42, 0x01, 0xa8, 0x05, 34, 0, 16, 0]);
    }
}

/// The super-segment TCP builds from `segs` (consecutive, one flow): the
/// first one's headers with the whole length, the last one's flags, the
/// pseudo-header sum; all payloads after it.
fn super_segment(frames: &[Vec<u8>], hl: usize) -> Vec<u8> {
    let mut f = frames[0][..hl].to_vec();
    for fr in frames {
        f.extend_from_slice(&fr[hl..]);
    }
    let total = (f.len() - ETH) as u16;
    f[ETH + 2..ETH + 4].copy_from_slice(&total.to_be_bytes());
    Ipv4Packet::new_unchecked(&mut f[ETH..]).fill_checksum();
    f[L4 + 13] = frames[frames.len() - 1][L4 + 13];
    let pseudo = checksum::pseudo_header_v4(
        &US.into(),
        &PEER.into(),
        IpProtocol::Tcp,
        (f.len() - L4) as u32,
    );
    f[L4 + 16..L4 + 18].copy_from_slice(&pseudo.to_be_bytes());
    f
}

fn cut(f: &[u8], gso: Gso, full: bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    segment(f, gso, full, &mut Vec::new(), &mut |s| out.push(s.to_vec()));
    out
}

#[test]
fn tx_header_is_the_frames_offload_state() {
    assert_eq!(tx_header(&Offload::default()), VnetHdr::default());
    let partial = Offload {
        csum: TxCsum::Partial {
            start: 34,
            offset: 16,
        },
        gso: None,
    };
    let h = tx_header(&partial);
    assert_eq!(
        (h.flags, h.gso_type, h.csum_start, h.csum_offset, h.hdr_len),
        (F_NEEDS_CSUM, GSO_NONE, 34, 16, 52)
    );
    let tso = Offload {
        gso: Some(Gso {
            size: 1448,
            hdr_len: 66,
        }),
        ..partial
    };
    let h = tx_header(&tso);
    assert_eq!(
        (h.flags, h.gso_type, h.gso_size, h.hdr_len),
        (F_NEEDS_CSUM, GSO_TCPV4, 1448, 66)
    );
}

#[test]
fn cutting_a_super_segment_gives_back_the_segments() {
    let segs: Vec<Seg> = (0..44u32)
        .map(|i| {
            let last = i == 43;
            seg(
                7 + i * 1448,
                0xfff0u16.wrapping_add(i as u16), // IP ID wraps
                if last { 500 } else { 1448 },
                if last { ACK | PSH } else { ACK },
            )
        })
        .collect();
    let frames: Vec<Vec<u8>> = segs.iter().map(Seg::frame).collect();
    let hl = L4 + 32;
    let whole = super_segment(&frames, hl);
    let gso = Gso {
        size: 1448,
        hdr_len: hl as u16,
    };
    assert_eq!(segment_count(&whole, gso), 44);
    assert!(cut(&whole, gso, true) == frames);
    // Left partial, each holds its own pseudo-header sum.
    for (c, f) in cut(&whole, gso, false).iter_mut().zip(&frames) {
        assert!(!tcp_ok(c));
        complete_checksum(c, L4, 16);
        assert!(c == f);
    }
}

#[test]
fn cut_sets_per_segment_flags_and_checksums() {
    // CWR on the first segment only, PSH and FIN on the last only.
    let f = seg(100, 0xffff, 25, ACK | PSH | 0x01 | 0x80).frame();
    let gso = Gso {
        size: 10,
        hdr_len: (L4 + 32) as u16,
    };
    let out = cut(&f, gso, true);
    assert_eq!(out.len(), 3);
    let flags: Vec<u8> = out.iter().map(|s| s[L4 + 13]).collect();
    assert_eq!(flags, [ACK | 0x80, ACK, ACK | PSH | 0x01]);
    let seqs: Vec<u32> = out.iter().map(|s| be32(s, L4 + 4)).collect();
    assert_eq!(seqs, [100, 110, 120]);
    let ids: Vec<u16> = out.iter().map(|s| be16(s, ETH + 4)).collect();
    assert_eq!(ids, [0xffff, 0, 1]);
    assert!(out.iter().all(|s| tcp_ok(s)));
    let lens: Vec<usize> = out.iter().map(|s| s.len() - 66).collect();
    assert_eq!(lens, [10, 10, 5]);
    // Not a TCP/IPv4 frame: given back as it is, no panic.
    assert_eq!(cut(&[0; 60], gso, true), vec![vec![0; 60]]);
}

#[test]
fn rx_classifies_partial_checksums_and_completes_on_request() {
    // What the kernel hands over for a TSO super-frame: the TCP checksum
    // field holds the pseudo-header sum only.
    let mut f = seg(1, 9, 3000, ACK | PSH).frame();
    let pseudo = checksum::pseudo_header_v4(
        &US.into(),
        &PEER.into(),
        IpProtocol::Tcp,
        (f.len() - L4) as u32,
    );
    f[L4 + 16..L4 + 18].copy_from_slice(&pseudo.to_be_bytes());
    assert!(!tcp_ok(&f));
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: 66,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
    };
    let meta = classify_rx(&hdr, f.len());
    assert_eq!(meta.kind, RxKind::Gso);
    assert_eq!(
        meta.csum,
        RxCsum::Partial {
            start: 34,
            offset: 16
        }
    );
    // Classifying sums nothing; completing gives a valid segment.
    assert!(!tcp_ok(&f));
    complete_checksum(&mut f, 34, 16);
    assert!(tcp_ok(&f));
    // Odd length: the last byte counts as the high half of a word.
    let mut odd = seg(1, 9, 1, ACK).frame();
    odd[L4 + 16..L4 + 18].copy_from_slice(
        &checksum::pseudo_header_v4(&US.into(), &PEER.into(), IpProtocol::Tcp, 33).to_be_bytes(),
    );
    let plain = VnetHdr {
        gso_type: GSO_NONE,
        gso_size: 0,
        ..hdr
    };
    assert_eq!(classify_rx(&plain, odd.len()).kind, RxKind::Plain);
    complete_checksum(&mut odd, 34, 16);
    assert!(tcp_ok(&odd));
    // DATA_VALID: verified by the kernel; no flags: nothing known.
    for (flags, csum) in [(0, RxCsum::Unknown), (F_DATA_VALID, RxCsum::Valid)] {
        let h = VnetHdr {
            flags,
            ..VnetHdr::default()
        };
        let want = RxMeta {
            kind: RxKind::Plain,
            csum,
        };
        assert_eq!(classify_rx(&h, 64), want);
    }
}

#[test]
fn rx_rejects_bad_offsets_and_unknown_gso() {
    let good = seg(1, 9, 10, ACK).frame();
    for (start, offset) in [
        (0, 16),
        (34, 1000),
        (good.len() as u16 - 1, 0),
        (u16::MAX, u16::MAX),
    ] {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: start,
            csum_offset: offset,
            ..VnetHdr::default()
        };
        assert_eq!(
            classify_rx(&h, good.len()).kind,
            RxKind::Dropped("rx.vnet_bad_csum_offsets"),
            "{start}+{offset}"
        );
    }
    for (gso_type, gso_size) in [(3, 1400), (4, 1400), (5, 1400), (GSO_TCPV4, 0)] {
        let h = VnetHdr {
            gso_type,
            gso_size,
            ..VnetHdr::default()
        };
        assert_eq!(
            classify_rx(&h, good.len()).kind,
            RxKind::Dropped("rx.vnet_unsupported_gso")
        );
    }
    let ecn = VnetHdr {
        gso_type: GSO_TCPV4 | GSO_ECN,
        gso_size: 5,
        ..VnetHdr::default()
    };
    assert_eq!(classify_rx(&ecn, good.len()).kind, RxKind::Gso);
}
