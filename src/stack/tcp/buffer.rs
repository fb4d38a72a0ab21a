//! Byte ring buffer backing the TCP send and receive buffers.

/// A fixed-capacity byte ring. Storage is allocated on the first write so
/// idle sockets cost nothing; no allocation happens after that. No method
/// panics: every argument is clipped.
#[derive(Debug, Default)]
pub struct RingBuffer {
    storage: Vec<u8>,
    capacity: usize,
    head: usize,
    len: usize,
}

impl RingBuffer {
    /// An empty buffer of `capacity` bytes; memory is allocated lazily.
    pub fn new(capacity: usize) -> Self {
        todo!()
    }

    pub fn capacity(&self) -> usize {
        todo!()
    }

    pub fn len(&self) -> usize {
        todo!()
    }

    pub fn is_empty(&self) -> bool {
        todo!()
    }

    /// Bytes that can still be enqueued.
    pub fn free(&self) -> usize {
        todo!()
    }

    /// Changes the capacity; only allowed while empty, ignored otherwise.
    pub fn set_capacity(&mut self, capacity: usize) {
        todo!()
    }

    /// Appends at the end; returns the number of bytes taken.
    pub fn enqueue(&mut self, data: &[u8]) -> usize {
        todo!()
    }

    /// Reads and removes bytes from the front; returns the count.
    pub fn dequeue(&mut self, out: &mut [u8]) -> usize {
        todo!()
    }

    /// Copies from `front + offset` without removing; returns the count.
    pub fn peek(&self, offset: usize, out: &mut [u8]) -> usize {
        todo!()
    }

    /// Drops up to `n` bytes from the front (ACKed data); returns the count.
    pub fn discard(&mut self, n: usize) -> usize {
        todo!()
    }

    /// Writes into free space starting `offset` bytes past the end
    /// (out-of-order data). `len` is unchanged. Returns bytes written,
    /// clipped at capacity.
    pub fn write_at(&mut self, offset: usize, data: &[u8]) -> usize {
        todo!()
    }

    /// Extends `len` by `n` (clipped to free space) over bytes previously
    /// placed with `write_at(0..)`.
    pub fn commit(&mut self, n: usize) {
        todo!()
    }

    /// Zero-copy view of `[offset, offset+len)` of the readable data
    /// (clipped), as two contiguous parts.
    pub fn slices(&self, offset: usize, len: usize) -> (&[u8], &[u8]) {
        todo!()
    }
}
