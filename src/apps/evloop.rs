//! Pieces shared by the event-driven servers (the demo services and the
//! web page): a slab of connections addressed by `Token`, a timer queue,
//! and a log line that reports refusals at most once per second.
//!
//! Each server runs one thread over the stack's `Poll`: a connection costs
//! its own state and buffers, not a thread.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::api::Token;

/// Connections by token. Tokens below `first` are the server's own
/// (listeners); a freed slot is reused, and the generation of each slot
/// lets a stale timer tell that its connection is gone.
pub struct Slab<T> {
    first: usize,
    slots: Vec<(u64, Option<T>)>,
    free: Vec<usize>,
    len: usize,
}

impl<T> Slab<T> {
    /// An empty slab whose tokens start at `first`.
    pub fn new(first: usize) -> Slab<T> {
        Slab {
            first,
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    /// Stores `value`; returns its token and generation.
    pub fn insert(&mut self, value: T) -> (Token, u64) {
        self.len += 1;
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push((0, None));
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[i];
        slot.0 += 1;
        slot.1 = Some(value);
        (Token(i + self.first), slot.0)
    }

    fn index(&self, token: Token) -> Option<usize> {
        token
            .0
            .checked_sub(self.first)
            .filter(|i| *i < self.slots.len())
    }

    /// The value at `token`, whatever its generation.
    pub fn get_mut(&mut self, token: Token) -> Option<&mut T> {
        let i = self.index(token)?;
        self.slots[i].1.as_mut()
    }

    /// The value at `token` if it is still generation `generation`.
    pub fn get_gen_mut(&mut self, token: Token, generation: u64) -> Option<&mut T> {
        let i = self.index(token)?;
        let slot = &mut self.slots[i];
        (slot.0 == generation).then_some(slot.1.as_mut()).flatten()
    }

    /// The generation of the slot at `token` (0 if there is no such slot).
    pub fn generation(&self, token: Token) -> u64 {
        self.index(token).map_or(0, |i| self.slots[i].0)
    }

    /// Removes and returns the value at `token`, freeing its slot for reuse.
    pub fn remove(&mut self, token: Token) -> Option<T> {
        let i = self.index(token)?;
        let value = self.slots[i].1.take()?;
        self.free.push(i);
        self.len -= 1;
        // Give memory back after a burst: trailing free slots are dropped
        // once the slab is mostly empty.
        if self.len * 4 < self.slots.len() && self.slots.len() > 64 {
            while matches!(self.slots.last(), Some((_, None))) {
                self.slots.pop();
            }
            let n = self.slots.len();
            self.free.retain(|i| *i < n);
            self.slots.shrink_to(n * 2);
            self.free.shrink_to(self.free.len() * 2);
        }
        Some(value)
    }

    /// Number of values held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no value is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tokens of every stored value.
    pub fn tokens(&self) -> Vec<Token> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.1.is_some())
            .map(|(i, _)| Token(i + self.first))
            .collect()
    }
}

/// Deadlines of connections: (when, token, generation). A connection
/// keeps at most one live entry by removing its old one when it sets a
/// new one; entries of a freed slot are recognised by their generation.
#[derive(Default)]
pub struct Timers {
    queue: BTreeSet<(Instant, usize, u64)>,
}

impl Timers {
    /// Replaces `old` (if any) with a deadline at `when`; returns the key
    /// the caller keeps to replace or cancel it later.
    pub fn set(
        &mut self,
        old: Option<(Instant, usize, u64)>,
        when: Instant,
        token: Token,
        generation: u64,
    ) -> (Instant, usize, u64) {
        if let Some(old) = old {
            self.queue.remove(&old);
        }
        let key = (when, token.0, generation);
        self.queue.insert(key);
        key
    }

    /// Removes the deadline with this key, if any.
    pub fn cancel(&mut self, key: Option<(Instant, usize, u64)>) {
        if let Some(key) = key {
            self.queue.remove(&key);
        }
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.queue.first().map(|k| k.0)
    }

    /// Removes and returns the next entry due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Token, u64)> {
        let first = *self.queue.first()?;
        if first.0 > now {
            return None;
        }
        self.queue.pop_first();
        Some((Token(first.1), first.2))
    }
}

/// Counts events (refused connections) and logs them at most once per
/// second with the count, instead of a line per event: the first event
/// after a quiet second is logged at once, the rest of its second
/// together when the second is over.
pub struct RateLog {
    what: &'static str,
    /// Events since the last line.
    count: u64,
    /// When the last line was logged, while its second lasts.
    window: Option<Instant>,
}

impl RateLog {
    /// A counter whose log line names the events `what`.
    pub fn new(what: &'static str) -> RateLog {
        RateLog {
            what,
            count: 0,
            window: None,
        }
    }

    /// Counts one event: logged at once after a quiet second, else with
    /// the rest of its second.
    pub fn hit(&mut self, now: Instant) {
        self.count += 1;
        match self.window {
            None => self.flush(now),
            Some(_) => self.tick(now),
        }
    }

    /// Logs what was counted once its second is over (call now and then,
    /// so the last events of a burst are reported too).
    pub fn tick(&mut self, now: Instant) {
        if let Some(start) = self.window
            && now.duration_since(start) >= Duration::from_secs(1)
        {
            self.window = None;
            if self.count > 0 {
                self.flush(now);
            }
        }
    }

    fn flush(&mut self, now: Instant) {
        log::warn!("{}: {}", self.what, self.count);
        self.count = 0;
        self.window = Some(now);
    }

    /// Events counted and not yet logged (for tests).
    pub fn pending(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_reuses_slots_and_guards_generations() {
        let mut s = Slab::new(2);
        let (a, ga) = s.insert("a");
        let (b, _) = s.insert("b");
        assert_eq!((a, b), (Token(2), Token(3)));
        assert_eq!(s.remove(a), Some("a"));
        let (c, gc) = s.insert("c");
        assert_eq!(c, a);
        assert_ne!(gc, ga);
        assert!(s.get_gen_mut(a, ga).is_none());
        assert_eq!(s.get_gen_mut(c, gc), Some(&mut "c"));
        assert!(s.get_mut(Token(0)).is_none());
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn slab_shrinks_after_a_burst() {
        let mut s = Slab::new(1);
        let tokens: Vec<Token> = (0..10_000).map(|i| s.insert(i).0).collect();
        for t in &tokens[..9_990] {
            s.remove(*t);
        }
        assert_eq!(s.len(), 10);
        assert!(s.slots.len() <= 10_000, "{}", s.slots.len());
        for t in &tokens[9_990..] {
            s.remove(*t);
        }
        assert!(s.slots.len() <= 64, "slots kept: {}", s.slots.len());
        assert!(
            s.slots.capacity() <= 128,
            "capacity: {}",
            s.slots.capacity()
        );
    }

    #[test]
    fn timers_pop_in_order_and_replace() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut t = Timers::default();
        let k1 = t.set(None, t0 + ms(30), Token(1), 1);
        t.set(None, t0 + ms(10), Token(2), 1);
        t.set(Some(k1), t0 + ms(5), Token(1), 1);
        assert_eq!(t.next(), Some(t0 + ms(5)));
        assert_eq!(t.pop_due(t0 + ms(20)), Some((Token(1), 1)));
        assert_eq!(t.pop_due(t0 + ms(20)), Some((Token(2), 1)));
        assert_eq!(t.pop_due(t0 + ms(20)), None);
        assert_eq!(t.next(), None);
    }

    #[test]
    fn rate_log_counts_within_a_second() {
        let t0 = Instant::now();
        let mut r = RateLog::new("refused");
        for i in 0..1000 {
            r.hit(t0 + Duration::from_micros(i));
        }
        // The first was logged at once; the rest wait for the second's end.
        assert_eq!(r.pending(), 999);
        r.tick(t0 + Duration::from_millis(500));
        assert_eq!(r.pending(), 999);
        r.tick(t0 + Duration::from_millis(1001));
        assert_eq!(r.pending(), 0);
        // A quiet second later, the next one is logged at once again.
        r.tick(t0 + Duration::from_millis(2500));
        r.hit(t0 + Duration::from_millis(2600));
        assert_eq!(r.pending(), 0);
    }
}
