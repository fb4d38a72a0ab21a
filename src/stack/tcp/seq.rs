//! TCP sequence numbers: 32-bit values compared modulo 2^32 (RFC 9293
//! section 3.4). smoltcp's `TcpSeqNumber` panics when a difference is
//! negative; this type never panics.

use std::cmp::Ordering;
use std::fmt;
use std::ops::{Add, AddAssign, Sub};

#[derive(Copy, Clone, PartialEq, Eq, Hash, Default)]
/// A TCP sequence number; compare with the methods (modulo 2^32), never
/// with `<` on the inner value.
pub struct Seq(pub u32);

impl Seq {
    /// Signed distance `self - other`, correct while the two are less than
    /// 2^31 apart (always true inside one window).
    pub fn diff(self, other: Seq) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// Bytes from `other` up to `self`, zero if `self` is before `other`.
    pub fn distance_from(self, other: Seq) -> usize {
        self.diff(other).max(0) as usize
    }

    /// `self` comes before `other` in sequence space.
    pub fn lt(self, other: Seq) -> bool {
        self.diff(other) < 0
    }
    /// `self` comes before or is `other`.
    pub fn le(self, other: Seq) -> bool {
        self.diff(other) <= 0
    }
    /// `self` comes after `other`.
    pub fn gt(self, other: Seq) -> bool {
        self.diff(other) > 0
    }
    /// `self` comes after or is `other`.
    pub fn ge(self, other: Seq) -> bool {
        self.diff(other) >= 0
    }

    /// The later of the two in sequence space.
    pub fn max(self, other: Seq) -> Seq {
        if self.ge(other) { self } else { other }
    }
    /// The earlier of the two in sequence space.
    pub fn min(self, other: Seq) -> Seq {
        if self.le(other) { self } else { other }
    }

    /// `start <= self < end` in sequence space.
    pub fn in_range(self, start: Seq, end: Seq) -> bool {
        self.ge(start) && self.lt(end)
    }

    /// The same number as smoltcp's type (for building segments with smoltcp).
    pub fn to_smoltcp(self) -> smoltcp::wire::TcpSeqNumber {
        smoltcp::wire::TcpSeqNumber(self.0 as i32)
    }

    /// From smoltcp's type.
    pub fn from_smoltcp(s: smoltcp::wire::TcpSeqNumber) -> Seq {
        Seq(s.0 as u32)
    }
}

impl Add<usize> for Seq {
    type Output = Seq;
    fn add(self, n: usize) -> Seq {
        Seq(self.0.wrapping_add(n as u32))
    }
}

impl AddAssign<usize> for Seq {
    fn add_assign(&mut self, n: usize) {
        self.0 = self.0.wrapping_add(n as u32);
    }
}

impl Sub<usize> for Seq {
    type Output = Seq;
    fn sub(self, n: usize) -> Seq {
        Seq(self.0.wrapping_sub(n as u32))
    }
}

/// Partial order is deliberately not implemented through `PartialOrd`:
/// modular comparison is not transitive, so callers use the named methods.
pub fn cmp(a: Seq, b: Seq) -> Ordering {
    a.diff(b).cmp(&0)
}

impl fmt::Debug for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_wrap_around() {
        let a = Seq(u32::MAX - 10);
        let b = a + 20;
        assert_eq!(b.0, 9);
        assert!(a.lt(b) && b.gt(a));
        assert_eq!(b.diff(a), 20);
        assert_eq!(a.diff(b), -20);
        assert_eq!(a.distance_from(b), 0);
        assert_eq!(b.distance_from(a), 20);
        assert!((a + 5).in_range(a, b));
        assert!(!b.in_range(a, b));
        assert_eq!(a.max(b), b);
        assert_eq!(b - 20, a);
    }
}
