//! Out-of-order receive bookkeeping. Offsets are bytes relative to RCV.NXT.

/// `add` would need more ranges than the bound allows; the caller drops
/// the segment.
#[derive(Debug, PartialEq, Eq)]
pub struct TooManyHoles;

/// Sorted, merged, bounded set of received ranges beyond RCV.NXT.
#[derive(Debug)]
pub struct Assembler {
    ranges: Vec<(usize, usize)>,
    max_ranges: usize,
}

impl Assembler {
    /// `max_ranges` bounds the stored ranges (callers use 32).
    pub fn new(max_ranges: usize) -> Self {
        todo!()
    }

    /// Records that [offset, offset+len) arrived (merging with existing
    /// ranges). Err if it would need more than max_ranges ranges: the
    /// caller then drops the segment.
    pub fn add(&mut self, offset: usize, len: usize) -> Result<(), TooManyHoles> {
        todo!()
    }

    /// If a range starts at offset 0, removes it and returns its length
    /// (RCV.NXT advances by that much); all remaining ranges shift down.
    /// Else 0.
    pub fn remove_front(&mut self) -> usize {
        todo!()
    }

    pub fn is_empty(&self) -> bool {
        todo!()
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        todo!()
    }

    pub fn clear(&mut self) {
        todo!()
    }

    /// (start, end) pairs, sorted.
    pub fn iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.ranges.iter().copied()
    }

    /// Up to `max` SACK blocks (start, end offsets), the block containing
    /// the most recently received segment first, then the other most
    /// recent ones (RFC 2018 section 4).
    pub fn sack_blocks(&self, max: usize) -> Vec<(usize, usize)> {
        todo!()
    }
}
