//! The deadlines of every connection in one binary heap with lazy
//! deletion, so that an event costs O(log n) whatever the number of
//! connections and the earliest deadline is read in O(1).
//!
//! Each connection has one *armed* deadline (its `Tcb::poll_at()`, re-read
//! by the layer after every event). The heap may hold stale entries for
//! it: a deadline that moved earlier pushes a new entry and leaves the old
//! one behind; a deadline that moved later or was cancelled pushes nothing,
//! and the entry is moved or dropped when it reaches the top. The top is
//! kept live after every call, so `next` is exact.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::INDEX_MASK;
use crate::stack::time::Instant;

/// One per slot of the layer's socket table, so kept small (issue 15):
/// `Instant::NEVER` stands for "none" (24 bytes, where two
/// `Option<Instant>` made 40).
#[derive(Copy, Clone, Debug)]
struct Entry {
    /// The raw handle (slot index and generation) the entry is for; a
    /// heap entry with another generation is stale.
    raw: u32,
    /// The deadline that counts (`Instant::NEVER`: none).
    armed: Instant,
    /// The earliest heap entry for `raw` still considered live
    /// (`Instant::NEVER`: none).
    queued: Instant,
}

impl Default for Entry {
    fn default() -> Entry {
        Entry {
            raw: 0,
            armed: Instant::NEVER,
            queued: Instant::NEVER,
        }
    }
}

/// Deadlines keyed by raw socket handle.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u32)>>,
    /// By slot index.
    entries: Vec<Entry>,
    /// Entries with a live heap entry (`queued` set).
    live: usize,
}

/// Stale heap entries allowed beyond twice the live ones before the heap
/// is rebuilt; the rebuild is then paid for by as many pushes.
const SLACK: usize = 64;

impl Timers {
    /// Sets `raw`'s deadline (`None` cancels). A new generation of a slot
    /// replaces the old one's deadline.
    pub fn schedule(&mut self, raw: u32, deadline: Option<Instant>) {
        let deadline = deadline.filter(|d| *d != Instant::NEVER);
        let idx = (raw & INDEX_MASK) as usize;
        if idx >= self.entries.len() {
            if deadline.is_none() {
                return;
            }
            self.entries.resize(idx + 1, Entry::default());
        }
        let e = &mut self.entries[idx];
        if e.raw != raw {
            if e.queued != Instant::NEVER {
                self.live -= 1;
            }
            *e = Entry {
                raw,
                ..Entry::default()
            };
        }
        e.armed = deadline.unwrap_or(Instant::NEVER);
        if let Some(d) = deadline
            && d < e.queued
        {
            if e.queued == Instant::NEVER {
                self.live += 1;
            }
            e.queued = d;
            self.heap.push(Reverse((d, raw)));
        }
        self.prune();
        if self.heap.len() > 2 * self.live + SLACK {
            self.rebuild();
        }
        self.shrink_if_mostly_empty();
    }

    /// Gives back heap storage once the heap holds under a quarter of it
    /// (after a burst of armed timers, e.g. 100,000 connections' RTOs
    /// during their handshakes, idle connections arm none): halving at a
    /// quarter keeps the copies amortised O(1) per push.
    fn shrink_if_mostly_empty(&mut self) {
        let cap = self.heap.capacity();
        if cap > 4 * self.heap.len() + 4 * SLACK {
            self.heap.shrink_to(cap / 2);
        }
    }

    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// A handle whose deadline is at or before `now`, earliest first; its
    /// deadline is disarmed (the caller re-arms it with `schedule`).
    pub fn pop_due(&mut self, now: Instant) -> Option<u32> {
        let &Reverse((t, raw)) = self.heap.peek()?;
        if t > now {
            return None;
        }
        self.heap.pop();
        let e = &mut self.entries[(raw & INDEX_MASK) as usize];
        e.armed = Instant::NEVER;
        e.queued = Instant::NEVER;
        self.live -= 1;
        self.prune();
        self.shrink_if_mostly_empty();
        Some(raw)
    }

    /// Heap entries, stale ones included (bounded by `2 * live + SLACK`).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Makes the top live: drops stale entries, moves entries whose
    /// deadline moved later.
    fn prune(&mut self) {
        while let Some(&Reverse((t, raw))) = self.heap.peek() {
            let e = &mut self.entries[(raw & INDEX_MASK) as usize];
            if e.raw != raw || e.queued != t {
                self.heap.pop();
                continue;
            }
            match e.armed {
                Instant::NEVER => {
                    e.queued = Instant::NEVER;
                    self.live -= 1;
                    self.heap.pop();
                }
                a if a <= t => break,
                a => {
                    e.queued = a;
                    self.heap.pop();
                    self.heap.push(Reverse((a, raw)));
                }
            }
        }
    }

    /// Keeps one entry per live handle: its armed deadline.
    fn rebuild(&mut self) {
        let mut v = std::mem::take(&mut self.heap).into_vec();
        v.clear();
        self.live = 0;
        for e in &mut self.entries {
            e.queued = e.armed;
            if e.armed != Instant::NEVER {
                v.push(Reverse((e.armed, e.raw)));
                self.live += 1;
            }
        }
        self.heap = BinaryHeap::from(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::rng::Rng;
    use std::collections::HashMap;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn drain(t: &mut Timers, now: Instant) -> Vec<u32> {
        std::iter::from_fn(|| t.pop_due(now)).collect()
    }

    #[test]
    fn heap_storage_is_given_back_when_the_timers_are_gone() {
        let mut t = Timers::default();
        for raw in 0..10_000 {
            t.schedule(raw, Some(at(u64::from(raw))));
        }
        assert!(t.heap.capacity() >= 10_000);
        assert_eq!(drain(&mut t, at(20_000)).len(), 10_000);
        assert!(t.heap.capacity() <= 4 * SLACK, "{}", t.heap.capacity());
    }

    #[test]
    fn an_entry_per_slot_stays_small() {
        // One per slot of the socket table: bytes per idle connection.
        assert!(std::mem::size_of::<Entry>() <= 24);
    }

    #[test]
    fn moved_later_does_not_fire_at_the_old_deadline() {
        let mut t = Timers::default();
        t.schedule(1, Some(at(10)));
        t.schedule(2, Some(at(20)));
        t.schedule(1, Some(at(30)));
        assert_eq!(t.next(), Some(at(20)));
        assert_eq!(drain(&mut t, at(25)), vec![2]);
        assert_eq!(t.next(), Some(at(30)));
        assert_eq!(drain(&mut t, at(30)), vec![1]);
        assert_eq!(t.next(), None);
    }

    #[test]
    fn moved_earlier_fires_at_the_new_deadline_once() {
        let mut t = Timers::default();
        t.schedule(1, Some(at(30)));
        t.schedule(1, Some(at(5)));
        assert_eq!(t.next(), Some(at(5)));
        assert_eq!(drain(&mut t, at(5)), vec![1]);
        // The old entry at 30 is stale: nothing fires then.
        assert_eq!(t.next(), None);
        assert_eq!(drain(&mut t, at(100)), Vec::<u32>::new());
    }

    #[test]
    fn cancelled_and_old_generations_never_fire() {
        let mut t = Timers::default();
        let old = 7;
        let new = (1 << super::super::INDEX_BITS) | 7;
        t.schedule(3, Some(at(1)));
        t.schedule(3, None);
        t.schedule(old, Some(at(2)));
        t.schedule(new, Some(at(9)));
        assert_eq!(t.next(), Some(at(9)));
        assert_eq!(drain(&mut t, at(50)), vec![new]);
    }

    /// Random schedules against a map of armed deadlines: `next` is always
    /// the model's minimum, handles come out in deadline order, exactly
    /// the due ones, each once, and stale entries stay bounded.
    #[test]
    fn randomized_against_a_model() {
        let mut rng = Rng::new(0x7177);
        let mut t = Timers::default();
        let mut model: HashMap<u32, Instant> = HashMap::new();
        let mut gens = [0u32; 64];
        let mut now = Instant::ZERO;
        for step in 0..200_000 {
            match rng.range(0, 10) {
                0..=6 => {
                    let idx = rng.range(0, 64) as usize;
                    if rng.chance(0.05) {
                        gens[idx] = (gens[idx] + 1) & 0xfff;
                        let stale = model
                            .keys()
                            .copied()
                            .filter(|r| *r & INDEX_MASK == idx as u32);
                        for r in stale.collect::<Vec<_>>() {
                            model.remove(&r);
                        }
                    }
                    let raw = (gens[idx] << super::super::INDEX_BITS) | idx as u32;
                    let d = (!rng.chance(0.1))
                        .then(|| now + std::time::Duration::from_micros(rng.range(0, 5000)));
                    t.schedule(raw, d);
                    match d {
                        Some(d) => model.insert(raw, d),
                        None => model.remove(&raw),
                    };
                }
                _ => {
                    now += std::time::Duration::from_micros(rng.range(0, 2000));
                    let mut last = Instant::ZERO;
                    while let Some(raw) = t.pop_due(now) {
                        let d = model
                            .remove(&raw)
                            .unwrap_or_else(|| panic!("step {step}: {raw} fired, not armed"));
                        assert!(d <= now && d >= last, "step {step}: out of order");
                        last = d;
                    }
                    assert!(
                        model.values().all(|d| *d > now),
                        "step {step}: a due deadline was lost"
                    );
                }
            }
            assert_eq!(t.next(), model.values().min().copied(), "step {step}");
            assert!(
                t.live <= 64 && t.len() <= 2 * t.live + SLACK,
                "step {step}: {} entries",
                t.len()
            );
        }
    }
}
