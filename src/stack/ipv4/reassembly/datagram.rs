//! One datagram under reassembly: its fragments by offset (never
//! overlapping), what is known of its end, and the checks a new fragment
//! must pass against what is already there (RFC 791, RFC 5722).

use std::collections::BTreeMap;

use super::{FragKey, Reassembled};
use crate::stack::time::Instant;

/// A fragment that passed the checks of its own (offsets, lengths), with
/// what it costs against the memory bound.
pub(super) struct Piece<'a> {
    pub offset: usize,
    /// End of its payload in the datagram.
    pub end: usize,
    /// The MF flag.
    pub more: bool,
    /// Its IP header (kept if it is the offset-0 fragment).
    pub header: &'a [u8],
    pub payload: &'a [u8],
    /// Bytes charged against `max_bytes`.
    pub charge: usize,
}

/// Why a fragment is refused by its datagram: the counter to bump, and
/// whether the whole datagram goes with it.
pub(super) struct Refusal {
    pub counter: &'static str,
    pub discard: bool,
}

#[derive(Debug)]
pub(super) struct Datagram {
    pub deadline: Instant,
    /// Arrival order; breaks deadline ties in `Reassembler::age`.
    pub seq: u64,
    /// Received fragments by offset. Never overlapping.
    chunks: BTreeMap<usize, Vec<u8>>,
    /// Header of the offset-0 fragment, once it has arrived.
    header: Option<Vec<u8>>,
    /// Payload bytes in `chunks`.
    pub received: usize,
    /// What this datagram counts against `max_bytes`.
    pub charged: usize,
    /// End of the payload, known once the last fragment (MF=0) arrived.
    total: Option<usize>,
    /// Highest fragment end seen.
    pub max_end: usize,
}

enum Overlap {
    None,
    /// Every byte is already here with the same value.
    Duplicate,
    /// Overlaps with different bytes or only in part.
    Conflict,
}

impl Datagram {
    /// An empty datagram whose timer runs out at `deadline`.
    pub fn new(deadline: Instant, seq: u64) -> Datagram {
        Datagram {
            deadline,
            seq,
            chunks: BTreeMap::new(),
            header: None,
            received: 0,
            charged: 0,
            total: None,
            max_end: 0,
        }
    }

    /// The offset-0 fragment's header length, once it arrived.
    pub fn header_len(&self) -> Option<usize> {
        self.header.as_ref().map(Vec::len)
    }

    /// Whether `p` may join: its end agrees with what is known of the
    /// datagram's, it does not overlap data already here (an exact
    /// duplicate is ignored; any other overlap discards the datagram, RFC
    /// 5722), and the datagram stays within `max_bytes`.
    pub fn check(&self, p: &Piece, max_bytes: usize) -> Result<(), Refusal> {
        let discard = |counter| {
            Err(Refusal {
                counter,
                discard: true,
            })
        };
        // A second, different last fragment, or data past the announced end.
        let conflict = match (p.more, self.total) {
            (false, Some(total)) => total != p.end,
            (false, None) => self.max_end > p.end,
            (true, Some(total)) => p.end > total,
            (true, None) => false,
        };
        if conflict {
            return discard("ipv4.frag.conflict");
        }
        match self.classify(p.offset, p.payload) {
            Overlap::None => {}
            Overlap::Duplicate => {
                return Err(Refusal {
                    counter: "ipv4.frag.duplicate",
                    discard: false,
                });
            }
            // An attack or a bug: keep nothing of that datagram (teardrop).
            Overlap::Conflict => return discard("ipv4.frag.overlap"),
        }
        if self.charged + p.charge > max_bytes {
            // Could never complete within the bound.
            return discard("ipv4.frag.no_memory");
        }
        Ok(())
    }

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

    /// Stores a piece that passed `check`.
    pub fn add(&mut self, p: &Piece) {
        self.chunks.insert(p.offset, p.payload.to_vec());
        if p.offset == 0 {
            self.header = Some(p.header.to_vec());
        }
        if !p.more {
            self.total = Some(p.end);
        }
        self.max_end = self.max_end.max(p.end);
        self.received += p.payload.len();
        self.charged += p.charge;
    }

    /// No overlaps and nothing past `total`, so byte count == total means
    /// no holes are left.
    pub fn is_complete(&self) -> bool {
        self.total == Some(self.received)
    }

    /// The whole datagram (call once `is_complete`).
    pub fn assemble(self, key: FragKey) -> Reassembled {
        let mut chunks = self.chunks.into_values();
        let mut payload = chunks.next().unwrap_or_default();
        payload.reserve_exact(self.received - payload.len());
        for chunk in chunks {
            payload.extend_from_slice(&chunk);
        }
        Reassembled {
            key,
            payload,
            header: self.header.unwrap_or_default(),
        }
    }

    /// What an ICMP time exceeded quotes of a datagram that timed out: its
    /// first header and up to 8 payload bytes, if the offset-0 fragment
    /// arrived (RFC 792; RFC 1122 3.3.2 says only then).
    pub fn expired(self, key: FragKey) -> Option<Reassembled> {
        let first = self.chunks.get(&0)?;
        Some(Reassembled {
            key,
            payload: first[..first.len().min(8)].to_vec(),
            header: self.header?,
        })
    }
}
