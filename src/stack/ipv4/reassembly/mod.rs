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

mod datagram;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::stack::counters::Counters;
use crate::stack::time::Instant;
use datagram::{Datagram, Piece};

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
        // A timer that ran out while nobody called `expire` still ends
        // that datagram: never complete one from stale pieces.
        if self.datagrams.get(&key).is_some_and(|d| now >= d.deadline) {
            self.remove(key);
            counters.inc("ipv4.frag.timeout");
        }
        let end = self.end_within_limit(key, offset, header, payload.len(), counters)?;
        if offset == 0 && !more && !self.datagrams.contains_key(&key) {
            return Some(Reassembled {
                key,
                payload: payload.to_vec(),
                header: header.to_vec(),
            });
        }
        if let Err(counter) = fragment_shape(offset, more, payload.len()) {
            counters.inc(counter);
            return None;
        }
        let charge = payload.len() + FRAGMENT_OVERHEAD + if offset == 0 { header.len() } else { 0 };
        let piece = Piece {
            offset,
            end,
            more,
            header,
            payload,
            charge,
        };
        if !self.admit(key, &piece, counters) {
            return None;
        }
        self.bytes += piece.payload.len();
        self.charged += piece.charge;
        let d = self.datagram(now, key);
        d.add(&piece);
        if !d.is_complete() {
            return None;
        }
        let d = self.remove(key)?;
        counters.inc("ipv4.frag.reassembled");
        Some(d.assemble(key))
    }

    /// Where the fragment ends, if the datagram it belongs to stays within
    /// RFC 791's 16-bit total length; one that cannot is dropped with all
    /// its pieces (the "ping of death").
    fn end_within_limit(
        &mut self,
        key: FragKey,
        offset: usize,
        header: &[u8],
        len: usize,
        counters: &mut Counters,
    ) -> Option<usize> {
        let existing = self.datagrams.get(&key);
        // The datagram's header is the offset-0 fragment's; until that
        // arrives, this fragment's header is the best guess.
        let header_len = match existing.and_then(Datagram::header_len) {
            Some(first) if offset != 0 => first,
            _ => header.len(),
        }
        .max(MIN_HEADER_LEN);
        let limit = MAX_TOTAL_LEN.saturating_sub(header_len);
        match offset.checked_add(len) {
            Some(end) if end.max(existing.map_or(0, |d| d.max_end)) <= limit => Some(end),
            _ => {
                self.remove(key);
                counters.inc("ipv4.frag.oversized");
                None
            }
        }
    }

    /// Makes room for `p`: checks it against its datagram (or the bounds
    /// on datagrams for a new one) and evicts the oldest datagrams until
    /// its charge fits. False when it is refused (counted).
    fn admit(&mut self, key: FragKey, p: &Piece, counters: &mut Counters) -> bool {
        if let Some(d) = self.datagrams.get(&key) {
            if let Err(refusal) = d.check(p, self.config.max_bytes) {
                if refusal.discard {
                    self.remove(key);
                }
                counters.inc(refusal.counter);
                return false;
            }
        } else {
            if p.charge > self.config.max_bytes || self.config.max_datagrams == 0 {
                counters.inc("ipv4.frag.no_memory");
                return false;
            }
            while self.datagrams.len() >= self.config.max_datagrams {
                self.evict_oldest(counters);
            }
        }
        while self.charged + p.charge > self.config.max_bytes {
            match self.evict_oldest(counters) {
                // Its earlier pieces are gone; this one alone is useless.
                Some(evicted) if evicted == key => return false,
                Some(_) => {}
                None => {
                    // Unreachable: charge ≤ max_bytes was checked above.
                    counters.inc("ipv4.frag.no_memory");
                    return false;
                }
            }
        }
        true
    }

    /// The datagram under `key`, created with its timer if it is new.
    fn datagram(&mut self, now: Instant, key: FragKey) -> &mut Datagram {
        self.datagrams.entry(key).or_insert_with(|| {
            let deadline = now + self.config.timeout;
            let seq = self.next_seq;
            self.next_seq += 1;
            self.age.insert((deadline, seq), key);
            Datagram::new(deadline, seq)
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
            out.extend(d.expired(key));
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

/// RFC 791's rules for a fragment on its own: it carries data, and
/// offsets count 8-octet units, so only the last fragment may end off an
/// 8-byte boundary. Err is the counter to bump.
fn fragment_shape(offset: usize, more: bool, len: usize) -> Result<(), &'static str> {
    if len == 0 {
        Err("ipv4.frag.empty")
    } else if more && !len.is_multiple_of(8) {
        Err("ipv4.frag.bad_length")
    } else if !offset.is_multiple_of(8) {
        Err("ipv4.frag.bad_offset")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
