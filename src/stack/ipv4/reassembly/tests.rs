use super::*;
use crate::stack::ipv4::fragment::fragment_ranges;
use crate::stack::rng::Rng;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr};

const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn key(id: u16) -> FragKey {
    FragKey {
        src: SRC,
        dst: DST,
        id,
        protocol: 1,
    }
}

/// An ICMP echo request of `len` bytes in total (8 header + data).
fn icmp_echo(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len - 8];
    Rng::new(seed).fill(&mut data);
    let repr = Icmpv4Repr::EchoRequest {
        ident: 0x1234,
        seq_no: 7,
        data: &data,
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut Icmpv4Packet::new_unchecked(&mut buf[..]),
        &ChecksumCapabilities::default(),
    );
    buf
}

/// Real IPv4 fragments (20-byte headers) of `payload`, as on the wire.
fn fragments(id: u16, payload: &[u8], mtu: usize) -> Vec<Vec<u8>> {
    fragment_ranges(payload.len(), mtu, 20)
        .map(|(range, more)| {
            let repr = Ipv4Repr {
                src_addr: SRC,
                dst_addr: DST,
                next_header: IpProtocol::Icmp,
                payload_len: range.len(),
                hop_limit: 64,
            };
            let mut buf = vec![0u8; repr.buffer_len() + range.len()];
            let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
            repr.emit(&mut p, &ChecksumCapabilities::default());
            p.set_ident(id);
            p.set_more_frags(more);
            p.set_frag_offset(range.start as u16);
            p.payload_mut().copy_from_slice(&payload[range]);
            p.fill_checksum();
            assert!(buf.len() <= mtu);
            buf
        })
        .collect()
}

/// Parses a frame the way the IPv4 layer will and hands it over.
fn feed(r: &mut Reassembler, now: Instant, frame: &[u8], c: &mut Counters) -> Option<Reassembled> {
    let p = Ipv4Packet::new_checked(frame).expect("valid packet");
    assert!(p.verify_checksum());
    let k = FragKey {
        src: p.src_addr(),
        dst: p.dst_addr(),
        id: p.ident(),
        protocol: p.next_header().into(),
    };
    let hl = p.header_len() as usize;
    r.insert(
        now,
        k,
        p.frag_offset() as usize,
        p.more_frags(),
        &frame[..hl],
        p.payload(),
        c,
    )
}

fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.range(0, i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

/// Feeds `frames` in the given order; asserts that only the last one
/// completes the datagram, and returns it.
fn reassemble_all(r: &mut Reassembler, frames: &[Vec<u8>], c: &mut Counters) -> Reassembled {
    let n = frames.len();
    for (i, f) in frames.iter().enumerate() {
        let out = feed(r, Instant::ZERO, f, c);
        if i + 1 < n {
            assert!(out.is_none(), "completed early at {i}/{n}");
        } else {
            return out.expect("complete after the last fragment");
        }
    }
    unreachable!()
}

fn assert_clean(r: &Reassembler) {
    assert_eq!(r.datagrams(), 0);
    assert_eq!(r.bytes_buffered(), 0);
    assert_eq!(r.bytes_charged(), 0);
    assert_eq!(r.poll_at(), None);
}

#[test]
fn in_order_reverse_and_random_orders_give_identical_payload() {
    let echo = icmp_echo(4000, 1);
    for mtu in [1500, 576, 68] {
        let frames = fragments(42, &echo, mtu);
        assert!(frames.len() >= 3);
        let first_header = frames[0][..20].to_vec();
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let mut c = Counters::new();
        let check = |out: Reassembled, r: &Reassembler| {
            assert_eq!(out.payload, echo);
            assert_eq!(out.header, first_header);
            assert_eq!(out.key, key(42));
            // The result is a valid ICMP echo again.
            let icmp = Icmpv4Packet::new_checked(&out.payload[..]).unwrap();
            assert!(icmp.verify_checksum());
            assert_clean(r);
        };
        check(reassemble_all(&mut r, &frames, &mut c), &r);
        let mut rev = frames.clone();
        rev.reverse();
        check(reassemble_all(&mut r, &rev, &mut c), &r);
        for seed in 0..200 {
            let mut perm = frames.clone();
            shuffle(&mut perm, &mut Rng::new(seed));
            check(reassemble_all(&mut r, &perm, &mut c), &r);
        }
        assert_eq!(c.get("ipv4.frag.reassembled"), 202);
        // Nothing was dropped along the way.
        assert_eq!(c.iter().count(), 1, "{c}");
    }
}

#[test]
fn exact_duplicates_are_ignored() {
    let echo = icmp_echo(4000, 2);
    let frames = fragments(1, &echo, 576);
    for seed in 0..50 {
        let mut rng = Rng::new(seed);
        // Every fragment twice, shuffled; stop at completion (a copy
        // arriving after that would start a new datagram).
        let mut twice: Vec<_> = frames.iter().chain(frames.iter()).cloned().collect();
        shuffle(&mut twice, &mut rng);
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let mut c = Counters::new();
        let mut done = None;
        let mut fed = 0;
        for f in &twice {
            fed += 1;
            if let Some(out) = feed(&mut r, Instant::ZERO, f, &mut c) {
                done = Some(out);
                break;
            }
        }
        assert_eq!(done.expect("completes").payload, echo);
        assert_eq!(c.get("ipv4.frag.duplicate"), (fed - frames.len()) as u64);
        assert_eq!(c.get("ipv4.frag.overlap"), 0);
        assert_clean(&r);
    }
}

#[test]
fn duplicate_spanning_two_fragments_is_ignored() {
    let payload: Vec<u8> = (0..40u8).collect();
    let mut r = Reassembler::new(ReassemblyConfig::default());
    let mut c = Counters::new();
    let h = [0x45u8; 20];
    assert!(
        r.insert(Instant::ZERO, key(1), 0, true, &h, &payload[..8], &mut c)
            .is_none()
    );
    assert!(
        r.insert(Instant::ZERO, key(1), 8, true, &h, &payload[8..16], &mut c)
            .is_none()
    );
    // The same bytes, fragmented differently (e.g. by another router).
    assert!(
        r.insert(Instant::ZERO, key(1), 0, true, &h, &payload[..16], &mut c)
            .is_none()
    );
    assert_eq!(c.get("ipv4.frag.duplicate"), 1);
    assert_eq!(r.datagrams(), 1);
    let out = r.insert(Instant::ZERO, key(1), 16, false, &h, &payload[16..], &mut c);
    assert_eq!(out.unwrap().payload, payload);
}

#[test]
fn partial_overlap_discards_the_datagram() {
    let echo = icmp_echo(4000, 3);
    let frames = fragments(9, &echo, 1500);
    let h = &frames[0][..20];
    let mut r = Reassembler::new(ReassemblyConfig::default());
    let mut c = Counters::new();
    assert!(feed(&mut r, Instant::ZERO, &frames[0], &mut c).is_none());
    // 16 bytes straddling the end of the first fragment (0..1480).
    let out = r.insert(
        Instant::ZERO,
        key(9),
        1472,
        true,
        h,
        &echo[1472..1488],
        &mut c,
    );
    assert!(out.is_none());
    assert_eq!(c.get("ipv4.frag.overlap"), 1);
    assert_clean(&r);
    // The rest cannot complete it any more: the first part is gone.
    for f in &frames[1..] {
        assert!(feed(&mut r, Instant::ZERO, f, &mut c).is_none());
    }
    assert_eq!(r.datagrams(), 1);

    // Same range, different bytes: also an overlap, not a duplicate.
    let mut r = Reassembler::new(ReassemblyConfig::default());
    let mut forged = frames[1].clone();
    let n = forged.len();
    forged[n - 1] ^= 0xff;
    assert!(feed(&mut r, Instant::ZERO, &frames[1], &mut c).is_none());
    assert!(feed(&mut r, Instant::ZERO, &forged, &mut c).is_none());
    assert_eq!(c.get("ipv4.frag.overlap"), 2);
    assert_eq!(c.get("ipv4.frag.duplicate"), 0);
    assert_clean(&r);
}

#[test]
fn teardrop_overlapping_offsets_are_dropped() {
    let h = [0x45u8; 20];
    // (offset, len, more) sequences from teardrop, bonk, nestea-style
    // tools: the second fragment lies inside or across the first.
    let attacks: &[&[(usize, usize, bool)]] = &[
        &[(0, 40, true), (24, 4, false)],
        &[(24, 4, false), (0, 40, true)],
        &[(0, 40, true), (24, 16, true)],
        &[(0, 40, true), (8, 8, true)],
        &[(8, 8, true), (0, 40, true)],
        &[(0, 32, true), (32, 8, true), (16, 24, false)],
        &[(40, 16, false), (0, 48, true)],
    ];
    for (i, steps) in attacks.iter().enumerate() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let mut c = Counters::new();
        for (n, &(off, len, more)) in steps.iter().enumerate() {
            // Different bytes per fragment, as in the real tools.
            let data = vec![n as u8; len];
            let out = r.insert(Instant::ZERO, key(3), off, more, &h, &data, &mut c);
            assert!(out.is_none(), "attack {i} produced a datagram");
        }
        assert_eq!(r.datagrams(), 0, "attack {i}");
        assert_eq!(r.bytes_buffered(), 0, "attack {i}");
        assert_eq!(
            c.get("ipv4.frag.overlap") + c.get("ipv4.frag.conflict"),
            1,
            "attack {i}: {c}"
        );
    }
}

#[test]
fn conflicting_last_fragment_discards_the_datagram() {
    let h = [0x45u8; 20];
    let d = [1u8; 32];
    let mut r = Reassembler::new(ReassemblyConfig::default());
    let mut c = Counters::new();
    // Two different totals.
    r.insert(Instant::ZERO, key(1), 16, false, &h, &d[..8], &mut c);
    r.insert(Instant::ZERO, key(1), 24, false, &h, &d[..8], &mut c);
    assert_eq!(c.get("ipv4.frag.conflict"), 1);
    assert_eq!(r.datagrams(), 0);
    // Data beyond the known end.
    r.insert(Instant::ZERO, key(1), 16, false, &h, &d[..8], &mut c);
    r.insert(Instant::ZERO, key(1), 24, true, &h, &d[..8], &mut c);
    assert_eq!(c.get("ipv4.frag.conflict"), 2);
    assert_eq!(r.datagrams(), 0);
    // A last fragment ending before data already received.
    r.insert(Instant::ZERO, key(1), 24, true, &h, &d[..8], &mut c);
    r.insert(Instant::ZERO, key(1), 8, false, &h, &d[..8], &mut c);
    assert_eq!(c.get("ipv4.frag.conflict"), 3);
    assert_clean(&r);
}

#[test]
fn bad_lengths_and_empty_fragments_are_dropped() {
    let h = [0x45u8; 20];
    let d = [1u8; 32];
    let mut r = Reassembler::new(ReassemblyConfig::default());
    let mut c = Counters::new();
    assert!(
        r.insert(Instant::ZERO, key(1), 0, true, &h, &d[..12], &mut c)
            .is_none()
    );
    assert_eq!(c.get("ipv4.frag.bad_length"), 1);
    assert!(
        r.insert(Instant::ZERO, key(1), 8, true, &h, &[], &mut c)
            .is_none()
    );
    assert!(
        r.insert(Instant::ZERO, key(1), 8, false, &h, &[], &mut c)
            .is_none()
    );
    assert_eq!(c.get("ipv4.frag.empty"), 2);
    assert!(
        r.insert(Instant::ZERO, key(1), 4, false, &h, &d[..4], &mut c)
            .is_none()
    );
    assert_eq!(c.get("ipv4.frag.bad_offset"), 1);
    assert_clean(&r);
    // A last fragment may have any length.
    assert!(
        r.insert(Instant::ZERO, key(1), 8, false, &h, &d[..5], &mut c)
            .is_none()
    );
    let out = r.insert(Instant::ZERO, key(1), 0, true, &h, &d[..8], &mut c);
    assert_eq!(out.unwrap().payload.len(), 13);
}

#[test]
fn unfragmented_packet_passes_straight_through() {
    let mut r = Reassembler::new(ReassemblyConfig::default());
    let mut c = Counters::new();
    let h = [0x45u8; 20];
    let out = r
        .insert(Instant::ZERO, key(5), 0, false, &h, b"hello", &mut c)
        .unwrap();
    assert_eq!(out.payload, b"hello");
    assert_eq!(out.header, h);
    assert_clean(&r);
}

#[test]
fn oversized_datagram_is_discarded() {
    let h = [0x45u8; 20];
    let d = [0u8; 16];
    let mut r = Reassembler::new(ReassemblyConfig::default());
    let mut c = Counters::new();
    r.insert(Instant::ZERO, key(1), 0, true, &h, &d[..8], &mut c);
    assert_eq!(r.datagrams(), 1);
    // Ping of death: 65,528 + 16 > 65,515.
    assert!(
        r.insert(Instant::ZERO, key(1), 65_528, false, &h, &d, &mut c)
            .is_none()
    );
    assert_eq!(c.get("ipv4.frag.oversized"), 1);
    assert_clean(&r);
    // Offsets from a non-wire caller must not overflow either.
    r.insert(Instant::ZERO, key(1), usize::MAX - 3, false, &h, &d, &mut c);
    assert_eq!(c.get("ipv4.frag.oversized"), 2);

    // Exactly at the limit with a 20-byte header: accepted.
    assert!(
        r.insert(Instant::ZERO, key(2), 65_512, false, &h, &d[..3], &mut c)
            .is_none()
    );
    assert_eq!(c.get("ipv4.frag.oversized"), 2);
    assert_eq!(r.datagrams(), 1);
    // The first fragment brings 4 bytes of options: now 65,515 > 65,511.
    let h24 = [0x46u8; 24];
    r.insert(Instant::ZERO, key(2), 0, true, &h24, &d[..8], &mut c);
    assert_eq!(c.get("ipv4.frag.oversized"), 3);
    assert_clean(&r);
    // With the long first header known, later fragments are held to
    // it: 65,512 fits behind 20 bytes but not behind 24.
    r.insert(Instant::ZERO, key(3), 0, true, &h24, &d[..8], &mut c);
    r.insert(Instant::ZERO, key(3), 65_504, false, &h, &d[..8], &mut c);
    assert_eq!(c.get("ipv4.frag.oversized"), 4);
    assert_clean(&r);
    r.insert(Instant::ZERO, key(4), 0, true, &h24, &d[..8], &mut c);
    r.insert(Instant::ZERO, key(4), 65_496, false, &h, &d[..8], &mut c);
    assert_eq!(c.get("ipv4.frag.oversized"), 4);
    assert_eq!(r.datagrams(), 1);
}

#[test]
fn memory_bound_holds_under_a_flood_of_first_fragments() {
    let payload = [0x5a_u8; 1480];
    let h = [0x45u8; 20];
    for config in [
        ReassemblyConfig::default(),
        ReassemblyConfig {
            max_bytes: 64 * 1024,
            max_datagrams: 1000,
            ..Default::default()
        },
    ] {
        let mut r = Reassembler::new(config);
        let mut c = Counters::new();
        for id in 0..10_000u32 {
            let k = FragKey {
                id: id as u16,
                src: Ipv4Addr::from(0x0a00_0000 + id),
                ..key(0)
            };
            let now = Instant::from_millis(id as u64);
            assert!(r.insert(now, k, 0, true, &h, &payload, &mut c).is_none());
            assert!(r.bytes_buffered() <= config.max_bytes);
            assert!(r.bytes_charged() <= config.max_bytes);
            assert!(r.datagrams() <= config.max_datagrams);
            assert!(r.datagrams() >= 1);
        }
        assert_eq!(c.get("ipv4.frag.evicted"), 10_000 - r.datagrams() as u64);
    }
}

#[test]
fn eviction_drops_the_oldest_and_lets_the_newest_complete() {
    let echo = icmp_echo(2000, 4);
    let mut r = Reassembler::new(ReassemblyConfig::default());
    let mut c = Counters::new();
    let per_id: Vec<_> = (0..100u16).map(|id| fragments(id, &echo, 1500)).collect();
    for (t, frames) in per_id.iter().enumerate() {
        feed(&mut r, Instant::from_millis(t as u64), &frames[0], &mut c);
    }
    assert_eq!(r.datagrams(), 64);
    assert_eq!(c.get("ipv4.frag.evicted"), 36);
    assert_eq!(
        r.poll_at(),
        Some(Instant::from_millis(36) + Duration::from_secs(30))
    );
    let newest = feed(&mut r, Instant::from_secs(1), &per_id[99][1], &mut c);
    assert_eq!(newest.unwrap().payload, echo);
    // Id 0 was evicted: its second half starts a new datagram.
    assert!(feed(&mut r, Instant::from_secs(1), &per_id[0][1], &mut c).is_none());
    assert_eq!(r.datagrams(), 64);
    assert_eq!(c.get("ipv4.frag.evicted"), 36);
}

#[test]
fn fragment_too_big_for_the_bound_is_dropped() {
    let h = [0x45u8; 20];
    let config = ReassemblyConfig {
        max_bytes: 1000,
        ..Default::default()
    };
    let mut r = Reassembler::new(config);
    let mut c = Counters::new();
    r.insert(Instant::ZERO, key(1), 0, true, &h, &[0; 504], &mut c);
    assert_eq!(r.datagrams(), 1);
    r.insert(Instant::ZERO, key(2), 0, true, &h, &[0; 1000], &mut c);
    assert_eq!(c.get("ipv4.frag.no_memory"), 1);
    assert_eq!(r.datagrams(), 1, "a hopeless fragment evicts nobody");
    // A datagram that outgrows the bound on its own is given up.
    r.insert(Instant::ZERO, key(1), 504, true, &h, &[0; 504], &mut c);
    assert_eq!(c.get("ipv4.frag.no_memory"), 2);
    assert_clean(&r);
}

#[test]
fn tiny_fragment_far_out_costs_only_its_own_bytes() {
    let h = [0x45u8; 20];
    let mut r = Reassembler::new(ReassemblyConfig::default());
    let mut c = Counters::new();
    r.insert(Instant::ZERO, key(1), 65_000, true, &h, &[1; 8], &mut c);
    assert_eq!(r.bytes_buffered(), 8);
    assert_eq!(r.bytes_charged(), 8 + FRAGMENT_OVERHEAD);
}

#[test]
fn timeout_runs_from_the_first_fragment_on_a_virtual_clock() {
    let echo = icmp_echo(4000, 5);
    let frames = fragments(77, &echo, 1500);
    let mut r = Reassembler::new(ReassemblyConfig::default());
    let mut c = Counters::new();
    let t0 = Instant::ZERO;
    assert_eq!(r.poll_at(), None);
    feed(&mut r, t0, &frames[0], &mut c);
    assert_eq!(r.poll_at(), Some(Instant::from_secs(30)));
    // A later fragment does not restart the timer.
    feed(&mut r, Instant::from_secs(20), &frames[1], &mut c);
    assert_eq!(r.poll_at(), Some(Instant::from_secs(30)));
    assert!(r.expire(Instant::from_millis(29_900), &mut c).is_empty());
    assert_eq!(r.datagrams(), 1);
    assert_eq!(c.get("ipv4.frag.timeout"), 0);
    let expired = r.expire(Instant::from_secs(30), &mut c);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].key, key(77));
    assert_eq!(expired[0].header, frames[0][..20]);
    assert_eq!(expired[0].payload, echo[..8]);
    assert_eq!(c.get("ipv4.frag.timeout"), 1);
    assert_clean(&r);

    // Without the first fragment: dropped silently (RFC 1122 3.3.2).
    feed(&mut r, Instant::from_secs(100), &frames[2], &mut c);
    feed(&mut r, Instant::from_secs(101), &frames[1], &mut c);
    assert_eq!(r.poll_at(), Some(Instant::from_secs(130)));
    assert!(r.expire(Instant::from_secs(131), &mut c).is_empty());
    assert_eq!(c.get("ipv4.frag.timeout"), 2);
    assert_clean(&r);
}

#[test]
fn late_fragment_after_the_deadline_does_not_complete_a_stale_datagram() {
    let echo = icmp_echo(4000, 6);
    let frames = fragments(8, &echo, 1500);
    let mut r = Reassembler::new(ReassemblyConfig::default());
    let mut c = Counters::new();
    feed(&mut r, Instant::ZERO, &frames[0], &mut c);
    feed(&mut r, Instant::ZERO, &frames[1], &mut c);
    // Nobody called expire(); the last piece arrives too late.
    assert!(feed(&mut r, Instant::from_secs(30), &frames[2], &mut c).is_none());
    assert_eq!(c.get("ipv4.frag.timeout"), 1);
    assert_eq!(r.datagrams(), 1);
    assert_eq!(r.poll_at(), Some(Instant::from_secs(60)));
}

#[test]
fn fragment_ranges_round_trip_through_the_reassembler() {
    let mut r = Reassembler::new(ReassemblyConfig::default());
    let mut c = Counters::new();
    let mut id = 0;
    for mtu in [1500, 1006, 577, 576, 69, 68] {
        // 65,515 = the largest payload behind a 20-byte header
        // (UDP: 65,507 data + 8 header).
        for len in [9, 1480, 1481, 4000, 65_507, 65_515] {
            let payload = icmp_echo(len, id as u64);
            let frames = fragments(id, &payload, mtu);
            let mut perm = frames.clone();
            shuffle(&mut perm, &mut Rng::new(id as u64));
            let out = reassemble_all(&mut r, &perm, &mut c);
            assert_eq!(out.payload, payload, "mtu {mtu} len {len}");
            assert_clean(&r);
            id += 1;
        }
    }
    assert_eq!(c.iter().count(), 1, "{c}");
}

/// Random fragments from a seeded generator: never a panic, bounds
/// always hold, and whatever completes is made of bytes that were sent.
#[test]
fn random_fragments_never_panic_and_stay_bounded() {
    let config = ReassemblyConfig {
        max_bytes: 32 * 1024,
        max_datagrams: 8,
        timeout: Duration::from_millis(500),
    };
    let mut all = Counters::new();
    for seed in 0..30 {
        let mut rng = Rng::new(seed);
        let mut r = Reassembler::new(config);
        let mut c = Counters::new();
        let mut now = Instant::ZERO;
        let mut data = vec![0u8; 2048];
        for _ in 0..3000 {
            now += Duration::from_millis(rng.range(0, 20));
            // A few busy keys that can complete, plus a spray of others
            // that fill the table.
            let k = key(if rng.chance(0.8) {
                rng.range(0, 3)
            } else {
                rng.range(3, 40)
            } as u16);
            let offset = match rng.range(0, 8) {
                0 => rng.range(0, 65_536) as usize,
                1 => (rng.range(0, 8192) * 8) as usize,
                2 => rng.range(0, 64) as usize,
                _ => (rng.range(0, 8) * 8) as usize,
            };
            let len = match rng.range(0, 8) {
                0 => rng.range(0, data.len() as u64) as usize,
                1 => rng.range(0, 64) as usize,
                _ => (rng.range(1, 5) * 8) as usize,
            };
            let more = rng.chance(0.7);
            let hlen = [0, 20, 24, 60][rng.range(0, 4) as usize];
            // A constant byte pattern per key, so overlaps often agree.
            let fill = if rng.chance(0.9) { k.id as u8 } else { 0xee };
            data[..len].fill(fill);
            let header = vec![0x45; hlen];
            if let Some(out) = r.insert(now, k, offset, more, &header, &data[..len], &mut c) {
                assert!(out.payload.len() <= MAX_TOTAL_LEN - MIN_HEADER_LEN);
            }
            if rng.chance(0.05) {
                for e in r.expire(now, &mut c) {
                    assert!(e.payload.len() <= 8);
                }
            }
            assert!(r.bytes_buffered() <= r.bytes_charged());
            assert!(r.bytes_charged() <= config.max_bytes);
            assert!(r.datagrams() <= config.max_datagrams);
            assert_eq!(r.poll_at().is_some(), r.datagrams() > 0);
        }
        all.merge(&c);
    }
    // The generator reaches every path, completions included.
    for name in [
        "reassembled",
        "duplicate",
        "overlap",
        "conflict",
        "evicted",
        "timeout",
        "oversized",
    ] {
        let full = format!("ipv4.frag.{name}");
        assert!(all.get(&full) > 0, "{full} never hit:\n{all}");
    }
}
