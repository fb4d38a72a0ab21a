//! Byte ring buffer backing the TCP send and receive buffers.
//!
//! The receive side also parks out-of-order bytes in the free space past
//! the end (`write_at`) and makes them readable once the hole closes
//! (`commit`), so reassembly needs no second copy.

/// Storage of buffers that emptied or closed, lent again to buffers
/// that receive data: a connection holds storage only while it has bytes
/// queued, and a fresh buffer is not allocated (and faulted in) per
/// connection. One per TCP layer, so stacks share no lock. Bounded in
/// count and bytes; the ring never reads bytes it has not written, so old
/// contents are harmless and nothing is zero-filled on reuse.
///
/// Spares that nobody took for a whole period are freed
/// ([`BufferPool::release_idle`]): after a burst the pool would otherwise
/// keep up to `POOL_MAX_BYTES` resident for good (a reused heap chunk is
/// zero-filled whole by calloc, so every page of a spare is resident).
#[derive(Debug, Default)]
pub struct BufferPool {
    spare: Vec<Vec<u8>>,
    bytes: usize,
    /// Fewest spares held since the last `release_idle`: that many sat
    /// unused all along.
    idle: usize,
}

/// Most buffers kept: the buffers busy at once on a loaded stack (a
/// connection busy both ways holds two).
pub const POOL_MAX_BUFFERS: usize = 256;
/// Most bytes kept: 128 buffers of the default 256 KiB.
pub const POOL_MAX_BYTES: usize = 32 << 20;

impl BufferPool {
    /// Storage of exactly `capacity` bytes: a spare one, or a new one
    /// (large allocations come from the OS as zero pages, faulted in as
    /// they are first written).
    fn take(&mut self, capacity: usize) -> Vec<u8> {
        // Most recently returned first (still in cache); the scan is
        // bounded by POOL_MAX_BUFFERS.
        match self.spare.iter().rposition(|v| v.len() == capacity) {
            Some(i) => {
                self.bytes -= capacity;
                let v = self.spare.swap_remove(i);
                self.idle = self.idle.min(self.spare.len());
                v
            }
            None => vec![0; capacity],
        }
    }

    /// Frees as many spares as sat unused since the last call, from the
    /// front (not necessarily those same ones: `take` swap-removes).
    /// Called about once a second, so a
    /// busy stack keeps what it reuses and an idle one keeps nothing.
    /// Returns whether spares remain (a later call may free them).
    pub fn release_idle(&mut self) -> bool {
        let n = self.idle.min(self.spare.len());
        for v in self.spare.drain(..n) {
            self.bytes -= v.len();
        }
        if self.spare.is_empty() {
            // The reserved table goes too: an idle stack holds nothing.
            self.spare = Vec::new();
        }
        self.idle = self.spare.len();
        !self.spare.is_empty()
    }

    fn give(&mut self, storage: Vec<u8>) {
        let n = storage.len();
        if n == 0 || self.spare.len() >= POOL_MAX_BUFFERS || self.bytes + n > POOL_MAX_BYTES {
            return;
        }
        if self.spare.capacity() == 0 {
            // Once, so that lending and returning never allocate.
            self.spare.reserve_exact(POOL_MAX_BUFFERS);
        }
        self.bytes += n;
        self.spare.push(storage);
    }

    /// (buffers, bytes) held for reuse.
    pub fn held(&self) -> (usize, usize) {
        (self.spare.len(), self.bytes)
    }
}

/// A fixed-capacity byte ring. Storage is lent by a [`BufferPool`] while
/// bytes are held and given back when it empties, so idle sockets cost
/// nothing. No method panics: every argument is clipped.
#[derive(Debug, Default)]
pub struct RingBuffer {
    /// Empty while idle, else exactly `capacity` bytes.
    storage: Vec<u8>,
    capacity: usize,
    /// Physical index of the first readable byte.
    head: usize,
    len: usize,
    /// End of the furthest byte written, relative to `head` (`>= len`;
    /// larger when out-of-order bytes are parked): storage with
    /// `written == 0` holds nothing.
    written: usize,
}

impl RingBuffer {
    /// An empty buffer of `capacity` bytes; memory is allocated lazily.
    pub fn new(capacity: usize) -> Self {
        RingBuffer {
            storage: Vec::new(),
            capacity,
            head: 0,
            len: 0,
            written: 0,
        }
    }

    /// Bytes of storage held now (0 or `capacity`).
    pub fn storage_bytes(&self) -> usize {
        self.storage.len()
    }

    /// Takes storage from `pool` unless it has some, before a write.
    pub fn provide(&mut self, pool: &mut BufferPool) {
        if self.storage.len() != self.capacity {
            pool.give(std::mem::take(&mut self.storage));
            self.storage = pool.take(self.capacity);
        }
    }

    /// Gives the storage back to `pool` if it holds no byte (not even a
    /// parked out-of-order one).
    pub fn release_if_idle(&mut self, pool: &mut BufferPool) {
        if self.written == 0 && !self.storage.is_empty() {
            self.release(pool);
        }
    }

    /// Gives the storage back to `pool`, dropping any content (the
    /// buffer's owner is going away).
    pub fn release(&mut self, pool: &mut BufferPool) {
        pool.give(std::mem::take(&mut self.storage));
        self.head = 0;
        self.len = 0;
        self.written = 0;
    }

    /// Most bytes it can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes from the front to the furthest byte written: those held and
    /// out-of-order ones parked beyond them, with the holes between.
    pub fn extent(&self) -> usize {
        self.written
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no byte is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes that can still be enqueued.
    pub fn free(&self) -> usize {
        self.capacity - self.len
    }

    /// Changes the capacity; only allowed while empty, ignored otherwise.
    /// Out-of-order bytes parked with `write_at` are dropped.
    pub fn set_capacity(&mut self, capacity: usize) {
        if self.len != 0 || capacity == self.capacity {
            return;
        }
        // Release the old storage; the next write allocates the new size.
        self.storage = Vec::new();
        self.capacity = capacity;
        self.head = 0;
        self.written = 0;
    }

    /// Appends at the end; returns the number of bytes taken.
    pub fn enqueue(&mut self, data: &[u8]) -> usize {
        let n = self.write_at(0, data);
        self.len += n;
        n
    }

    /// Reads and removes bytes from the front; returns the count.
    pub fn dequeue(&mut self, out: &mut [u8]) -> usize {
        let n = self.peek(0, out);
        self.discard(n)
    }

    /// Copies from `front + offset` without removing; returns the count.
    pub fn peek(&self, offset: usize, out: &mut [u8]) -> usize {
        let (a, b) = self.slices(offset, out.len());
        out[..a.len()].copy_from_slice(a);
        out[a.len()..a.len() + b.len()].copy_from_slice(b);
        a.len() + b.len()
    }

    /// Drops up to `n` bytes from the front (ACKed data); returns the count.
    pub fn discard(&mut self, n: usize) -> usize {
        let n = n.min(self.len);
        if n > 0 {
            self.head = self.wrap(self.head + n);
            self.len -= n;
            self.written -= n;
        }
        n
    }

    /// Writes into free space starting `offset` bytes past the end
    /// (out-of-order data). `len` is unchanged. Returns bytes written,
    /// clipped at capacity.
    pub fn write_at(&mut self, offset: usize, data: &[u8]) -> usize {
        let free = self.free();
        if offset >= free {
            return 0;
        }
        let n = data.len().min(free - offset);
        if n == 0 {
            return 0;
        }
        self.allocate();
        // offset < free <= capacity, so this cannot overflow.
        let start = self.wrap(self.head + self.len + offset);
        let first = n.min(self.capacity - start);
        self.storage[start..start + first].copy_from_slice(&data[..first]);
        self.storage[..n - first].copy_from_slice(&data[first..n]);
        self.written = self.written.max(self.len + offset + n);
        n
    }

    /// Extends `len` by `n` (clipped to free space) over bytes previously
    /// placed with `write_at(0..)`.
    pub fn commit(&mut self, n: usize) {
        let n = n.min(self.free());
        if n > 0 {
            // Committing bytes never written still must not panic later.
            self.allocate();
            self.len += n;
            self.written = self.written.max(self.len);
        }
    }

    /// Zero-copy view of `[offset, offset+len)` of the readable data
    /// (clipped), as two contiguous parts.
    pub fn slices(&self, offset: usize, len: usize) -> (&[u8], &[u8]) {
        if offset >= self.len {
            return (&[], &[]);
        }
        let n = len.min(self.len - offset);
        let start = self.wrap(self.head + offset);
        let first = n.min(self.capacity - start);
        (
            &self.storage[start..start + first],
            &self.storage[..n - first],
        )
    }

    /// Storage for a write that `provide` did not precede (the layer
    /// provides before every write it knows of; this keeps the ring
    /// correct without it).
    fn allocate(&mut self) {
        if self.storage.len() != self.capacity {
            self.storage = vec![0; self.capacity];
        }
    }

    /// Physical index for a logical position `< 2 * capacity`.
    fn wrap(&self, i: usize) -> usize {
        if i >= self.capacity {
            i - self.capacity
        } else {
            i
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::stack::rng::Rng;
    use std::collections::VecDeque;

    #[test]
    fn pool_frees_spares_unused_for_a_period() {
        let mut pool = BufferPool::default();
        for _ in 0..4 {
            pool.give(vec![0; 64]);
        }
        // Added during this period: not idle yet.
        assert!(pool.release_idle());
        assert_eq!(pool.held(), (4, 256));
        // One taken and given back: the other three sat unused.
        let v = pool.take(64);
        pool.give(v);
        assert!(pool.release_idle());
        assert_eq!(pool.held(), (1, 64));
        // Untouched for a period: all of it goes.
        assert!(!pool.release_idle());
        assert_eq!(pool.held(), (0, 0));
        assert_eq!(pool.spare.capacity(), 0);
    }

    fn joined(b: &RingBuffer, offset: usize, len: usize) -> Vec<u8> {
        let (x, y) = b.slices(offset, len);
        [x, y].concat()
    }

    #[test]
    fn allocates_lazily() {
        let mut b = RingBuffer::new(256 * 1024);
        assert_eq!(b.storage.capacity(), 0);
        assert_eq!(b.free(), 256 * 1024);
        assert_eq!(b.enqueue(&[]), 0);
        assert_eq!(b.storage.capacity(), 0);
        assert_eq!(b.enqueue(b"x"), 1);
        assert_eq!(b.storage.len(), 256 * 1024);
    }

    #[test]
    fn wraparound_enqueue_dequeue_peek_discard() {
        let mut b = RingBuffer::new(8);
        assert_eq!(b.enqueue(b"abcdef"), 6);
        let mut out = [0u8; 4];
        assert_eq!(b.dequeue(&mut out), 4);
        assert_eq!(&out, b"abcd");
        // Head at 4, two bytes stored; these six wrap past the end.
        assert_eq!(b.enqueue(b"ghijklmn"), 6);
        assert_eq!(b.len(), 8);
        assert_eq!(b.free(), 0);
        assert_eq!(b.enqueue(b"z"), 0);
        let mut p = [0u8; 5];
        assert_eq!(b.peek(1, &mut p), 5);
        assert_eq!(&p, b"fghij");
        assert_eq!(b.peek(8, &mut p), 0);
        assert_eq!(b.discard(3), 3);
        let mut all = [0u8; 16];
        assert_eq!(b.dequeue(&mut all), 5);
        assert_eq!(&all[..5], b"hijkl");
        assert!(b.is_empty());
        assert_eq!(b.discard(10), 0);
    }

    #[test]
    fn write_at_then_commit_out_of_order() {
        let mut b = RingBuffer::new(10);
        b.enqueue(b"0123456");
        b.discard(6); // head at 6: later writes wrap
        // Segment 2 arrives first, then segment 1 closes the hole.
        assert_eq!(b.write_at(3, b"DEF"), 3);
        assert_eq!(b.len(), 1);
        assert_eq!(b.write_at(0, b"ABC"), 3);
        b.commit(6);
        assert_eq!(joined(&b, 0, 100), b"6ABCDEF");
        // Clipped at capacity: 3 free bytes, offset 1 leaves room for 2.
        assert_eq!(b.write_at(1, b"xyz"), 2);
        assert_eq!(b.write_at(3, b"xyz"), 0);
        assert_eq!(b.write_at(usize::MAX, b"xyz"), 0);
        b.commit(usize::MAX);
        assert_eq!(b.len(), 10);
    }

    #[test]
    fn slices_across_the_wrap() {
        let mut b = RingBuffer::new(8);
        b.enqueue(b"......");
        b.discard(6);
        b.enqueue(b"abcdef"); // "ab" at 6..8, "cdef" wraps to 0..4
        let (x, y) = b.slices(0, 6);
        assert_eq!((x, y), (&b"ab"[..], &b"cdef"[..]));
        let (x, y) = b.slices(1, 3);
        assert_eq!((x, y), (&b"b"[..], &b"cd"[..]));
        let (x, y) = b.slices(3, 100);
        assert_eq!((x, y), (&b"def"[..], &b""[..]));
        assert_eq!(b.slices(6, 1), (&b""[..], &b""[..]));
        assert_eq!(b.slices(usize::MAX, usize::MAX), (&b""[..], &b""[..]));
    }

    #[test]
    fn set_capacity_only_while_empty() {
        let mut b = RingBuffer::new(4);
        b.enqueue(b"ab");
        b.set_capacity(16);
        assert_eq!(b.capacity(), 4);
        b.discard(2);
        b.set_capacity(16);
        assert_eq!(b.capacity(), 16);
        assert_eq!(b.enqueue(&[7; 20]), 16);
        assert_eq!(joined(&b, 0, 16), vec![7; 16]);
    }

    #[test]
    fn zero_capacity_never_panics() {
        let mut b = RingBuffer::new(0);
        assert_eq!(b.enqueue(b"abc"), 0);
        assert_eq!(b.write_at(0, b"abc"), 0);
        b.commit(5);
        assert_eq!(b.dequeue(&mut [0; 4]), 0);
        assert_eq!(b.peek(0, &mut [0; 4]), 0);
        assert_eq!(b.slices(0, 4), (&b""[..], &b""[..]));
    }

    /// Random operations against a `VecDeque` model. `shadow[i]` tracks the
    /// byte `i` past the end (known if placed with `write_at`).
    #[test]
    fn randomized_against_vecdeque_model() {
        let mut rng = Rng::new(0x5eed);
        let mut cap = 37;
        let mut b = RingBuffer::new(cap);
        let mut model: VecDeque<u8> = VecDeque::new();
        let mut shadow: VecDeque<Option<u8>> = vec![None; cap].into();
        for step in 0..10_000 {
            let mut data = vec![0u8; rng.range(0, 50) as usize];
            rng.fill(&mut data);
            let off = rng.range(0, 45) as usize;
            match rng.range(0, 7) {
                0 => {
                    let n = b.enqueue(&data);
                    assert_eq!(n, data.len().min(cap - model.len()), "step {step}");
                    model.extend(&data[..n]);
                    shadow.drain(..n);
                }
                1 => {
                    let mut out = vec![0u8; data.len()];
                    let n = b.dequeue(&mut out);
                    let want: Vec<u8> = model.drain(..n.min(model.len())).collect();
                    assert_eq!(&out[..n], &want[..], "step {step}");
                    assert_eq!(n, data.len().min(want.len() + model.len()));
                    shadow.extend(std::iter::repeat_n(None, n));
                }
                2 => {
                    let mut out = vec![0u8; data.len()];
                    let n = b.peek(off, &mut out);
                    let want: Vec<u8> = model.iter().skip(off).take(out.len()).copied().collect();
                    assert_eq!(&out[..n], &want[..], "step {step}");
                }
                3 => {
                    let n = b.discard(off);
                    assert_eq!(n, off.min(model.len()));
                    model.drain(..n);
                    shadow.extend(std::iter::repeat_n(None, n));
                }
                4 => {
                    let n = b.write_at(off, &data);
                    let free = cap - model.len();
                    assert_eq!(n, data.len().min(free.saturating_sub(off)), "step {step}");
                    for (i, &x) in data[..n].iter().enumerate() {
                        shadow[off + i] = Some(x);
                    }
                }
                5 => {
                    // Commit only what is known, as the engine would.
                    let k = shadow.iter().take_while(|x| x.is_some()).count();
                    let k = k.min(off);
                    b.commit(k);
                    model.extend(shadow.drain(..k).flatten());
                }
                _ => {
                    let (x, y) = b.slices(off, data.len());
                    let want: Vec<u8> = model.iter().skip(off).take(data.len()).copied().collect();
                    assert_eq!([x, y].concat(), want, "step {step}");
                    if model.is_empty() && rng.chance(0.3) {
                        cap = rng.range(0, 64) as usize;
                        b.set_capacity(cap);
                        shadow = vec![None; cap].into();
                    }
                }
            }
            assert_eq!(b.len(), model.len());
            assert_eq!(b.free(), cap - model.len());
            assert_eq!(shadow.len(), b.free());
        }
    }
}
