//! SACK scoreboard for the sender (RFC 6675; RFC 2018).
//!
//! Kept as sorted, merged ranges rather than per-segment flags so every
//! query is O(ranges), independent of the window size.

use super::seq::Seq;

/// Upper bound on stored ranges. A receiver reports at most 3-4 blocks per
/// ACK, so more ranges than this only come from a hostile or broken peer;
/// forgetting the highest ones is safe (those bytes are resent).
const MAX_RANGES: usize = 64;

/// RFC 6675 section 2.
const DUP_THRESH: usize = 3;

/// Sorted, merged, bounded SACKed ranges in sequence space.
#[derive(Debug, Default, Clone)]
pub struct Scoreboard {
    /// Half-open `[start, end)`, ascending, neither overlapping nor touching.
    ranges: Vec<(Seq, Seq)>,
}

impl Scoreboard {
    /// An empty scoreboard.
    pub fn new() -> Self {
        Scoreboard { ranges: Vec::new() }
    }

    /// Forgets every SACKed range.
    pub fn clear(&mut self) {
        self.ranges.clear();
    }

    /// Applies the SACK blocks of one ACK. Blocks outside (snd_una,
    /// snd_nxt] or inverted are ignored (also D-SACK blocks below snd_una,
    /// RFC 2883). Returns the number of newly SACKed bytes.
    ///
    /// A block straddling snd_una is clipped to start there.
    pub fn update(&mut self, snd_una: Seq, snd_nxt: Seq, blocks: &[(Seq, Seq)]) -> usize {
        self.advance(snd_una);
        let before = self.sacked_bytes();
        for &(start, end) in blocks {
            // RFC 2018 section 3: a block never covers data not yet sent;
            // RFC 2883: one ending at or below snd_una reports a duplicate.
            if !start.lt(end) || end.gt(snd_nxt) || end.le(snd_una) {
                continue;
            }
            self.insert(start.max(snd_una), end);
        }
        self.ranges.truncate(MAX_RANGES);
        self.sacked_bytes().saturating_sub(before)
    }

    /// Cumulative ACK advanced to snd_una: forget ranges below it.
    pub fn advance(&mut self, snd_una: Seq) {
        self.ranges.retain(|&(_, end)| end.gt(snd_una));
        if let Some(first) = self.ranges.first_mut() {
            first.0 = first.0.max(snd_una);
        }
    }

    /// Whether the byte at `seq` has been SACKed.
    pub fn is_sacked(&self, seq: Seq) -> bool {
        self.ranges.iter().any(|&(s, e)| seq.in_range(s, e))
    }

    /// `[start, end)` lies inside one SACKed range.
    pub fn covers(&self, start: Seq, end: Seq) -> bool {
        let i = self.ranges.partition_point(|&(_, e)| e.le(start));
        self.ranges
            .get(i)
            .is_some_and(|&(s, e)| s.le(start) && end.le(e))
    }

    /// The first un-SACKed stretch of `[start, end)`, if any.
    pub fn first_hole(&self, start: Seq, end: Seq) -> Option<(Seq, Seq)> {
        let mut cursor = start;
        for &(s, e) in &self.ranges {
            if !cursor.lt(end) {
                return None;
            }
            if e.le(cursor) {
                continue;
            }
            if cursor.lt(s) {
                return Some((cursor, s.min(end)));
            }
            cursor = e;
        }
        cursor.lt(end).then_some((cursor, end))
    }

    /// Bytes SACKed in total.
    pub fn sacked_bytes(&self) -> usize {
        self.ranges.iter().map(|&(s, e)| e.distance_from(s)).sum()
    }

    /// How many SACKed ranges there are (each has a hole below it).
    pub fn ranges(&self) -> usize {
        self.ranges.len()
    }

    /// Whether nothing is SACKed.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// End of the highest SACKed range.
    pub fn highest_sacked(&self) -> Option<Seq> {
        self.ranges.last().map(|&(_, e)| e)
    }

    /// RFC 6675 IsLost(SeqNum): true if DupThresh (3) discontiguous SACKed
    /// ranges, or more than (DupThresh-1)*smss SACKed bytes, lie above seq.
    pub fn is_lost(&self, seq: Seq, smss: usize) -> bool {
        let above = seq + 1;
        let (mut count, mut bytes) = (0, 0);
        for &(s, e) in &self.ranges {
            let n = e.distance_from(s.max(above));
            if n > 0 {
                count += 1;
                bytes += n;
            }
        }
        count >= DUP_THRESH || bytes > (DUP_THRESH - 1) * smss
    }

    /// RFC 6675 SetPipe over [snd_una, snd_nxt): bytes not SACKed and not
    /// lost count once; bytes below high_rxt (retransmitted) count again.
    pub fn pipe(&self, snd_una: Seq, snd_nxt: Seq, high_rxt: Seq, smss: usize) -> usize {
        let mut pipe = 0;
        self.for_each_hole(snd_una, snd_nxt, smss, |start, end, lost| {
            if !lost {
                pipe += end.distance_from(start);
            }
            pipe += high_rxt.min(end).distance_from(start);
            true
        });
        pipe
    }

    /// RFC 6675 NextSeg() rule 1 (and rule 3 when `rule3`): the first range
    /// at or above high_rxt that is not SACKed and is lost (rule 1), or not
    /// SACKed at all (rule 3), as (start, len <= smss) below snd_nxt.
    /// Rule 2 (new data) is the caller's.
    ///
    /// Both rules also require the bytes to lie below the highest SACKed
    /// byte (RFC 6675 section 4, condition 1.b).
    pub fn next_seg(
        &self,
        snd_una: Seq,
        snd_nxt: Seq,
        high_rxt: Seq,
        smss: usize,
        rule3: bool,
    ) -> Option<(Seq, usize)> {
        let highest = self.highest_sacked()?;
        let mut found = None;
        self.for_each_hole(snd_una, snd_nxt, smss, |start, end, lost| {
            let start = start.max(high_rxt);
            let end = end.min(highest);
            if !start.lt(end) {
                return true;
            }
            // Lost holes all lie below the others, so the first eligible
            // hole decides both rules.
            if lost || rule3 {
                found = Some((start, end.distance_from(start).min(smss.max(1))));
            }
            false
        });
        found
    }

    /// Merges `[start, end)` into the sorted ranges.
    fn insert(&mut self, start: Seq, end: Seq) {
        let i = self.ranges.partition_point(|&(_, e)| e.lt(start));
        let j = self.ranges.partition_point(|&(s, _)| s.le(end));
        let (mut s, mut e) = (start, end);
        if i < j {
            s = s.min(self.ranges[i].0);
            e = e.max(self.ranges[j - 1].1);
        }
        self.ranges.splice(i..j, std::iter::once((s, e)));
    }

    /// Calls `f(start, end, lost)` for each un-SACKed hole of
    /// [snd_una, snd_nxt) in ascending order until it returns false.
    /// IsLost is constant within a hole (the same ranges lie above every
    /// byte) and monotone (a lower hole has more above it), so one pass
    /// from the top finds the highest lost hole.
    fn for_each_hole(
        &self,
        snd_una: Seq,
        snd_nxt: Seq,
        smss: usize,
        mut f: impl FnMut(Seq, Seq, bool) -> bool,
    ) {
        let mut bytes = 0;
        // Holes directly below ranges[i] for i <= lost_below are lost.
        let mut lost_below = None;
        for (i, &(s, e)) in self.ranges.iter().enumerate().rev() {
            bytes += e.distance_from(s);
            if self.ranges.len() - i >= DUP_THRESH || bytes > (DUP_THRESH - 1) * smss {
                lost_below = Some(i);
                break;
            }
        }
        let mut cursor = snd_una;
        for (i, &(s, e)) in self.ranges.iter().enumerate() {
            let hole_end = s.min(snd_nxt);
            if cursor.lt(hole_end) && !f(cursor, hole_end, lost_below.is_some_and(|t| i <= t)) {
                return;
            }
            cursor = cursor.max(e);
        }
        if cursor.lt(snd_nxt) {
            f(cursor, snd_nxt, false);
        }
    }
}

/// The receiver's pending D-SACK (RFC 2883): the sequence range of the
/// latest duplicate segment, reported once, in the first SACK block of
/// the next segment we send.
#[derive(Debug, Default, Clone, Copy)]
pub struct DsackReport {
    range: Option<(Seq, Seq)>,
}

impl DsackReport {
    /// A duplicate `[start, end)` arrived (RFC 2883 4: the latest one is
    /// the one reported).
    pub fn note(&mut self, start: Seq, end: Seq) {
        if start.lt(end) {
            self.range = Some((start, end));
        }
    }

    /// The block the next ACK will report, if any (not taken).
    pub fn peek(&self) -> Option<(Seq, Seq)> {
        self.range
    }

    /// The block to report now, if any; reported once.
    pub fn take(&mut self) -> Option<(Seq, Seq)> {
        self.range.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::rng::Rng;

    fn blocks(v: &[(u32, u32)]) -> Vec<(Seq, Seq)> {
        v.iter().map(|&(s, e)| (Seq(s), Seq(e))).collect()
    }

    fn ranges(sb: &Scoreboard) -> Vec<(u32, u32)> {
        sb.ranges.iter().map(|&(s, e)| (s.0, e.0)).collect()
    }

    /// una 0, nxt 1000, SACKed 300..400, 500..600, 700..800 (smss 100).
    fn scenario() -> Scoreboard {
        let mut sb = Scoreboard::new();
        let b = blocks(&[(300, 400), (500, 600), (700, 800)]);
        assert_eq!(sb.update(Seq(0), Seq(1000), &b), 300);
        sb
    }

    #[test]
    fn update_merges_and_clips() {
        let (una, nxt) = (Seq(1000), Seq(2000));
        let mut sb = Scoreboard::new();
        assert_eq!(
            sb.update(una, nxt, &blocks(&[(1100, 1200), (1300, 1400)])),
            200
        );
        assert_eq!(sb.update(una, nxt, &blocks(&[(1150, 1350)])), 100);
        assert_eq!(ranges(&sb), [(1100, 1400)]);
        // Touching ranges merge; repeats add nothing.
        assert_eq!(
            sb.update(una, nxt, &blocks(&[(1400, 1500), (1100, 1400)])),
            100
        );
        assert_eq!(ranges(&sb), [(1100, 1500)]);
        // D-SACK below una, beyond nxt, inverted and empty: ignored.
        let junk = blocks(&[(900, 1000), (1900, 2100), (1800, 1700), (1600, 1600)]);
        assert_eq!(sb.update(una, nxt, &junk), 0);
        // Straddling una is clipped to it.
        assert_eq!(sb.update(una, nxt, &blocks(&[(900, 1050)])), 50);
        assert_eq!(ranges(&sb), [(1000, 1050), (1100, 1500)]);
        assert_eq!(sb.sacked_bytes(), 450);
        assert!(sb.is_sacked(Seq(1100)) && !sb.is_sacked(Seq(1500)));
        assert_eq!(sb.highest_sacked(), Some(Seq(1500)));
    }

    #[test]
    fn update_across_sequence_wrap() {
        let una = Seq(u32::MAX - 100);
        let mut sb = Scoreboard::new();
        let b = [(una + 50, una + 150), (una + 150, una + 200)];
        assert_eq!(sb.update(una, una + 1000, &b), 150);
        assert_eq!(ranges(&sb), [((una + 50).0, 99)]);
        assert!(sb.is_sacked(Seq(3)));
    }

    #[test]
    fn ranges_are_bounded() {
        let mut sb = Scoreboard::new();
        for i in 0..200u32 {
            sb.update(Seq(0), Seq(100_000), &blocks(&[(i * 10 + 1, i * 10 + 5)]));
        }
        assert_eq!(sb.ranges.len(), MAX_RANGES);
        assert_eq!(sb.highest_sacked(), Some(Seq(635)));
    }

    #[test]
    fn is_lost_by_three_blocks_or_bytes() {
        let sb = scenario();
        assert!(sb.is_lost(Seq(0), 100)); // 3 discontiguous ranges above
        assert!(sb.is_lost(Seq(299), 100));
        assert!(!sb.is_lost(Seq(450), 100)); // 2 ranges, 200 bytes: not > 200
        assert!(!sb.is_lost(Seq(900), 100));
        // Three tiny blocks (30 bytes): lost by the count rule alone.
        let mut sb = Scoreboard::new();
        sb.update(
            Seq(0),
            Seq(1000),
            &blocks(&[(100, 110), (200, 210), (300, 310)]),
        );
        assert!(sb.is_lost(Seq(50), 100));
        assert!(!sb.is_lost(Seq(150), 100));
        let mut sb = Scoreboard::new();
        sb.update(Seq(0), Seq(1000), &blocks(&[(100, 300)]));
        assert!(!sb.is_lost(Seq(50), 100)); // exactly 2*smss
        sb.update(Seq(0), Seq(1000), &blocks(&[(300, 301)]));
        assert!(sb.is_lost(Seq(50), 100)); // 201 bytes
        assert!(!sb.is_lost(Seq(100), 100)); // only 200 bytes lie above 100
    }

    #[test]
    fn pipe_by_hand() {
        let sb = scenario();
        let (una, nxt) = (Seq(0), Seq(1000));
        // Holes: 0..300 lost; 400..500, 600..700, 800..1000 in flight.
        assert_eq!(sb.pipe(una, nxt, una, 100), 400);
        // 0..100 retransmitted: counts once more.
        assert_eq!(sb.pipe(una, nxt, Seq(100), 100), 500);
        // 0..300 and 400..450 retransmitted.
        assert_eq!(sb.pipe(una, nxt, Seq(450), 100), 750);
        // Larger smss: only 3-range rule applies, same answer.
        assert_eq!(sb.pipe(una, nxt, una, 1000), 400);
        // Empty scoreboard: everything outstanding is in flight.
        assert_eq!(Scoreboard::new().pipe(una, nxt, una, 100), 1000);
    }

    #[test]
    fn pipe_matches_per_byte_definition() {
        let mut rng = Rng::new(9);
        for _ in 0..200 {
            let una = Seq(rng.next_u32());
            let nxt = una + rng.range(1, 400) as usize;
            let mut sb = Scoreboard::new();
            for _ in 0..rng.range(0, 6) {
                let s = una + rng.range(0, 400) as usize;
                sb.update(una, nxt, &[(s, s + rng.range(1, 60) as usize)]);
            }
            let high_rxt = una + rng.range(0, 400) as usize;
            let smss = rng.range(1, 50) as usize;
            let mut want = 0;
            for i in 0..nxt.distance_from(una) {
                let b = una + i;
                if !sb.is_sacked(b) {
                    want += usize::from(!sb.is_lost(b, smss)) + usize::from(b.lt(high_rxt));
                }
            }
            assert_eq!(sb.pipe(una, nxt, high_rxt, smss), want, "{sb:?}");
        }
    }

    #[test]
    fn next_seg_rule1_then_rule3() {
        let sb = scenario();
        let (una, nxt) = (Seq(0), Seq(1000));
        assert_eq!(sb.next_seg(una, nxt, una, 100, false), Some((Seq(0), 100)));
        assert_eq!(
            sb.next_seg(una, nxt, Seq(250), 100, false),
            Some((Seq(250), 50))
        );
        // 400..500 is not lost: rule 1 has nothing, rule 3 offers it.
        assert_eq!(sb.next_seg(una, nxt, Seq(300), 100, false), None);
        assert_eq!(
            sb.next_seg(una, nxt, Seq(300), 100, true),
            Some((Seq(400), 100))
        );
        assert_eq!(
            sb.next_seg(una, nxt, Seq(650), 100, true),
            Some((Seq(650), 50))
        );
        // Above the highest SACKed byte: neither rule (new data is rule 2).
        assert_eq!(sb.next_seg(una, nxt, Seq(800), 100, true), None);
        assert_eq!(Scoreboard::new().next_seg(una, nxt, una, 100, true), None);
    }

    #[test]
    fn advance_forgets_acked_ranges() {
        let mut sb = scenario();
        sb.advance(Seq(350));
        assert_eq!(ranges(&sb), [(350, 400), (500, 600), (700, 800)]);
        assert_eq!(sb.sacked_bytes(), 250);
        sb.advance(Seq(600));
        assert_eq!(ranges(&sb), [(700, 800)]);
        sb.advance(Seq(1000));
        assert!(sb.is_empty());
        let mut sb = scenario();
        sb.clear();
        assert_eq!(sb.highest_sacked(), None);
    }
}
