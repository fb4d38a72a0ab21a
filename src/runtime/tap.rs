//! Live frame taps: any number of subscribers each get a copy of every
//! frame the link sees, both directions, in a bounded queue of their own.
//!
//! The stack thread never waits for a subscriber: when one's queue is full
//! the frame is dropped for it and counted (`tap.dropped`, and per tap
//! `FrameTap::dropped`). With no subscriber the link only checks that its
//! list is empty. Dropping a `FrameTap` unsubscribes it (the link forgets
//! it at the next frame).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::stack::Counters;

/// Which way a frame crossed the link.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received by the stack (`<` in a trace line).
    In,
    /// Sent by the stack (`>` in a trace line).
    Out,
}

/// One frame as the link saw it (fields public: a copied value record).
#[derive(Clone, Debug)]
pub struct TapFrame {
    /// Wall-clock time the link saw it.
    pub at: SystemTime,
    /// Received or sent.
    pub dir: Direction,
    /// The Ethernet frame, from the destination MAC on.
    pub frame: Vec<u8>,
}

struct Queue {
    frames: VecDeque<TapFrame>,
    /// A reader is blocked in `recv_timeout` (only then is the condition
    /// signalled: a wake per frame would be a system call per frame).
    waiting: bool,
}

struct Inner {
    queue: Mutex<Queue>,
    cond: Condvar,
    capacity: usize,
    dropped: AtomicU64,
    /// The stack stopped: nothing more will come.
    closed: AtomicBool,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A subscription to every frame of a running stack, made by
/// [`crate::Net::frame_tap`]. Frames queue up to the capacity given there;
/// beyond it new frames are dropped and counted.
pub struct FrameTap {
    inner: Arc<Inner>,
}

impl FrameTap {
    /// The next frame, waiting at most `timeout`. `Disconnected` once the
    /// stack has stopped and the queue is empty.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<TapFrame, RecvTimeoutError> {
        let deadline = std::time::Instant::now() + timeout;
        let mut q = self.inner.lock();
        loop {
            if let Some(f) = q.frames.pop_front() {
                return Ok(f);
            }
            if self.inner.closed.load(Ordering::Acquire) {
                return Err(RecvTimeoutError::Disconnected);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(RecvTimeoutError::Timeout);
            }
            q.waiting = true;
            q = self
                .inner
                .cond
                .wait_timeout(q, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            q.waiting = false;
        }
    }

    /// The next frame if one is queued.
    pub fn try_recv(&self) -> Result<TapFrame, TryRecvError> {
        let mut q = self.inner.lock();
        match q.frames.pop_front() {
            Some(f) => Ok(f),
            None if self.inner.closed.load(Ordering::Acquire) => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Frames dropped for this subscriber because its queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

/// The link's list of subscribers.
#[derive(Default)]
pub(crate) struct Taps {
    subs: Vec<Arc<Inner>>,
    counters: Counters,
}

impl Taps {
    /// A new subscriber with room for `capacity` frames (at least 1).
    pub fn subscribe(&mut self, capacity: usize) -> FrameTap {
        let inner = Arc::new(Inner {
            queue: Mutex::new(Queue {
                frames: VecDeque::new(),
                waiting: false,
            }),
            cond: Condvar::new(),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        self.subs.push(inner.clone());
        FrameTap { inner }
    }

    /// Whether anyone subscribes.
    pub fn active(&self) -> bool {
        !self.subs.is_empty()
    }

    /// Copies `frame` to every subscriber; `fill` completes the copy
    /// (checksums) once, before it is shared.
    pub fn publish(&mut self, dir: Direction, frame: &[u8], fill: impl FnOnce(&mut Vec<u8>)) {
        // A subscriber whose FrameTap was dropped holds the only reference.
        self.subs.retain(|s| Arc::strong_count(s) > 1);
        if self.subs.is_empty() {
            return;
        }
        let mut copy = frame.to_vec();
        fill(&mut copy);
        let at = SystemTime::now();
        let last = self.subs.len() - 1;
        for (i, s) in self.subs.iter().enumerate() {
            let mut q = s.lock();
            if q.frames.len() >= s.capacity {
                s.dropped.fetch_add(1, Ordering::Relaxed);
                self.counters.inc("tap.dropped");
                continue;
            }
            let frame = if i == last {
                std::mem::take(&mut copy)
            } else {
                copy.clone()
            };
            q.frames.push_back(TapFrame { at, dir, frame });
            if q.waiting {
                s.cond.notify_one();
            }
        }
    }

    /// The stack stopped: readers get `Disconnected` once they drained
    /// their queue.
    pub fn close(&mut self) {
        for s in self.subs.drain(..) {
            s.closed.store(true, Ordering::Release);
            let _q = s.lock();
            s.cond.notify_all();
        }
    }

    /// `tap.dropped`.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_drops_and_counts_then_unsubscribes_on_drop() {
        let mut taps = Taps::default();
        assert!(!taps.active());
        let tap = taps.subscribe(2);
        for i in 0..5u8 {
            taps.publish(Direction::Out, &[i], |_| {});
        }
        assert_eq!(tap.dropped(), 3);
        assert_eq!(taps.counters().get("tap.dropped"), 3);
        let a = tap.try_recv().unwrap();
        assert_eq!((a.dir, a.frame), (Direction::Out, vec![0]));
        assert_eq!(tap.try_recv().unwrap().frame, vec![1]);
        assert_eq!(tap.try_recv().unwrap_err(), TryRecvError::Empty);
        assert_eq!(
            tap.recv_timeout(Duration::from_millis(5)).unwrap_err(),
            RecvTimeoutError::Timeout
        );
        drop(tap);
        taps.publish(Direction::In, &[9], |_| {});
        assert!(!taps.active());
    }

    #[test]
    fn a_blocked_reader_is_woken_and_close_disconnects() {
        let mut taps = Taps::default();
        let tap = taps.subscribe(8);
        let reader = std::thread::spawn(move || {
            let f = tap.recv_timeout(Duration::from_secs(10));
            (f.map(|f| f.frame), tap)
        });
        // Publish until the reader has it (it may not be waiting yet).
        let t0 = std::time::Instant::now();
        while !reader.is_finished() && t0.elapsed() < Duration::from_secs(10) {
            taps.publish(Direction::In, &[7], |f| f.push(8));
            std::thread::sleep(Duration::from_millis(1));
        }
        let (got, tap) = reader.join().unwrap();
        assert_eq!(got.unwrap(), vec![7, 8]);
        while tap.try_recv().is_ok() {}
        taps.close();
        assert_eq!(tap.try_recv().unwrap_err(), TryRecvError::Disconnected);
    }
}
