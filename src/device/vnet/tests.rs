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
const TCP_PSH: u8 = PSH;
const TCP_FIN: u8 = 0x01;
const TCP_CWR: u8 = 0x80;

/// The model of the kernel's segmentation these tests check the
/// coalescer against. Cuts a TCP/IPv4 super-frame into segments of `gso_size` payload bytes
/// the way the kernel's tcp_gso_segment does: each segment gets the
/// super-frame's headers with its own IPv4 total length, ID (+1 per
/// segment) and header checksum, TCP sequence number and checksum; PSH
/// and FIN stay on the last segment only, CWR on the first only. Returns
/// the number of segments given to `out`.
fn split_tcp4(
    frame: &[u8],
    gso_size: usize,
    scratch: &mut Vec<u8>,
    out: &mut dyn FnMut(&[u8]),
) -> Result<usize, &'static str> {
    let t = Tcp4::parse(frame).ok_or("rx.gso_not_tcp4")?;
    if gso_size == 0 {
        return Err("rx.gso_bad_size");
    }
    if t.payload <= gso_size {
        out(frame);
        return Ok(1);
    }
    let hl = t.hdr_len();
    let n = t.payload.div_ceil(gso_size);
    for (i, chunk) in frame[hl..].chunks(gso_size).enumerate() {
        scratch.clear();
        scratch.extend_from_slice(&frame[..hl]);
        scratch.extend_from_slice(chunk);
        let s = &mut scratch[..];
        s[ETH + 2..ETH + 4]
            .copy_from_slice(&((20 + t.tcp_hlen + chunk.len()) as u16).to_be_bytes());
        s[ETH + 4..ETH + 6].copy_from_slice(&t.ident.wrapping_add(i as u16).to_be_bytes());
        s[ETH + 10..ETH + 12].fill(0);
        let ip_sum = !checksum::data(&s[ETH..L4]);
        s[ETH + 10..ETH + 12].copy_from_slice(&ip_sum.to_be_bytes());
        let seq = t.seq.wrapping_add((i * gso_size) as u32);
        s[L4 + 4..L4 + 8].copy_from_slice(&seq.to_be_bytes());
        if i + 1 < n {
            s[L4 + 13] &= !(TCP_PSH | TCP_FIN);
        }
        if i > 0 {
            s[L4 + 13] &= !TCP_CWR;
        }
        s[L4 + 16..L4 + 18].fill(0);
        let src = Ipv4Address::new(s[26], s[27], s[28], s[29]);
        let dst = Ipv4Address::new(s[30], s[31], s[32], s[33]);
        let len = (s.len() - L4) as u32;
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(&src, &dst, IpProtocol::Tcp, len),
            checksum::data(&s[L4..]),
        ]);
        s[L4 + 16..L4 + 18].copy_from_slice(&(!sum).to_be_bytes());
        out(s);
    }
    Ok(n)
}

/// Feeds frames through a coalescer as the runtime does; returns the
/// bytes of every TAP write (virtio-net header included).
fn coalesce(frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    coalesce_with(&mut Coalescer::new(), frames)
}

fn coalesce_with(c: &mut Coalescer, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut writes = Vec::new();
    let mut write = |parts: &[IoSlice<'_>]| {
        writes.push(
            parts
                .iter()
                .flat_map(|p| p.iter().copied())
                .collect::<Vec<u8>>(),
        );
        Ok(0)
    };
    for f in frames {
        if !c.fits(f) {
            c.flush(&mut write, &mut drop).unwrap();
        }
        c.push(f.clone());
    }
    c.flush(&mut write, &mut drop).unwrap();
    writes
}

fn vnet_of(w: &[u8]) -> VnetHdr {
    VnetHdr::from_bytes(w[..VNET_HDR_LEN].try_into().unwrap())
}

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

#[test]
fn three_segments_merge_with_exact_header_fields() {
    let segs = [
        seg(1000, 0x1234, 100, ACK),
        seg(1100, 0x1235, 100, ACK),
        seg(1200, 0x1236, 60, ACK | PSH),
    ];
    let frames: Vec<Vec<u8>> = segs.iter().map(Seg::frame).collect();
    let writes = coalesce(&frames);
    assert_eq!(writes.len(), 1);
    let w = &writes[0];
    // hdr_len 14 + 20 + 32, gso_size 100, checksum from 34, field at +16.
    assert_eq!(
        vnet_of(w),
        VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 66,
            gso_size: 100,
            csum_start: 34,
            csum_offset: 16,
        }
    );
    let f = &w[VNET_HDR_LEN..];
    assert_eq!(f.len(), 66 + 260);
    // Ethernet and the first segment's IP fields, except:
    assert_eq!(f[..ETH + 2], frames[0][..ETH + 2]);
    // total length 20 + 32 + 260 = 312, ID of the first segment,
    assert_eq!(f[ETH + 2..ETH + 6], [0x01, 0x38, 0x12, 0x34]);
    // header checksum by hand: ~(4500+0138+1234+4006+0a00+0002+0a00+0001).
    assert_eq!(f[ETH + 10..ETH + 12], [0x53, 0x8a]);
    // TCP: ports, first sequence number, ACK, offset as the first segment;
    assert_eq!(f[L4..L4 + 13], frames[0][L4..L4 + 13]);
    // the last segment's flags (PSH), the same window;
    assert_eq!(f[L4 + 13], ACK | PSH);
    assert_eq!(f[L4 + 14..L4 + 16], [0x10, 0x00]);
    // checksum field = pseudo-header sum, not inverted:
    // 0a00+0002+0a00+0001+0006+0124 (TCP length 292) = 152d.
    assert_eq!(f[L4 + 16..L4 + 18], [0x15, 0x2d]);
    assert_eq!(f[L4 + 18..66], frames[0][L4 + 18..66]);
    let payload: Vec<u8> = segs.iter().flat_map(|s| s.payload.clone()).collect();
    assert_eq!(f[66..], payload[..]);
    // Completing the partial checksum as the kernel would gives a valid
    // segment.
    let mut whole = f.to_vec();
    complete_checksum(&mut whole, 34, 16);
    assert!(tcp_ok(&whole));
}

#[test]
fn partial_checksums_leave_with_needs_csum_merged_or_not() {
    let mut c = Coalescer::with_partial_tcp_checksums();
    let ack = seg(1, 1, 0, ACK).frame();
    let mut udp = seg(1, 2, 10, ACK).frame();
    udp[ETH + 9] = 17;
    let data: Vec<Vec<u8>> = (0..3)
        .map(|i| seg(1 + i * 100, 3 + i as u16, 100, ACK).frame())
        .collect();
    let mut frames = vec![ack.clone(), udp.clone()];
    frames.extend(data.iter().cloned());
    let w = coalesce_with(&mut c, &frames);
    assert_eq!(w.len(), 3, "ack, udp, one super-frame");
    let single = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_NONE,
        hdr_len: 54,
        gso_size: 0,
        csum_start: 34,
        csum_offset: 16,
    };
    assert_eq!(vnet_of(&w[0]), single);
    assert_eq!(w[0][VNET_HDR_LEN..], ack[..]);
    assert_eq!(vnet_of(&w[1]), VnetHdr::default(), "not TCP: sent as is");
    assert_eq!(vnet_of(&w[2]).gso_type, GSO_TCPV4);
    // After the device refused a super-frame: one write per segment, each
    // still with NEEDS_CSUM.
    c.stop_merging();
    let w = coalesce_with(&mut c, &data);
    assert_eq!(w.len(), 3);
    assert!(
        w.iter().all(|f| vnet_of(f) == single),
        "{:?}",
        vnet_of(&w[0])
    );
    // A fragment cannot have its checksum completed by the kernel.
    let mut frag = data[0].clone();
    frag[ETH + 6] = 0x20; // MF
    assert_eq!(
        vnet_of(&coalesce_with(&mut c, &[frag])[0]),
        VnetHdr::default()
    );
}

#[test]
fn fill_tcp_checksum_makes_any_field_whole_and_leaves_other_frames() {
    let good = seg(1, 9, 301, ACK | PSH).frame();
    assert!(tcp_ok(&good));
    for junk in [[0, 0], [0xff, 0xff], [0x15, 0x2d]] {
        let mut f = good.clone();
        f[L4 + 16..L4 + 18].copy_from_slice(&junk);
        fill_tcp_checksum(&mut f);
        assert_eq!(f, good, "field was {junk:02x?}");
    }
    let mut udp = good.clone();
    udp[ETH + 9] = 17;
    udp[L4 + 16] ^= 1;
    let before = udp.clone();
    fill_tcp_checksum(&mut udp);
    assert_eq!(udp, before);
    // A total length past the frame: left alone, no panic.
    let mut short = good[..good.len() - 10].to_vec();
    let before = short.clone();
    fill_tcp_checksum(&mut short);
    assert_eq!(short, before);
}

#[test]
fn kernel_style_split_gives_back_the_original_frames() {
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
    let writes = coalesce(&frames);
    assert_eq!(writes.len(), 1);
    let w = &writes[0];
    assert_eq!(vnet_of(w).gso_size, 1448);
    let mut back = Vec::new();
    let n = split_tcp4(&w[VNET_HDR_LEN..], 1448, &mut Vec::new(), &mut |s| {
        back.push(s.to_vec())
    })
    .unwrap();
    assert_eq!(n, 44);
    assert_eq!(back, frames);
}

#[test]
fn refuses_gaps_other_flags_and_other_flows() {
    let base = || [seg(1000, 1, 100, ACK), seg(1100, 2, 100, ACK)];
    let merged = |s: &[Seg]| {
        let frames: Vec<Vec<u8>> = s.iter().map(Seg::frame).collect();
        coalesce(&frames).len() == 1
    };
    assert!(merged(&base()));
    type Change = Box<dyn Fn(&mut Seg)>;
    let cases: Vec<(&str, Change)> = vec![
        ("sequence gap", Box::new(|s| s.seq = 1101)),
        ("overlap", Box::new(|s| s.seq = 1099)),
        ("IP ID gap", Box::new(|s| s.ident = 3)),
        ("FIN", Box::new(|s| s.flags = ACK | 0x01)),
        ("RST", Box::new(|s| s.flags = 0x04)),
        ("other port", Box::new(|s| s.dport = 40001)),
        ("other ACK", Box::new(|s| s.ack = 5001)),
        ("other options", Box::new(|s| s.opts[7] = 10)),
        (
            "longer options",
            Box::new(|s| s.opts.extend_from_slice(&[1; 4])),
        ),
        ("bigger segment", Box::new(|s| s.payload.push(0))),
        ("no payload", Box::new(|s| s.payload.clear())),
    ];
    for (what, change) in cases {
        let mut s = base();
        change(&mut s[1]);
        assert!(!merged(&s), "merged across {what}");
    }
    // PSH before the end, a short segment before the end, a bare ACK first.
    let mut s = base();
    s[0].flags = ACK | PSH;
    assert!(!merged(&s), "merged after PSH");
    let s = [seg(1000, 1, 50, ACK), seg(1050, 2, 100, ACK)];
    assert!(!merged(&s), "merged after a short segment");
    let s = [seg(1000, 1, 0, ACK), seg(1000, 2, 100, ACK)];
    assert!(!merged(&s), "merged onto a bare ACK");
    // Window and TTL are per-flow constants too.
    let mut f = base().map(|s| s.frame());
    f[1][L4 + 15] ^= 1;
    fill_checksums(&mut f[1]);
    assert_eq!(coalesce(&f).len(), 2, "merged across a window change");
    let mut f = base().map(|s| s.frame());
    f[1][ETH + 8] = 63;
    fill_checksums(&mut f[1]);
    assert_eq!(coalesce(&f).len(), 2, "merged across a TTL change");
    // A fragment, and ARP, stay alone and are written as they are.
    let mut f = base().map(|s| s.frame());
    f[1][ETH + 6] = 0x20; // MF
    assert_eq!(coalesce(&f).len(), 2);
    let arp = vec![0xffu8; 42];
    let w = coalesce(&[arp.clone(), base()[0].frame()]);
    assert_eq!(w.len(), 2);
    assert_eq!(w[0][..VNET_HDR_LEN], PLAIN);
    assert_eq!(w[0][VNET_HDR_LEN..], arp[..]);
}

#[test]
fn runs_stop_at_64_kib_and_max_segs() {
    // 1448-byte segments: 45 fit in 65,535 - 20 - 32 bytes, the 46th not.
    let frames: Vec<Vec<u8>> = (0..46u32)
        .map(|i| seg(i * 1448, i as u16, 1448, ACK).frame())
        .collect();
    let w = coalesce(&frames);
    assert_eq!(w.len(), 2);
    assert_eq!(w[0].len(), VNET_HDR_LEN + 66 + 45 * 1448);
    assert_eq!(w[1][..VNET_HDR_LEN], PLAIN, "a lone segment is sent as is");
    let frames: Vec<Vec<u8>> = (0..MAX_SEGS as u32 + 1)
        .map(|i| seg(i * 10, i as u16, 10, ACK).frame())
        .collect();
    let w = coalesce(&frames);
    assert_eq!(w.len(), 2);
    assert_eq!(w[0].len(), VNET_HDR_LEN + 66 + MAX_SEGS * 10);
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

#[test]
fn split_sets_per_segment_flags_and_checksums() {
    // CWR on the first segment only, PSH and FIN on the last only.
    let f = seg(100, 0xffff, 25, ACK | PSH | 0x01 | 0x80).frame();
    let mut out = Vec::new();
    let n = split_tcp4(&f, 10, &mut Vec::new(), &mut |s| out.push(s.to_vec())).unwrap();
    assert_eq!(n, 3);
    let flags: Vec<u8> = out.iter().map(|s| s[L4 + 13]).collect();
    assert_eq!(flags, [ACK | 0x80, ACK, ACK | PSH | 0x01]);
    let seqs: Vec<u32> = out.iter().map(|s| be32(s, L4 + 4)).collect();
    assert_eq!(seqs, [100, 110, 120]);
    let ids: Vec<u16> = out.iter().map(|s| be16(s, ETH + 4)).collect();
    assert_eq!(ids, [0xffff, 0, 1]);
    assert!(out.iter().all(|s| tcp_ok(s)));
    let lens: Vec<usize> = out.iter().map(|s| s.len() - 66).collect();
    assert_eq!(lens, [10, 10, 5]);
    assert_eq!(
        split_tcp4(&[0; 60], 10, &mut Vec::new(), &mut |_| {}),
        Err("rx.gso_not_tcp4")
    );
}
