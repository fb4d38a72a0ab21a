//! RACK loss detection (RFC 8985 section 6) for SACK connections.
//!
//! Every transmitted segment remembers when it was last sent. A segment is
//! deemed lost once a segment sent after it has been delivered (ACKed or
//! SACKed) and a reordering window has passed. Ordering by transmit time
//! rather than by sequence number is what finds a lost *retransmission*
//! without waiting for the retransmission timer: the retransmission is
//! lost once anything sent after it arrives.
//!
//! The records also give the RFC 6675 pipe: bytes neither SACKed nor
//! marked lost (a retransmission clears the mark: its copy is in flight).

use std::collections::VecDeque;
use std::time::Duration;

use super::sack::Scoreboard;
use super::seq::{Seq, cmp};
use crate::stack::time::Instant;

/// Bound on tracked segments. Full-sized segments never reach it (4096
/// of them exceed any window our buffers allow); tiny ones can, and then
/// new data joins the newest record instead.
const MAX_SEGS: usize = 4096;
/// RFC 8985 6.2 step 4: the DupThresh shortcut to a zero window.
const DUP_THRESH: usize = 3;
/// RFC 8985 6.2 step 4: a D-SACK-grown window lasts 16 recoveries.
const REO_WND_PERSIST: u32 = 16;

#[derive(Clone, Copy, Debug)]
struct SentSeg {
    start: Seq,
    end: Seq,
    /// Segment.xmit_ts: the latest (re)transmission.
    xmit: Instant,
    /// Its place in transmit order (a counter: send times can be equal).
    ord: u64,
    /// Segment.retransmitted.
    rtx: bool,
    /// Segment.lost; a retransmission clears it.
    lost: bool,
    sacked: bool,
}

impl SentSeg {
    fn len(&self) -> usize {
        self.end.distance_from(self.start)
    }

    /// Bytes this record adds to the pipe.
    fn in_flight(&self) -> usize {
        if self.sacked || self.lost {
            0
        } else {
            self.len()
        }
    }
}

/// RFC 8985 RACK_sent_after(). The RFC breaks ties between equal send
/// times by sequence number, which misorders a retransmission sent in the
/// same clock tick as new data above it; a transmit counter cannot.
fn sent_after(ord1: u64, ord2: u64) -> bool {
    ord1 > ord2
}

/// Outcome of one RACK_detect_loss() pass.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Detected {
    /// Segments newly marked lost.
    pub lost: u64,
    /// Of those, retransmissions lost again.
    pub lost_rtx: u64,
    /// When the reordering timer must fire for segments still inside the
    /// reordering window.
    pub timer: Option<Instant>,
}

/// RACK state (RFC 8985 section 5.2) and the per-segment records.
#[derive(Debug)]
pub struct Rack {
    /// Records covering [SND.UNA, SND.MAX) in sequence order.
    segs: VecDeque<SentSeg>,
    /// RACK.xmit_ts / RACK.end_seq as a transmit order: the most
    /// recently sent segment known to be delivered.
    latest: Option<u64>,
    /// Transmissions so far (the next `ord`).
    sent: u64,
    /// RACK.rtt: the RTT of that segment.
    rtt: Duration,
    /// RACK.min_RTT (over the connection, from unambiguous samples).
    min_rtt: Option<Duration>,
    /// RACK.fack: the highest end sequence delivered.
    fack: Option<Seq>,
    reordering_seen: bool,
    reo_wnd_mult: u32,
    reo_wnd_persist: u32,
    dsack_round: Option<Seq>,
    /// The RACK reordering timer (RFC 8985 6.2 step 5 / 6.3).
    pub timer: Option<Instant>,
    /// RACK.xmit_ts moved since the last detection pass.
    advanced: bool,
    /// Latest-sent segment delivered by the ACK being processed, with its
    /// RTT (step 2 runs over the ACK's segments in transmit order; the
    /// last one's values are what remain).
    batch: Option<(u64, Duration)>,
    in_flight: usize,
    lost_segs: usize,
    sacked_segs: usize,
}

impl Default for Rack {
    fn default() -> Self {
        Rack::new()
    }
}

impl Rack {
    pub fn new() -> Rack {
        Rack {
            segs: VecDeque::new(),
            latest: None,
            sent: 0,
            rtt: Duration::ZERO,
            min_rtt: None,
            fack: None,
            reordering_seen: false,
            reo_wnd_mult: 1,
            reo_wnd_persist: 0,
            dsack_round: None,
            timer: None,
            advanced: false,
            batch: None,
            in_flight: 0,
            lost_segs: 0,
            sacked_segs: 0,
        }
    }

    /// RFC 6675 pipe: bytes neither SACKed nor lost.
    pub fn pipe(&self) -> usize {
        self.in_flight
    }

    pub fn has_lost(&self) -> bool {
        self.lost_segs > 0
    }

    /// Index of the first record ending after `seq`.
    fn index(&self, seq: Seq) -> usize {
        self.segs.partition_point(|r| r.end.le(seq))
    }

    /// `[start, end)` left at `now`; `snd_max` is SND.MAX before it.
    pub fn on_send(&mut self, start: Seq, end: Seq, snd_max: Seq, now: Instant) {
        if start.lt(snd_max) {
            self.mark_rtx(start, end.min(snd_max), now);
        }
        let new = start.max(snd_max);
        if new.lt(end) {
            self.push_new(new, end, now);
        }
    }

    fn push_new(&mut self, start: Seq, end: Seq, now: Instant) {
        self.sent += 1;
        let rec = SentSeg {
            start,
            end,
            xmit: now,
            ord: self.sent,
            rtx: false,
            lost: false,
            sacked: false,
        };
        if self.segs.len() < MAX_SEGS {
            self.in_flight += rec.len();
            self.segs.push_back(rec);
            return;
        }
        let last = self.segs.back().copied().expect("MAX_SEGS > 0");
        self.uncount(&last);
        let merged = SentSeg {
            start: last.start,
            ..rec
        };
        self.count(&merged);
        *self.segs.back_mut().expect("not empty") = merged;
    }

    /// A retransmission of `[start, end)`: new transmit time, in flight
    /// again (RFC 8985 6.1 Segment.xmit_ts, Segment.retransmitted).
    fn mark_rtx(&mut self, start: Seq, end: Seq, now: Instant) {
        self.split(start);
        self.split(end);
        let mut i = self.index(start);
        self.sent += 1;
        while let Some(r) = self.segs.get(i).copied() {
            if !r.start.lt(end) {
                break;
            }
            if !r.sacked {
                self.uncount(&r);
                let r2 = SentSeg {
                    xmit: now,
                    ord: self.sent,
                    rtx: true,
                    lost: false,
                    ..r
                };
                self.count(&r2);
                self.segs[i] = r2;
            }
            i += 1;
        }
    }

    /// Splits the record holding `at` so a record starts there (skipped
    /// at the bound: the whole record then takes the new state).
    fn split(&mut self, at: Seq) {
        let i = self.index(at);
        let Some(r) = self.segs.get(i).copied() else {
            return;
        };
        if !r.start.lt(at) || self.segs.len() >= MAX_SEGS {
            return;
        }
        self.segs[i].end = at;
        self.segs.insert(i + 1, SentSeg { start: at, ..r });
        self.lost_segs += usize::from(r.lost);
        self.sacked_segs += usize::from(r.sacked);
    }

    fn count(&mut self, r: &SentSeg) {
        self.in_flight += r.in_flight();
        self.lost_segs += usize::from(r.lost);
        self.sacked_segs += usize::from(r.sacked);
    }

    fn uncount(&mut self, r: &SentSeg) {
        self.in_flight -= r.in_flight();
        self.lost_segs -= usize::from(r.lost);
        self.sacked_segs -= usize::from(r.sacked);
    }

    /// Cumulative ACK up to `una`. Returns an RTT sample for the RFC 6298
    /// estimator: from the oldest newly ACKed segment, and only when none
    /// of the newly ACKed segments was retransmitted (Karn; as Linux).
    /// `echo_before(t)`: the ACK's TSecr predates time `t`.
    pub fn on_cum_ack(
        &mut self,
        una: Seq,
        now: Instant,
        echo_before: &dyn Fn(Instant) -> bool,
    ) -> Option<Duration> {
        let (mut sample, mut ambiguous) = (None, false);
        while let Some(r) = self.segs.front().copied() {
            if !r.end.le(una) {
                if r.start.lt(una) {
                    // Partly ACKed: the rest stays outstanding.
                    self.uncount(&r);
                    self.segs[0].start = una;
                    let rest = self.segs[0];
                    self.count(&rest);
                }
                break;
            }
            self.segs.pop_front();
            self.uncount(&r);
            if r.sacked {
                continue;
            }
            ambiguous |= r.rtx;
            sample = sample.or(Some(now.saturating_since(r.xmit)));
            self.deliver(r, now, echo_before);
        }
        sample.filter(|_| !ambiguous)
    }

    /// SACK blocks of one ACK, already merged into `sb`: records that
    /// `sb` now covers whole are delivered.
    pub fn on_sack(
        &mut self,
        blocks: &[(Seq, Seq)],
        sb: &Scoreboard,
        now: Instant,
        echo_before: &dyn Fn(Instant) -> bool,
    ) {
        // Step 3 looks at segments in ascending sequence order. An ACK
        // carries at most 4 blocks (RFC 2018 3).
        let mut sorted = [(Seq(0), Seq(0)); 4];
        let n = blocks.len().min(sorted.len());
        sorted[..n].copy_from_slice(&blocks[..n]);
        sorted[..n].sort_unstable_by(|a, b| cmp(a.0, b.0));
        for &(start, end) in &sorted[..n] {
            let mut i = self.index(start);
            while let Some(r) = self.segs.get(i).copied() {
                if !r.start.lt(end) {
                    break;
                }
                if !r.sacked && sb.covers(r.start, r.end) {
                    self.set_sacked(i);
                    self.deliver(r, now, echo_before);
                }
                i += 1;
            }
        }
    }

    fn set_sacked(&mut self, i: usize) {
        let r = self.segs[i];
        self.uncount(&r);
        self.segs[i].sacked = true;
        self.segs[i].lost = false;
        let r = self.segs[i];
        self.count(&r);
    }

    /// Marks the records inside `[start, end)` SACKed without delivering
    /// them (found covered when picked for retransmission).
    pub fn sacked_range(&mut self, start: Seq, end: Seq) {
        let mut i = self.index(start);
        while i < self.segs.len() && self.segs[i].end.le(end) {
            if !self.segs[i].sacked {
                self.set_sacked(i);
            }
            i += 1;
        }
    }

    /// RFC 8985 6.2 steps 1-3 for one newly delivered segment.
    fn deliver(&mut self, r: SentSeg, now: Instant, echo_before: &dyn Fn(Instant) -> bool) {
        let rtt = now.saturating_since(r.xmit);
        if !r.rtx {
            // Step 1: only unambiguous samples.
            self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        }
        // Step 3: a never-retransmitted segment delivered below the
        // highest delivered one was reordered.
        match self.fack {
            Some(f) if !r.end.gt(f) => self.reordering_seen |= r.end.lt(f) && !r.rtx,
            _ => self.fack = Some(r.end),
        }
        // Step 2: a retransmitted segment's delivery may be the original's;
        // skip it if the echoed timestamp or an impossibly short RTT says so.
        if r.rtx && (echo_before(r.xmit) || self.min_rtt.is_some_and(|m| rtt < m)) {
            return;
        }
        if self.batch.is_none_or(|(ord, _)| sent_after(r.ord, ord)) {
            self.batch = Some((r.ord, rtt));
        }
    }

    /// Ends the processing of one ACK (step 2's result and step 4's D-SACK
    /// round). Returns whether RACK.xmit_ts advanced since the last pass.
    pub fn commit(&mut self, una: Seq, snd_max: Seq, dsack: bool) -> bool {
        if let Some((ord, rtt)) = self.batch.take() {
            self.rtt = rtt;
            if self.latest.is_none_or(|l| sent_after(ord, l)) {
                self.latest = Some(ord);
                self.advanced = true;
            }
        }
        if self.dsack_round.is_some_and(|r| una.ge(r)) {
            self.dsack_round = None;
        }
        if dsack && self.dsack_round.is_none() {
            // Step 4: one window growth per round trip of D-SACKs.
            self.dsack_round = Some(snd_max);
            self.reo_wnd_mult = self.reo_wnd_mult.saturating_add(1);
            self.reo_wnd_persist = REO_WND_PERSIST;
        }
        std::mem::take(&mut self.advanced)
    }

    /// Step 4: leaving a recovery ages a D-SACK-grown window.
    pub fn on_recovery_exit(&mut self) {
        if self.reo_wnd_persist > 0 {
            self.reo_wnd_persist -= 1;
            if self.reo_wnd_persist == 0 {
                self.reo_wnd_mult = 1;
            }
        }
    }

    /// Step 4 RACK_update_reo_wnd(): zero while no reordering has been
    /// seen and either recovery is on or DupThresh segments are SACKed;
    /// else min_RTT/4 per multiple, at most SRTT.
    pub fn reo_wnd(&self, in_recovery: bool, srtt: Option<Duration>) -> Duration {
        if !self.reordering_seen && (in_recovery || self.sacked_segs >= DUP_THRESH) {
            return Duration::ZERO;
        }
        let wnd = (self.min_rtt.unwrap_or_default() / 4).saturating_mul(self.reo_wnd_mult);
        srtt.map_or(wnd, |s| wnd.min(s))
    }

    /// Step 5 RACK_detect_loss(): every outstanding segment sent before
    /// RACK.xmit_ts is lost once RACK.rtt + reo_wnd has passed since it
    /// was sent; the others set the reordering timer.
    pub fn detect_loss(&mut self, now: Instant, reo_wnd: Duration) -> Detected {
        let mut d = Detected::default();
        let Some(latest) = self.latest else {
            return d;
        };
        for i in 0..self.segs.len() {
            let r = self.segs[i];
            if r.sacked || r.lost || !sent_after(latest, r.ord) {
                continue;
            }
            let deadline = r.xmit + self.rtt + reo_wnd;
            if deadline <= now {
                self.mark_lost_at(i);
                d.lost += 1;
                d.lost_rtx += u64::from(r.rtx);
            } else {
                d.timer = Some(d.timer.map_or(deadline, |t| t.max(deadline)));
            }
        }
        d
    }

    fn mark_lost_at(&mut self, i: usize) {
        let r = self.segs[i];
        self.uncount(&r);
        self.segs[i].lost = true;
        let r = self.segs[i];
        self.count(&r);
    }

    /// RFC 8985 6.3 RACK_mark_losses_on_RTO(): the first segment, and
    /// every other one whose reordering deadline has passed, is lost.
    pub fn mark_lost_on_rto(&mut self, now: Instant, reo_wnd: Duration) {
        for i in 0..self.segs.len() {
            let r = self.segs[i];
            if !r.sacked && !r.lost && (i == 0 || r.xmit + self.rtt + reo_wnd <= now) {
                self.mark_lost_at(i);
            }
        }
    }

    /// Marks the segment holding `seq` lost (DupThresh entry when the
    /// peer sends no SACK blocks).
    pub fn mark_lost(&mut self, seq: Seq) {
        let i = self.index(seq);
        if let Some(r) = self.segs.get(i)
            && !r.sacked
            && !r.lost
            && r.start.le(seq)
        {
            self.mark_lost_at(i);
        }
    }

    /// The lowest record marked lost: RFC 6675 NextSeg() rule 1 with
    /// RACK's marks standing in for IsLost().
    pub fn first_lost(&self) -> Option<(Seq, Seq)> {
        if self.lost_segs == 0 {
            return None;
        }
        self.segs.iter().find(|r| r.lost).map(|r| (r.start, r.end))
    }

    /// The receiver reneged (RFC 2018 8): forget every SACK mark.
    pub fn clear_sacked(&mut self) {
        for i in 0..self.segs.len() {
            let r = self.segs[i];
            if r.sacked {
                self.uncount(&r);
                self.segs[i].sacked = false;
                let r = self.segs[i];
                self.count(&r);
            }
        }
    }
}
