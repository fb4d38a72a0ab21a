//! The simulated link: per direction a serialising queue and a delay line,
//! with the one seeded fault model deciding each frame's fate.

use super::*;

#[derive(Clone, Copy, Debug)]
pub(crate) struct LinkConfig {
    /// One-way propagation delay.
    pub(crate) latency: Duration,
    /// Serialisation rate in bits per second (0 = infinite).
    pub(crate) bandwidth: u64,
    /// Loss, duplication, reordering (a frame held back by an extra random
    /// delay of up to twice the latency, so later frames overtake it) and
    /// corruption (the receiver's checksums must catch it: no stack may
    /// act on it), decided by the one fault model; its seed is set per
    /// direction.
    pub(crate) faults: FaultConfig,
}

impl LinkConfig {
    pub(crate) fn faults(loss: f64, dup: f64, reorder: f64) -> LinkConfig {
        LinkConfig {
            latency: Duration::from_millis(1),
            bandwidth: 100_000_000,
            faults: FaultConfig {
                loss,
                dup,
                reorder,
                corrupt: 0.0,
                seed: 0,
            },
        }
    }

    /// The issue-13 fault mix with corruption added.
    pub(crate) fn with_corrupt(mut self, corrupt: f64) -> LinkConfig {
        self.faults.corrupt = corrupt;
        self
    }
}

#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct LinkStats {
    pub(crate) sent: u64,
    /// IPv4 fragments seen (TCP segments should always fit the MTU).
    pub(crate) fragments: u64,
    pub(crate) dropped: u64,
    pub(crate) duplicated: u64,
    pub(crate) reordered: u64,
    pub(crate) corrupted: u64,
}

/// One direction of the link: a serialising queue followed by a delay
/// line, with seeded faults.
pub(crate) struct Dir {
    pub(crate) cfg: LinkConfig,
    pub(crate) model: FaultModel,
    pub(crate) busy_until: Instant,
    pub(crate) order: u64,
    /// (delivery time, order) -> frame index in `frames`.
    pub(crate) queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    pub(crate) frames: Vec<Option<Vec<u8>>>,
    pub(crate) free: Vec<usize>,
    pub(crate) stats: LinkStats,
}

impl Dir {
    pub(crate) fn new(cfg: LinkConfig, seed: u64) -> Dir {
        Dir {
            cfg,
            model: FaultModel::new(FaultConfig { seed, ..cfg.faults }),
            busy_until: Instant::ZERO,
            order: 0,
            queue: BinaryHeap::new(),
            frames: Vec::new(),
            free: Vec::new(),
            stats: LinkStats::default(),
        }
    }

    pub(crate) fn push(&mut self, at: Instant, frame: &[u8]) {
        self.order += 1;
        let idx = match self.free.pop() {
            Some(i) => {
                let slot = self.frames[i].get_or_insert_with(Vec::new);
                slot.clear();
                slot.extend_from_slice(frame);
                i
            }
            None => {
                self.frames.push(Some(frame.to_vec()));
                self.frames.len() - 1
            }
        };
        self.queue.push(Reverse((at, self.order, idx)));
    }

    pub(crate) fn send(&mut self, now: Instant, frame: &[u8]) {
        self.stats.sent += 1;
        // Ethernet type IPv4, then flags+offset at IP bytes 6..8: MF or offset.
        if frame.len() >= 34
            && frame[12..14] == [0x08, 0x00]
            && u16::from_be_bytes([frame[20], frame[21]]) & 0x3fff != 0
        {
            self.stats.fragments += 1;
        }
        let fate = self.model.decide(frame.len());
        // The link's own timing, drawn in the model's seeded sequence.
        let rng = self.model.rng();
        let jitter = rng.range(1, 2 * self.cfg.latency.as_micros() as u64 + 1);
        let dup_gap = rng.range(1, self.cfg.latency.as_micros() as u64 + 1);
        // The frame occupies the wire even if it is lost on the way.
        let start = self.busy_until.max(now);
        // Ethernet preamble + FCS + inter-frame gap: 24 bytes.
        let ser = ((frame.len() as u64 + 24) * 8 * 1_000_000)
            .checked_div(self.cfg.bandwidth)
            .unwrap_or(0);
        self.busy_until = start + Duration::from_micros(ser);
        if fate.lost {
            self.stats.dropped += 1;
            return;
        }
        let mut at = self.busy_until + self.cfg.latency;
        if fate.reordered {
            self.stats.reordered += 1;
            at += Duration::from_micros(jitter);
        }
        let mut damaged;
        let frame = if fate.corrupt.is_some() {
            self.stats.corrupted += 1;
            damaged = frame.to_vec();
            fate.damage(&mut damaged);
            &damaged[..]
        } else {
            frame
        };
        self.push(at, frame);
        if fate.duplicated {
            self.stats.duplicated += 1;
            self.push(at + Duration::from_micros(dup_gap), frame);
        }
    }

    pub(crate) fn next_at(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Pops the next frame due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<usize> {
        if self.next_at()? > now {
            return None;
        }
        let Reverse((_, _, idx)) = self.queue.pop()?;
        Some(idx)
    }

    pub(crate) fn release(&mut self, idx: usize) {
        self.free.push(idx);
    }
}
