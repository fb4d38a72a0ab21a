//! IPv4 fragment reassembly (RFC 791 section 3.2; RFC 815 for the idea of
//! tracking what is still missing; RFC 5722's "any overlap kills the
//! datagram" rule, which Linux has applied to IPv4 since 4.19).
//!
//! Pure data structure: no I/O, no clock reads; `now` is a parameter.
//!
//! Fragments are kept as they arrive, one buffer per fragment in a map
//! keyed by offset, so memory grows exactly with the data received: a tiny
//! fragment at offset 65,000 costs its own bytes, not 64 KiB. Because
//! overlaps are refused, the buffered fragments never overlap, and the
//! datagram is complete exactly when the byte count equals the total that
//! the last fragment announced (RFC 815's hole list collapses to a count).

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::stack::counters::Counters;
use crate::stack::time::Instant;

/// Maximum IPv4 total length (RFC 791: 16-bit Total Length field).
const MAX_TOTAL_LEN: usize = 65_535;
/// Minimum IPv4 header (IHL = 5).
const MIN_HEADER_LEN: usize = 20;
/// Bookkeeping charged against `max_bytes` for every buffered fragment on
/// top of its payload, so a flood of 8-byte fragments cannot hide its real
/// cost (Linux charges skb truesize for the same reason).
pub const FRAGMENT_OVERHEAD: usize = 64;

/// Identifies the datagram a fragment belongs to (RFC 791: source,
/// destination, protocol and identification).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Identification field.
    pub id: u16,
    /// Protocol field.
    pub protocol: u8,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
/// Bounds on reassembly (`StackConfig::reassembly`); fragments beyond
/// them are dropped and counted.
pub struct ReassemblyConfig {
    /// Bound on buffered bytes across all datagrams: payload plus
    /// `FRAGMENT_OVERHEAD` per fragment plus the saved first header.
    pub max_bytes: usize,
    /// Most datagrams under reassembly at once; a new one beyond it evicts
    /// the oldest.
    pub max_datagrams: usize,
    /// Reassembly timer, started by the first fragment to arrive.
    pub timeout: Duration,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        ReassemblyConfig {
            max_bytes: 4 << 20,
            max_datagrams: 64,
            // RFC 791 suggests 15 s; Linux (ipfrag_time) and we use 30 s.
            timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
/// A datagram put together from its fragments, or (from `expire`) the
/// start of one that timed out, for the ICMP time exceeded error.
pub struct Reassembled {
    /// Which datagram it is.
    pub key: FragKey,
    /// The full reassembled IP payload (from `expire`: up to its first 8
    /// bytes).
    pub payload: Vec<u8>,
    /// The IP header bytes (with options) of the offset-0 fragment, for
    /// ICMP errors.
    pub header: Vec<u8>,
}

#[derive(Debug)]
struct Datagram {
    deadline: Instant,
    /// Arrival order; breaks deadline ties in `Reassembler::age`.
    seq: u64,
    /// Received fragments by offset. Never overlapping.
    chunks: BTreeMap<usize, Vec<u8>>,
    /// Header of the offset-0 fragment, once it has arrived.
    header: Option<Vec<u8>>,
    /// Payload bytes in `chunks`.
    received: usize,
    /// What this datagram counts against `max_bytes`.
    charged: usize,
    /// End of the payload, known once the last fragment (MF=0) arrived.
    total: Option<usize>,
    /// Highest fragment end seen.
    max_end: usize,
}

enum Overlap {
    None,
    /// Every byte is already here with the same value.
    Duplicate,
    /// Overlaps with different bytes or only in part.
    Conflict,
}

impl Datagram {
    fn classify(&self, offset: usize, data: &[u8]) -> Overlap {
        let end = offset + data.len();
        let mut covered = 0;
        let mut same = true;
        let mut any = false;
        // Chunks do not overlap each other, so walking back from the last
        // one starting before `end` visits exactly the overlapping ones.
        for (&start, bytes) in self.chunks.range(..end).rev() {
            let chunk_end = start + bytes.len();
            if chunk_end <= offset {
                break;
            }
            any = true;
            let lo = start.max(offset);
            let hi = chunk_end.min(end);
            covered += hi - lo;
            same &= bytes[lo - start..hi - start] == data[lo - offset..hi - offset];
        }
        match (any, same && covered == data.len()) {
            (false, _) => Overlap::None,
            (true, true) => Overlap::Duplicate,
            (true, false) => Overlap::Conflict,
        }
    }
}

#[derive(Debug)]
/// IPv4 fragment reassembly (RFC 791, holes as in RFC 815) under
/// `ReassemblyConfig` bounds.
pub struct Reassembler {
    config: ReassemblyConfig,
    datagrams: HashMap<FragKey, Datagram>,
    /// Datagrams by (deadline, seq): oldest first, for eviction, expiry and
    /// `poll_at`. All timers have the same length, so deadline order is
    /// arrival order.
    age: BTreeMap<(Instant, u64), FragKey>,
    next_seq: u64,
    /// Payload bytes buffered.
    bytes: usize,
    /// Sum of `Datagram::charged`; kept ≤ `config.max_bytes`.
    charged: usize,
}

impl Reassembler {
    /// An empty reassembler.
    pub fn new(config: ReassemblyConfig) -> Self {
        Reassembler {
            config,
            datagrams: HashMap::new(),
            age: BTreeMap::new(),
            next_seq: 0,
            bytes: 0,
            charged: 0,
        }
    }

    /// One fragment whose IP header was already validated. `offset` is in
    /// bytes (frag_offset*8), `more` is the MF flag, `header` the raw IP
    /// header bytes of this fragment.
    ///
    /// Returns the datagram when this fragment completes it. A packet that
    /// is not a fragment (offset 0, MF=0) comes straight back unless it
    /// collides with a datagram being reassembled under the same key.
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &mut self,
        now: Instant,
        key: FragKey,
        offset: usize,
        more: bool,
        header: &[u8],
        payload: &[u8],
        counters: &mut Counters,
    ) -> Option<Reassembled> {
        let len = payload.len();

        // A timer that ran out while nobody called `expire` still ends
        // that datagram: never complete one from stale pieces.
        if let Some(d) = self.datagrams.get(&key)
            && now >= d.deadline
        {
            self.remove(key);
            counters.inc("ipv4.frag.timeout");
        }
        let existing = self.datagrams.get(&key);

        // The datagram's header is the offset-0 fragment's; until that
        // arrives, this fragment's header is the best guess.
        let header_len = match existing.and_then(|d| d.header.as_ref()) {
            Some(first) if offset != 0 => first.len(),
            _ => header.len(),
        }
        .max(MIN_HEADER_LEN);
        let limit = MAX_TOTAL_LEN.saturating_sub(header_len);
        let end = match offset.checked_add(len) {
            Some(end) if end.max(existing.map_or(0, |d| d.max_end)) <= limit => end,
            // RFC 791 total length is 16 bits: such a datagram can never be
            // valid (the "ping of death").
            _ => {
                self.remove(key);
                counters.inc("ipv4.frag.oversized");
                return None;
            }
        };

        if offset == 0 && !more && existing.is_none() {
            return Some(Reassembled {
                key,
                payload: payload.to_vec(),
                header: header.to_vec(),
            });
        }
        if len == 0 {
            counters.inc("ipv4.frag.empty");
            return None;
        }
        // Offsets count 8-octet units, so only the last fragment may end
        // off an 8-byte boundary (RFC 791).
        if more && !len.is_multiple_of(8) {
            counters.inc("ipv4.frag.bad_length");
            return None;
        }
        if !offset.is_multiple_of(8) {
            counters.inc("ipv4.frag.bad_offset");
            return None;
        }

        let mut charge = len + FRAGMENT_OVERHEAD;
        if offset == 0 {
            charge += header.len();
        }

        if let Some(d) = existing {
            // Conflicting end information: a second, different last
            // fragment, or data past the announced end.
            let conflict = match (more, d.total) {
                (false, Some(total)) => total != end,
                (false, None) => d.max_end > end,
                (true, Some(total)) => end > total,
                (true, None) => false,
            };
            if conflict {
                self.remove(key);
                counters.inc("ipv4.frag.conflict");
                return None;
            }
            match d.classify(offset, payload) {
                Overlap::None => {}
                Overlap::Duplicate => {
                    counters.inc("ipv4.frag.duplicate");
                    return None;
                }
                Overlap::Conflict => {
                    // RFC 5722: overlapping fragments are an attack or a
                    // bug; keep nothing of that datagram (teardrop).
                    self.remove(key);
                    counters.inc("ipv4.frag.overlap");
                    return None;
                }
            }
            if d.charged + charge > self.config.max_bytes {
                // Could never complete within the bound.
                self.remove(key);
                counters.inc("ipv4.frag.no_memory");
                return None;
            }
        } else {
            if charge > self.config.max_bytes || self.config.max_datagrams == 0 {
                counters.inc("ipv4.frag.no_memory");
                return None;
            }
            while self.datagrams.len() >= self.config.max_datagrams {
                self.evict_oldest(counters);
            }
        }

        while self.charged + charge > self.config.max_bytes {
            match self.evict_oldest(counters) {
                Some(evicted) if evicted == key => {
                    // Its earlier pieces are gone; this one alone is useless.
                    return None;
                }
                Some(_) => {}
                None => {
                    // Unreachable: charge ≤ max_bytes was checked above.
                    counters.inc("ipv4.frag.no_memory");
                    return None;
                }
            }
        }

        let d = match self.datagrams.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let deadline = now + self.config.timeout;
                let seq = self.next_seq;
                self.next_seq += 1;
                self.age.insert((deadline, seq), key);
                e.insert(Datagram {
                    deadline,
                    seq,
                    chunks: BTreeMap::new(),
                    header: None,
                    received: 0,
                    charged: 0,
                    total: None,
                    max_end: 0,
                })
            }
        };
        d.chunks.insert(offset, payload.to_vec());
        if offset == 0 {
            d.header = Some(header.to_vec());
        }
        if !more {
            d.total = Some(end);
        }
        d.max_end = d.max_end.max(end);
        d.received += len;
        d.charged += charge;
        self.bytes += len;
        self.charged += charge;

        // No overlaps and nothing past `total`, so byte count == total
        // means no holes are left.
        if d.total != Some(d.received) {
            return None;
        }
        let d = self.remove(key)?;
        let mut chunks = d.chunks.into_values();
        let mut payload = chunks.next().unwrap_or_default();
        payload.reserve_exact(d.received - payload.len());
        for chunk in chunks {
            payload.extend_from_slice(&chunk);
        }
        counters.inc("ipv4.frag.reassembled");
        Some(Reassembled {
            key,
            payload,
            header: d.header.unwrap_or_default(),
        })
    }

    /// Drops datagrams whose timer ran out; returns the expired ones that
    /// had their first fragment (offset 0), so the caller may send ICMP
    /// Time Exceeded (code 1) with that header + first 8 payload bytes
    /// (RFC 792; RFC 1122 section 3.3.2 says only then).
    pub fn expire(&mut self, now: Instant, counters: &mut Counters) -> Vec<Reassembled> {
        let mut out = Vec::new();
        while let Some((&(deadline, _), &key)) = self.age.first_key_value()
            && deadline <= now
        {
            let Some(d) = self.remove(key) else { break };
            counters.inc("ipv4.frag.timeout");
            if let (Some(header), Some(first)) = (d.header, d.chunks.get(&0)) {
                out.push(Reassembled {
                    key,
                    payload: first[..first.len().min(8)].to_vec(),
                    header,
                });
            }
        }
        out
    }

    /// The earliest reassembly deadline, if any datagram is pending.
    pub fn poll_at(&self) -> Option<Instant> {
        self.age.first_key_value().map(|(&(t, _), _)| t)
    }

    /// Payload bytes currently buffered.
    pub fn bytes_buffered(&self) -> usize {
        self.bytes
    }

    /// Incomplete datagrams currently buffered.
    pub fn datagrams(&self) -> usize {
        self.datagrams.len()
    }

    /// Bytes counted against `max_bytes` (payload, per-fragment overhead
    /// and saved headers); always ≥ `bytes_buffered()`.
    pub fn bytes_charged(&self) -> usize {
        self.charged
    }

    fn evict_oldest(&mut self, counters: &mut Counters) -> Option<FragKey> {
        let (_, &key) = self.age.first_key_value()?;
        self.remove(key);
        counters.inc("ipv4.frag.evicted");
        Some(key)
    }

    fn remove(&mut self, key: FragKey) -> Option<Datagram> {
        let d = self.datagrams.remove(&key)?;
        self.age.remove(&(d.deadline, d.seq));
        self.bytes -= d.received;
        self.charged -= d.charged;
        Some(d)
    }
}

#[cfg(test)]
mod tests {
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
    fn feed(
        r: &mut Reassembler,
        now: Instant,
        frame: &[u8],
        c: &mut Counters,
    ) -> Option<Reassembled> {
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
}
