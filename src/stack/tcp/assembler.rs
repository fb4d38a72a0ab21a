//! Out-of-order receive bookkeeping. Offsets are bytes relative to RCV.NXT.
//!
//! The bytes themselves live in the receive `RingBuffer` (`write_at`); this
//! only records which ranges past RCV.NXT have arrived, and when, so the
//! receiver can advance RCV.NXT and report SACK blocks (RFC 2018).

/// `add` would need more ranges than the bound allows; the caller drops
/// the segment.
#[derive(Debug, PartialEq, Eq)]
pub struct TooManyHoles;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    start: usize,
    end: usize,
    /// `Assembler::clock` when a segment last landed in this range; orders
    /// SACK blocks by recency (RFC 2018 section 4).
    stamp: u64,
}

/// Sorted, merged, bounded set of received ranges beyond RCV.NXT.
#[derive(Debug)]
pub struct Assembler {
    ranges: Vec<Range>,
    max_ranges: usize,
    clock: u64,
}

impl Assembler {
    /// `max_ranges` bounds the stored ranges (callers use 32).
    pub fn new(max_ranges: usize) -> Self {
        Assembler {
            ranges: Vec::new(),
            max_ranges,
            clock: 0,
        }
    }

    /// Records that [offset, offset+len) arrived (merging with existing
    /// ranges). Err if it would need more than max_ranges ranges: the
    /// caller then drops the segment.
    ///
    /// A range starting at 0 is always accepted even when the bound is
    /// reached: it is in-order data that `remove_front` takes at once, and
    /// refusing it would stall the connection.
    pub fn add(&mut self, offset: usize, len: usize) -> Result<(), TooManyHoles> {
        if len == 0 {
            return Ok(());
        }
        let end = offset.saturating_add(len);
        // Ranges i..j overlap or touch [offset, end] and merge with it.
        let i = self.ranges.partition_point(|r| r.end < offset);
        let j = self.ranges.partition_point(|r| r.start <= end);
        if i == j && offset != 0 && self.ranges.len() >= self.max_ranges {
            return Err(TooManyHoles);
        }
        self.clock += 1;
        let mut merged = Range {
            start: offset,
            end,
            stamp: self.clock,
        };
        if i < j {
            merged.start = merged.start.min(self.ranges[i].start);
            merged.end = merged.end.max(self.ranges[j - 1].end);
        }
        self.ranges.splice(i..j, std::iter::once(merged));
        Ok(())
    }

    /// If a range starts at offset 0, removes it and returns its length
    /// (RCV.NXT advances by that much); all remaining ranges shift down.
    /// Else 0.
    pub fn remove_front(&mut self) -> usize {
        match self.ranges.first() {
            Some(r) if r.start == 0 => {
                let n = r.end;
                self.ranges.remove(0);
                if self.ranges.is_empty() {
                    // The hole is filled: an idle connection keeps no
                    // storage here (issue 15).
                    self.ranges = Vec::new();
                }
                // Remaining ranges start past a hole, so above n.
                for r in &mut self.ranges {
                    r.start -= n;
                    r.end -= n;
                }
                n
            }
            _ => 0,
        }
    }

    /// Whether no out-of-order data is held.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Forgets every range (and frees their storage).
    pub fn clear(&mut self) {
        self.ranges = Vec::new();
    }

    /// Bytes of range storage held now.
    pub fn storage_bytes(&self) -> usize {
        self.ranges.capacity() * std::mem::size_of::<Range>()
    }

    /// (start, end) pairs, sorted.
    pub fn iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.ranges.iter().map(|r| (r.start, r.end))
    }

    /// Up to `max` SACK blocks (start, end offsets), the block containing
    /// the most recently received segment first, then the other most
    /// recent ones (RFC 2018 section 4).
    pub fn sack_blocks(&self, max: usize) -> Vec<(usize, usize)> {
        let mut by_recency: Vec<&Range> = self.ranges.iter().filter(|r| r.start > 0).collect();
        by_recency.sort_unstable_by_key(|r| std::cmp::Reverse(r.stamp));
        by_recency
            .into_iter()
            .take(max)
            .map(|r| (r.start, r.end))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::rng::Rng;

    fn ranges(a: &Assembler) -> Vec<(usize, usize)> {
        a.iter().collect()
    }

    #[test]
    fn in_order_segments_advance_at_once() {
        let mut a = Assembler::new(32);
        assert_eq!(a.add(0, 100), Ok(()));
        assert_eq!(a.remove_front(), 100);
        assert!(a.is_empty());
        assert_eq!(a.remove_front(), 0);
        assert_eq!(a.add(0, 0), Ok(()));
        assert!(a.is_empty());
    }

    #[test]
    fn out_of_order_then_fill_the_hole() {
        let mut a = Assembler::new(32);
        a.add(100, 50).unwrap();
        a.add(200, 10).unwrap();
        assert_eq!(a.remove_front(), 0);
        assert_eq!(ranges(&a), [(100, 150), (200, 210)]);
        a.add(0, 100).unwrap();
        assert_eq!(a.remove_front(), 150);
        assert_eq!(ranges(&a), [(50, 60)]);
    }

    #[test]
    fn merging_overlapping_and_adjacent() {
        let mut a = Assembler::new(32);
        a.add(10, 10).unwrap();
        a.add(30, 10).unwrap();
        a.add(50, 10).unwrap();
        a.add(20, 10).unwrap(); // touches both neighbours
        assert_eq!(ranges(&a), [(10, 40), (50, 60)]);
        a.add(35, 20).unwrap(); // overlaps both
        assert_eq!(ranges(&a), [(10, 60)]);
        a.add(12, 3).unwrap(); // duplicate inside
        a.add(5, 100).unwrap(); // covers everything
        assert_eq!(ranges(&a), [(5, 105)]);
        a.add(usize::MAX - 1, 10).unwrap(); // saturates, no overflow
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn holes_bound_returns_too_many_holes() {
        let mut a = Assembler::new(2);
        a.add(10, 5).unwrap();
        a.add(30, 5).unwrap();
        assert_eq!(a.add(50, 5), Err(TooManyHoles));
        assert_eq!(ranges(&a), [(10, 15), (30, 35)]);
        // Merging needs no new range, so it is still accepted.
        a.add(15, 5).unwrap();
        a.add(35, 20).unwrap();
        // In-order data is accepted past the bound and removed at once.
        a.add(0, 5).unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(a.remove_front(), 5);
        assert_eq!(ranges(&a), [(5, 15), (25, 50)]);
        a.clear();
        assert!(a.is_empty());
    }

    #[test]
    fn sack_blocks_most_recent_first() {
        let mut a = Assembler::new(32);
        a.add(10, 5).unwrap();
        a.add(30, 5).unwrap();
        a.add(50, 5).unwrap();
        a.add(70, 5).unwrap();
        assert_eq!(a.sack_blocks(3), [(70, 75), (50, 55), (30, 35)]);
        a.add(15, 5).unwrap(); // extends the first block: now most recent
        assert_eq!(a.sack_blocks(4), [(10, 20), (70, 75), (50, 55), (30, 35)]);
        a.add(35, 15).unwrap(); // joins 30..35 and 50..55
        assert_eq!(a.sack_blocks(2), [(30, 55), (10, 20)]);
        assert_eq!(a.sack_blocks(0), []);
    }

    /// Random adds and front removals against a bitmap of received bytes.
    #[test]
    fn randomized_against_bitmap() {
        const N: usize = 400;
        let mut rng = Rng::new(42);
        let mut a = Assembler::new(8);
        let mut bits = [false; N];
        for step in 0..10_000 {
            let off = rng.range(0, 300) as usize;
            let len = rng.range(0, 40) as usize;
            let before = ranges(&a);
            match a.add(off, len) {
                Ok(()) => bits[off..off + len].iter_mut().for_each(|b| *b = true),
                Err(TooManyHoles) => assert_eq!(ranges(&a), before, "step {step}"),
            }
            if rng.chance(0.2) {
                let n = a.remove_front();
                assert_eq!(n, bits.iter().take_while(|&&b| b).count());
                bits.copy_within(n.., 0);
                bits[N - n..].iter_mut().for_each(|b| *b = false);
            }
            let mut want = Vec::new();
            let mut i = 0;
            while i < N {
                if bits[i] {
                    let s = i;
                    while i < N && bits[i] {
                        i += 1;
                    }
                    want.push((s, i));
                }
                i += 1;
            }
            assert_eq!(ranges(&a), want, "step {step}");
            let front = usize::from(want.first().is_some_and(|r| r.0 == 0));
            assert!(a.len() <= 8 + front);
        }
    }
}
