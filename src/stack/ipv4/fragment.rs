//! Fragmentation on send (RFC 791 section 3.2, "Fragmentation and
//! Reassembly"; RFC 1122 section 3.3.2).

use std::ops::Range;

/// Splits an IP payload of `payload_len` bytes for a link whose MTU is `mtu`
/// and IP header is `header_len` bytes: yields (byte range of the payload,
/// more_fragments flag). Every range except the last has a length that is a
/// multiple of 8 and ≤ mtu - header_len. A payload that fits yields one
/// range with more=false (an empty payload yields `0..0`).
///
/// When the link cannot carry even 8 payload bytes per fragment
/// (`mtu < header_len + 8`) and the payload does not fit, nothing is
/// yielded: the datagram cannot be sent. RFC 791 guarantees mtu ≥ 68 and
/// header ≤ 60, so this only happens on misconfiguration.
pub fn fragment_ranges(
    payload_len: usize,
    mtu: usize,
    header_len: usize,
) -> impl Iterator<Item = (Range<usize>, bool)> {
    let room = mtu.saturating_sub(header_len);
    // Offsets travel in 8-octet units, so every non-last fragment carries a
    // multiple of 8 bytes (RFC 791 "Fragment Offset").
    let step = room & !7;
    let fits = payload_len <= room;
    FragmentRanges {
        pos: 0,
        len: payload_len,
        step: if fits { payload_len.max(1) } else { step },
        done: !fits && step == 0,
    }
}

struct FragmentRanges {
    pos: usize,
    len: usize,
    step: usize,
    done: bool,
}

impl Iterator for FragmentRanges {
    type Item = (Range<usize>, bool);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let end = self.pos.saturating_add(self.step).min(self.len);
        let range = self.pos..end;
        let more = end < self.len;
        self.pos = end;
        self.done = !more;
        Some((range, more))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(len: usize, mtu: usize, hl: usize) -> Vec<(Range<usize>, bool)> {
        fragment_ranges(len, mtu, hl).collect()
    }

    /// The invariants from the doc comment, for any input.
    fn check(len: usize, mtu: usize, hl: usize) {
        let r = ranges(len, mtu, hl);
        assert!(!r.is_empty(), "len {len} mtu {mtu}");
        let mut pos = 0;
        for (i, (range, more)) in r.iter().enumerate() {
            assert_eq!(range.start, pos);
            let last = i + 1 == r.len();
            assert_eq!(*more, !last);
            assert!(range.len() <= mtu.saturating_sub(hl));
            if !last {
                assert_eq!(range.len() % 8, 0);
                assert!(!range.is_empty());
            }
            pos = range.end;
        }
        assert_eq!(pos, len);
    }

    #[test]
    fn exact_boundaries_at_mtu_1500() {
        assert_eq!(ranges(1480, 1500, 20), vec![(0..1480, false)]);
        assert_eq!(
            ranges(1481, 1500, 20),
            vec![(0..1480, true), (1480..1481, false)]
        );
        assert_eq!(ranges(0, 1500, 20), vec![(0..0, false)]);
        // Largest UDP payload: 65,507 + 8 UDP = 65,515 IP payload bytes.
        let r = ranges(65_515, 1500, 20);
        assert_eq!(r.len(), 45);
        assert_eq!(r[0], (0..1480, true));
        assert_eq!(r[43], (63_640..65_120, true));
        assert_eq!(r[44], (65_120..65_515, false));
        let r = ranges(65_507, 1500, 20);
        assert_eq!(r.len(), 45);
        assert_eq!(r[44], (65_120..65_507, false));
        check(65_507, 1500, 20);
    }

    #[test]
    fn odd_mtus_round_down_to_eight() {
        // 576 - 20 = 556 -> 552 per fragment.
        assert_eq!(
            ranges(1200, 576, 20),
            vec![(0..552, true), (552..1104, true), (1104..1200, false)]
        );
        // The RFC 791 minimum: 68 - 60 bytes of header leaves exactly 8.
        let r = ranges(20, 68, 60);
        assert_eq!(r, vec![(0..8, true), (8..16, true), (16..20, false)]);
        // 68 - 20 = 48.
        assert_eq!(
            ranges(100, 68, 20),
            vec![(0..48, true), (48..96, true), (96..100, false)]
        );
        // A payload that fits in an odd room is not split.
        assert_eq!(ranges(555, 577, 20), vec![(0..555, false)]);
        for mtu in [68, 69, 75, 76, 296, 576, 577, 1006, 1280, 1499, 1500, 9000] {
            for len in [0, 1, 7, 8, 9, 47, 48, 49, 1000, 1480, 1481, 9001, 65_515] {
                check(len, mtu, 20);
                check(len, mtu.max(68), 60);
            }
        }
    }

    #[test]
    fn impossible_link_yields_nothing_without_panicking() {
        assert!(ranges(100, 27, 20).is_empty());
        assert!(ranges(100, 10, 20).is_empty());
        assert!(ranges(100, 0, 0).is_empty());
        // ...but a payload that fits still goes out.
        assert_eq!(ranges(5, 27, 20), vec![(0..5, false)]);
        assert_eq!(ranges(0, 0, 20), vec![(0..0, false)]);
        let mut big = fragment_ranges(usize::MAX, 1500, 20);
        assert_eq!(big.next(), Some((0..1480, true)));
        assert_eq!(big.next(), Some((1480..2960, true)));
    }
}
