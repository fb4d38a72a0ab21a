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

mod rate;

use std::collections::VecDeque;
use std::time::Duration;

use super::rtt::Nanos;
use super::sack::Scoreboard;
use super::seq::{Seq, cmp};
use crate::stack::time::Instant;

/// Bound on tracked segments. Full-sized segments never reach it (4096
/// of them exceed any window our buffers allow); tiny ones can, and then
/// new data joins the newest record instead.
const MAX_SEGS: usize = 4096;
/// RFC 8985 6.2 step 4: the DupThresh shortcut to a zero window.
const DUP_THRESH: usize = 3;
/// "None" for the counters and rates kept without an `Option` (whose tag
/// doubles a u64 in every connection's block, issue 15): no transmission
/// count or rate reaches it.
const NONE: u64 = u64::MAX;
/// No segment sent yet.
const NO_SEND: Instant = Instant::NEVER;
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
    /// Delivery-rate state at the latest transmission
    /// (draft-cheng-iccrg-delivery-rate-estimation 3.2).
    rate: SendRate,
}

/// P.delivered, P.delivered_time, P.first_sent_time, P.is_app_limited.
#[derive(Clone, Copy, Debug)]
struct SendRate {
    delivered: u64,
    delivered_time: Instant,
    first_sent: Instant,
    app_limited: bool,
}

/// The rate sample being built from one ACK's deliveries (draft 3.3).
#[derive(Clone, Copy, Debug)]
struct RsBuild {
    prior_delivered: u64,
    prior_time: Instant,
    send_elapsed: Nanos,
    app_limited: bool,
    rtt: Nanos,
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
    /// recently sent segment known to be delivered (`NONE` before one is).
    latest: u64,
    /// Transmissions so far (the next `ord`).
    sent: u64,
    /// RACK.rtt: the RTT of that segment.
    rtt: Nanos,
    /// RACK.min_RTT (over the connection, from unambiguous samples).
    min_rtt: Nanos,
    /// RACK.fack: the highest end sequence delivered.
    fack: Option<Seq>,
    reordering_seen: bool,
    reo_wnd_mult: u32,
    reo_wnd_persist: u32,
    dsack_round: Option<Seq>,
    /// RACK.xmit_ts moved since the last detection pass.
    advanced: bool,
    /// Latest-sent segment delivered by the ACK being processed, with its
    /// RTT (step 2 runs over the ACK's segments in transmit order; the
    /// last one's values are what remain).
    batch: Option<(u64, Nanos)>,
    in_flight: usize,
    lost_segs: usize,
    sacked_segs: usize,
    /// Retransmitted records: while there are none, records are in
    /// transmit order too.
    rtx_segs: usize,
    /// Delivery-rate connection state (draft-cheng 3.1): C.delivered,
    /// C.delivered_time, C.first_sent_time, C.app_limited (0: not).
    delivered: u64,
    delivered_time: Instant,
    first_sent_time: Instant,
    app_limited_until: u64,
    rs: Option<RsBuild>,
    rs_acked: u64,
    lost_bytes: u64,
    lost_reported: u64,
    /// For `ss -i`: when a segment last left, and the latest valid
    /// delivery-rate sample (bytes per second); `NO_SEND`, `NONE` before.
    last_send: Instant,
    last_rate: u64,
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
            latest: NONE,
            sent: 0,
            rtt: Nanos::of(Duration::ZERO),
            min_rtt: Nanos::NONE,
            fack: None,
            reordering_seen: false,
            reo_wnd_mult: 1,
            reo_wnd_persist: 0,
            dsack_round: None,
            advanced: false,
            batch: None,
            in_flight: 0,
            lost_segs: 0,
            sacked_segs: 0,
            rtx_segs: 0,
            delivered: 0,
            delivered_time: Instant::ZERO,
            first_sent_time: Instant::ZERO,
            app_limited_until: 0,
            rs: None,
            rs_acked: 0,
            lost_bytes: 0,
            lost_reported: 0,
            last_send: NO_SEND,
            last_rate: NONE,
        }
    }

    /// Segments now marked lost.
    pub fn lost_segs(&self) -> usize {
        self.lost_segs
    }

    /// When a segment last left (new data or a retransmission).
    pub fn last_send(&self) -> Option<Instant> {
        (self.last_send != NO_SEND).then_some(self.last_send)
    }

    /// The latest valid delivery-rate sample, bytes per second.
    pub fn last_rate(&self) -> Option<u64> {
        (self.last_rate != NONE).then_some(self.last_rate)
    }

    /// RFC 6675 pipe: bytes neither SACKed nor lost.
    pub fn pipe(&self) -> usize {
        self.in_flight
    }

    pub fn has_lost(&self) -> bool {
        self.lost_segs > 0
    }

    /// Frees the records' storage once none is outstanding: an idle
    /// connection holds no per-segment memory (issue 15; the SYN,ACK's
    /// record alone left a 4-record ring, ~290 bytes, in every connection).
    pub fn release_if_idle(&mut self) {
        if self.segs.is_empty() && self.segs.capacity() != 0 {
            self.segs = VecDeque::new();
        }
    }

    /// Bytes of record storage held now.
    pub fn storage_bytes(&self) -> usize {
        self.segs.capacity() * std::mem::size_of::<SentSeg>()
    }

    /// Index of the first record ending after `seq`.
    fn index(&self, seq: Seq) -> usize {
        self.segs.partition_point(|r| r.end.le(seq))
    }

    /// `[start, end)` left at `now`; `snd_max` is SND.MAX before it.
    pub fn on_send(&mut self, start: Seq, end: Seq, snd_max: Seq, now: Instant) {
        self.last_send = now;
        if self.segs.is_empty() {
            // Draft-cheng 3.2: a send with nothing outstanding starts a
            // new interval, so idle time is not counted as delivery time.
            self.first_sent_time = now;
            self.delivered_time = now;
        }
        if start.lt(snd_max) {
            self.mark_rtx(start, end.min(snd_max), now);
        }
        let new = start.max(snd_max);
        if new.lt(end) {
            self.push_new(new, end, now);
        }
    }

    fn send_rate(&self) -> SendRate {
        SendRate {
            delivered: self.delivered,
            delivered_time: self.delivered_time,
            first_sent: self.first_sent_time,
            app_limited: self.app_limited_until != 0,
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
            rate: self.send_rate(),
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
                    rate: self.send_rate(),
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
        self.rtx_segs += usize::from(r.rtx);
    }

    fn count(&mut self, r: &SentSeg) {
        self.in_flight += r.in_flight();
        self.lost_segs += usize::from(r.lost);
        self.sacked_segs += usize::from(r.sacked);
        self.rtx_segs += usize::from(r.rtx);
    }

    fn uncount(&mut self, r: &SentSeg) {
        self.in_flight -= r.in_flight();
        self.lost_segs -= usize::from(r.lost);
        self.sacked_segs -= usize::from(r.sacked);
        self.rtx_segs -= usize::from(r.rtx);
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
    /// `sb` now covers whole are delivered. `data_end` is where a FIN
    /// would sit: SACK blocks cover data only (RFC 2018 3), so a record
    /// ending with the FIN counts as covered when its data is.
    pub fn on_sack(
        &mut self,
        blocks: &[(Seq, Seq)],
        sb: &Scoreboard,
        data_end: Seq,
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
                let data = r.end.min(data_end);
                if !r.sacked && r.start.lt(data) && sb.covers(r.start, data) {
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
        self.rate_deliver(&r, now, rtt);
        if !r.rtx {
            // Step 1: only unambiguous samples.
            self.min_rtt = Nanos::of(self.min_rtt.get().map_or(rtt, |m| m.min(rtt)));
        }
        // Step 3: a never-retransmitted segment delivered below the
        // highest delivered one was reordered.
        match self.fack {
            Some(f) if !r.end.gt(f) => self.reordering_seen |= r.end.lt(f) && !r.rtx,
            _ => self.fack = Some(r.end),
        }
        // Step 2: a retransmitted segment's delivery may be the original's;
        // skip it if the echoed timestamp or an impossibly short RTT says so.
        if r.rtx && (echo_before(r.xmit) || self.min_rtt.get().is_some_and(|m| rtt < m)) {
            return;
        }
        if self.batch.is_none_or(|(ord, _)| sent_after(r.ord, ord)) {
            self.batch = Some((r.ord, Nanos::of(rtt)));
        }
    }

    /// Ends the processing of one ACK (step 2's result and step 4's D-SACK
    /// round). Returns whether RACK.xmit_ts advanced since the last pass.
    pub fn commit(&mut self, una: Seq, snd_max: Seq, dsack: bool) -> bool {
        if let Some((ord, rtt)) = self.batch.take() {
            self.rtt = rtt;
            if self.latest == NONE || sent_after(ord, self.latest) {
                self.latest = ord;
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
        let wnd = (self.min_rtt.get().unwrap_or_default() / 4).saturating_mul(self.reo_wnd_mult);
        srtt.map_or(wnd, |s| wnd.min(s))
    }

    /// Step 5 RACK_detect_loss(): every outstanding segment sent before
    /// RACK.xmit_ts is lost once RACK.rtt + reo_wnd has passed since it
    /// was sent; the others set the reordering timer.
    pub fn detect_loss(&mut self, now: Instant, reo_wnd: Duration) -> Detected {
        let mut d = Detected::default();
        let latest = self.latest;
        if latest == NONE {
            return d;
        }
        let rtt = self.rtt.dur();
        for i in 0..self.segs.len() {
            let r = self.segs[i];
            if self.rtx_segs == 0 && !sent_after(latest, r.ord) {
                // In transmit order: the rest went out later still (this
                // keeps a loss-free ACK at O(1)).
                break;
            }
            if r.sacked || r.lost || !sent_after(latest, r.ord) {
                continue;
            }
            let deadline = r.xmit + rtt + reo_wnd;
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
        self.lost_bytes += r.len() as u64;
        self.uncount(&r);
        self.segs[i].lost = true;
        let r = self.segs[i];
        self.count(&r);
    }

    /// RFC 8985 6.3 RACK_mark_losses_on_RTO(): the first segment, and
    /// every other one whose reordering deadline has passed, is lost.
    pub fn mark_lost_on_rto(&mut self, now: Instant, reo_wnd: Duration) {
        let rtt = self.rtt.dur();
        for i in 0..self.segs.len() {
            let r = self.segs[i];
            if !r.sacked && !r.lost && (i == 0 || r.xmit + rtt + reo_wnd <= now) {
                self.mark_lost_at(i);
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::rng::Rng;

    fn never(_: Instant) -> bool {
        false
    }

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    /// The running counts agree with the records, which tile
    /// [first start, last end) in order.
    fn check(r: &Rack) {
        let flight: usize = r.segs.iter().map(SentSeg::in_flight).sum();
        let lost = r.segs.iter().filter(|s| s.lost).count();
        let sacked = r.segs.iter().filter(|s| s.sacked).count();
        let rtx = r.segs.iter().filter(|s| s.rtx).count();
        let counts = (r.in_flight, r.lost_segs, r.sacked_segs, r.rtx_segs);
        assert_eq!(counts, (flight, lost, sacked, rtx));
        for w in r.segs.iter().collect::<Vec<_>>().windows(2) {
            assert_eq!(w[0].end, w[1].start, "{:?}", r.segs);
        }
        assert!(
            r.segs
                .iter()
                .all(|s| s.start.lt(s.end) && !(s.lost && s.sacked))
        );
    }

    /// Ten 100-byte segments from seq 0, sent 1 ms apart.
    fn ten() -> Rack {
        let mut r = Rack::new();
        for i in 0..10u32 {
            r.on_send(
                Seq(i * 100),
                Seq(i * 100 + 100),
                Seq(i * 100),
                at(u64::from(i)),
            );
        }
        check(&r);
        r
    }

    #[test]
    fn lost_by_time_order_then_lost_again() {
        let mut r = ten();
        let mut sb = Scoreboard::new();
        sb.update(Seq(0), Seq(1000), &[(Seq(200), Seq(300))]);
        r.on_sack(&[(Seq(200), Seq(300))], &sb, Seq(5000), at(12), &never);
        assert!(r.commit(Seq(0), Seq(1000), false));
        assert_eq!(r.rtt.dur(), Duration::from_millis(10));
        // Zero window: 0 and 1 were sent before 2 and are lost; 3.. were
        // sent after it and are not.
        let d = r.detect_loss(at(12), Duration::ZERO);
        assert_eq!((d.lost, d.lost_rtx, d.timer), (2, 0, None));
        assert_eq!(r.first_lost(), Some((Seq(0), Seq(100))));
        assert_eq!(r.pipe(), 700);
        // Retransmit 0 at 12 ms; 9 is delivered, but was sent before it.
        r.on_send(Seq(0), Seq(100), Seq(1000), at(12));
        assert_eq!(r.pipe(), 800);
        sb.update(Seq(0), Seq(1000), &[(Seq(900), Seq(1000))]);
        r.on_sack(&[(Seq(900), Seq(1000))], &sb, Seq(5000), at(20), &never);
        r.commit(Seq(0), Seq(1000), false);
        let d = r.detect_loss(at(20), Duration::ZERO);
        assert_eq!((d.lost, d.lost_rtx), (6, 0));
        // New data after the retransmission is delivered: it is lost too.
        r.on_send(Seq(1000), Seq(1100), Seq(1000), at(13));
        sb.update(Seq(0), Seq(1100), &[(Seq(1000), Seq(1100))]);
        r.on_sack(&[(Seq(1000), Seq(1100))], &sb, Seq(5000), at(23), &never);
        r.commit(Seq(0), Seq(1100), false);
        let d = r.detect_loss(at(23), Duration::ZERO);
        assert_eq!((d.lost, d.lost_rtx), (1, 1));
        check(&r);
    }

    #[test]
    fn reordering_window_arms_the_timer() {
        let mut r = ten();
        let mut sb = Scoreboard::new();
        sb.update(Seq(0), Seq(1000), &[(Seq(100), Seq(200))]);
        r.on_sack(&[(Seq(100), Seq(200))], &sb, Seq(5000), at(11), &never);
        r.commit(Seq(0), Seq(1000), false);
        // Segment 0 went out 1 ms before 1: with a 2 ms window it has
        // until 0 + 10 + 2 ms.
        let d = r.detect_loss(at(11), Duration::from_millis(2));
        assert_eq!((d.lost, d.timer), (0, Some(at(12))));
        assert_eq!(r.detect_loss(at(12), Duration::from_millis(2)).lost, 1);
        // A never-retransmitted segment below RACK.fack: reordering.
        assert!(!r.reordering_seen);
        r.on_cum_ack(Seq(100), at(13), &never);
        assert!(r.reordering_seen);
        check(&r);
    }

    #[test]
    fn cumulative_ack_samples_only_unambiguous_segments() {
        let mut r = ten();
        assert_eq!(r.on_cum_ack(Seq(150), at(10), &never), Some(at(10) - at(0)));
        check(&r);
        r.on_send(Seq(150), Seq(200), Seq(1000), at(11));
        check(&r);
        // Segment [150, 200) was retransmitted: no sample (Karn).
        assert_eq!(r.on_cum_ack(Seq(300), at(20), &never), None);
        assert_eq!(r.segs.front().map(|s| s.start), Some(Seq(300)));
        assert!(r.commit(Seq(300), Seq(1000), false));
        // A retransmission "delivered" sooner than min_RTT is the original
        // (RFC 8985 6.2 step 2): RACK.rtt keeps its value.
        r.on_send(Seq(300), Seq(400), Seq(1000), at(20));
        r.on_cum_ack(Seq(400), at(21), &never);
        assert!(!r.commit(Seq(400), Seq(1000), false));
    }

    #[test]
    fn rto_marks_the_first_and_the_expired() {
        let mut r = ten();
        r.mark_lost_on_rto(at(5), Duration::ZERO);
        // RACK.rtt is 0 (nothing delivered): sent at or before 5 ms.
        assert_eq!(r.lost_segs, 6);
        r.clear_sacked();
        check(&r);
    }

    #[test]
    fn records_stay_bounded() {
        let mut r = Rack::new();
        for i in 0..(MAX_SEGS as u32 + 500) {
            r.on_send(Seq(i), Seq(i + 1), Seq(i), at(1));
        }
        assert_eq!(r.segs.len(), MAX_SEGS);
        check(&r);
        // Splits are refused at the bound; the retransmission takes the
        // whole record.
        r.on_send(Seq(5000), Seq(5001), Seq(MAX_SEGS as u32 + 500), at(2));
        assert_eq!(r.segs.len(), MAX_SEGS);
        check(&r);
    }

    #[test]
    fn counts_survive_random_operations() {
        let mut rng = Rng::new(3);
        for _ in 0..50 {
            let (mut r, mut sb) = (Rack::new(), Scoreboard::new());
            let (mut una, mut max, mut now) = (Seq(u32::MAX - 3000), Seq(u32::MAX - 3000), 0);
            for _ in 0..200 {
                now += rng.range(0, 3);
                let t = at(now);
                match rng.range(0, 6) {
                    0 | 1 => {
                        let len = rng.range(1, 300) as usize;
                        r.on_send(max, max + len, max, t);
                        max += len;
                    }
                    2 if max.gt(una) => {
                        let s = una + rng.range(0, max.distance_from(una) as u64) as usize;
                        let e = s + rng.range(1, 400) as usize;
                        r.on_send(s, e.min(max), max, t);
                    }
                    3 if max.gt(una) => {
                        let s = una + rng.range(0, max.distance_from(una) as u64) as usize;
                        let b = [(s, (s + rng.range(1, 500) as usize).min(max))];
                        sb.update(una, max, &b);
                        r.on_sack(&b, &sb, max, t, &never);
                    }
                    4 => {
                        una = una + rng.range(0, max.distance_from(una) as u64 + 1) as usize;
                        sb.advance(una);
                        r.on_cum_ack(una, t, &never);
                    }
                    _ => {
                        r.commit(una, max, false);
                        r.detect_loss(t, Duration::from_millis(rng.range(0, 3)));
                    }
                }
                check(&r);
                if let Some(first) = r.segs.front() {
                    assert_eq!(first.start, una);
                }
            }
        }
    }
}
