//! What the sender sends next (RFC 9293 3.8.6): retransmissions owed,
//! the loss probe, new data within the windows with sender SWS
//! avoidance and Nagle (3.8.6.2.1), probes; and the bookkeeping of each
//! segment sent (SND.NXT/SND.MAX, Karn, the retransmission timer). The
//! segments themselves are built and written by `output::Wire`.

use std::time::Duration;

use super::super::loss_recovery::LossRecovery;
use super::super::output::Wire;
use super::super::seq::Seq;
use super::super::timer::Timer;
use super::{Due, Sender};
use crate::stack::counters::Counters;
use crate::stack::time::Instant;

/// RFC 9293 3.8.6.2.1: the SWS override timeout lies in 0.1-1.0 s.
pub(super) const SWS_OVERRIDE_MIN: Duration = Duration::from_millis(100);
pub(super) const SWS_OVERRIDE_MAX: Duration = Duration::from_secs(1);

impl Sender {
    /// Sends everything due in a synchronized state: owed
    /// retransmissions and probes, then data as the windows, Nagle
    /// (unless `nodelay`) and SWS avoidance allow.
    pub fn output(&mut self, w: &mut Wire, nodelay: bool) {
        if self.due.take(Due::RetransmitHead) {
            match self.loss {
                LossRecovery::Rack(_) if self.in_sack_recovery() => self.retransmit_first_lost(w),
                _ => self.retransmit_una(w),
            }
        }
        if self.due.take(Due::LossProbe) {
            self.send_tlp(w);
        }
        // Each pass sends at least one byte of sequence space; the bound is
        // a guard against a livelock bug, never reached in practice.
        let mut budget = 1 << 16;
        let max_before = self.snd_max;
        if self.in_sack_recovery() {
            while let Some((seq, len)) = self.sack_next() {
                budget -= 1;
                let rtx = seq.lt(self.snd_max);
                let fin = self.fin_queued && seq + len == self.data_end();
                if !self.send_data(w, seq, len, fin) || budget == 0 {
                    break;
                }
                if let (true, Some(r)) = (rtx, self.recovery.as_mut()) {
                    // RFC 6675 HighRxt: highest retransmitted sequence.
                    r.high_rxt = r.high_rxt.max(seq + len);
                }
            }
        } else {
            while let Some((seq, len, fin)) = self.next_segment(nodelay) {
                budget -= 1;
                self.snd_nxt = seq;
                if !self.send_data(w, seq, len, fin) || budget == 0 {
                    break;
                }
            }
        }
        // As Linux (tcp_write_xmit): after new data left, or when cwnd
        // is what holds the rest back.
        let flight = self.bytes_in_flight();
        let cwnd = self.cc.cwnd();
        if self.snd_max != max_before || flight + self.mss > cwnd {
            let (una, max) = (self.snd_una, self.snd_max);
            self.cwnd_use.on_send(una, max, flight, cwnd, self.mss);
        }
        if self.due.take(Due::WindowProbe) {
            w.env.counters.inc("tcp.probe_sent");
            let tsval = self.tsval(w.env.now);
            w.bare(self.snd_una - 1, tsval);
        }
    }

    /// TSval for a segment sent at `now`, if timestamps run.
    pub fn tsval(&self, now: Instant) -> Option<u32> {
        self.ts_ok.then(|| self.ts_now(now))
    }

    /// RFC 8985 7.3: the loss probe is one segment of new data if the
    /// receiver's window allows, else the last segment sent again. In
    /// recovery (see `arm_tlp`) the last segment is SACKed or in the
    /// pipe: the head the receiver lacks goes instead, as an RTO's would.
    fn send_tlp(&mut self, w: &mut Wire) {
        let end = self.data_end();
        let unsent = end.distance_from(self.snd_max);
        let room = (self.snd_una + self.snd_wnd).distance_from(self.snd_max);
        let nxt = self.snd_nxt;
        if unsent > 0 && room > 0 && self.snd_max.le(end) {
            let len = unsent.min(room).min(self.mss);
            let fin = self.fin_queued && self.snd_max + len == end;
            self.send_data(w, self.snd_max, len, fin);
        } else if self.recovery.is_some() {
            self.retransmit_una(w);
            self.restart_rtx(w.env.now, w.timers);
        } else {
            // The last segment sent (RFC 8985 7.3), not the tail of what
            // is queued: that may lie past the receiver's window.
            let fin = self.fin_queued && self.snd_max.gt(end);
            let top = if fin { end } else { self.snd_max };
            let len = top.distance_from(self.snd_una).min(self.mss);
            if len == 0 && !fin {
                return;
            }
            self.send_data(w, top - len, len, fin);
            // RFC 8985 7.3: the RTO is re-armed after the probe. As Linux
            // (tcp_rearm_rto), it counts from the head's last send: from
            // now when the probe was the head itself, else unchanged.
            if top - len == self.snd_una {
                self.restart_rtx(w.env.now, w.timers);
            }
        }
        self.snd_nxt = nxt.max(self.snd_nxt);
        self.tlp_high = self.snd_max;
    }

    /// RFC 6675 5 step 4.2: the first lost segment goes out at once,
    /// whatever the pipe.
    fn retransmit_first_lost(&mut self, w: &mut Wire) {
        let Some((seq, len)) = self.next_lost() else {
            return self.retransmit_una(w);
        };
        let fin = self.fin_queued && seq + len == self.data_end();
        self.send_data(w, seq, len, fin);
        if let Some(r) = self.recovery.as_mut() {
            r.high_rxt = r.high_rxt.max(seq + len);
        }
    }

    /// Retransmits the segment at SND.UNA (fast retransmit, partial ACK).
    fn retransmit_una(&mut self, w: &mut Wire) {
        let end = self.data_end();
        let sent = if self.snd_max.gt(end) {
            end
        } else {
            self.snd_max
        };
        // Only what was sent, and never past the window the peer offers
        // now (RFC 9293 3.8.6); as Linux (__tcp_retransmit_skb avail_wnd),
        // a zero window still gets one segment.
        let room = if self.snd_wnd == 0 {
            self.mss
        } else {
            self.snd_wnd
        };
        let data = sent.distance_from(self.snd_una).min(self.mss).min(room);
        let fin = self.fin_queued && self.snd_una + data == end && self.snd_max.gt(end);
        if data == 0 && !fin {
            return;
        }
        let (una, nxt) = (self.snd_una, self.snd_nxt);
        self.send_data(w, una, data, fin);
        self.snd_nxt = nxt.max(self.snd_nxt);
        if let Some(r) = self.recovery.as_mut() {
            r.high_rxt = r.high_rxt.max(una + data);
        }
    }

    /// Outside SACK recovery: the next segment from SND.NXT, if the
    /// windows, Nagle and SWS avoidance allow it.
    fn next_segment(&mut self, nodelay: bool) -> Option<(Seq, usize, bool)> {
        let mut limit = self.mss;
        if self.snd_nxt.lt(self.snd_max)
            && let Some(sb) = self.loss.scoreboard().filter(|sb| !sb.is_empty())
        {
            // Go-back-N after an RTO: skip what the receiver SACKed.
            match sb.next_seg(self.snd_una, self.snd_max, self.snd_nxt, self.mss, true) {
                Some((s, l)) => {
                    self.snd_nxt = self.snd_nxt.max(s);
                    limit = l.max(1);
                }
                None => self.snd_nxt = self.snd_max,
            }
        }
        let seq = self.snd_nxt;
        let end = self.data_end();
        let avail = end.distance_from(seq);
        let fin_pending = self.fin_queued && seq.le(end);
        if avail == 0 && !fin_pending {
            return None;
        }
        let rtx = seq.lt(self.snd_max);
        let len = avail.min(limit).min(self.usable(seq, rtx));
        let fin = fin_pending && len == avail;
        if len == 0 {
            // A bare FIN is sent once all data is out (window permitting
            // nothing else).
            return fin.then_some((seq, 0, true));
        }
        if !rtx && len < self.mss && !self.due.contains(Due::SwsOverride) && !fin {
            let all_queued = len == avail;
            let nagle_ok = nodelay || self.snd_una == self.snd_max;
            let big = self.max_snd_wnd > 0 && len >= self.max_snd_wnd / 2;
            if !(big || all_queued && nagle_ok) {
                return None;
            }
        }
        self.due.take(Due::SwsOverride);
        Some((seq, len, fin))
    }

    /// Bytes the congestion and receive windows let out at `seq` (`rtx`:
    /// below SND.MAX).
    fn usable(&self, seq: Seq, rtx: bool) -> usize {
        let mut in_flight = seq.distance_from(self.snd_una);
        if let LossRecovery::Rack(sb) = &self.loss
            && !rtx
            && !sb.is_empty()
        {
            // SACKed and lost segments have left the network: count the
            // pipe (RFC 6675 2), as Linux counts packets in flight, so
            // SACKs clock out new data while RACK waits out reo_wnd, and
            // those segments' SACKs can reach DupThresh in an RTT.
            in_flight = self.rack.pipe();
        }
        let cwnd = self.cc.cwnd() + self.inflation;
        if rtx {
            // Data already sent inside an earlier window: cwnd, at least
            // one segment when nothing is in flight, and never past the
            // window offered now (RFC 9293 3.8.6; as Linux, a zero window
            // still gets the segment at SND.UNA).
            let u = if in_flight == 0 {
                self.mss
            } else {
                cwnd.saturating_sub(in_flight)
            };
            if self.snd_wnd == 0 && seq == self.snd_una {
                u
            } else {
                u.min((self.snd_una + self.snd_wnd).distance_from(seq))
            }
        } else {
            cwnd.min(self.snd_wnd).saturating_sub(in_flight)
        }
    }

    /// Sends `[seq, seq+len)` of the send buffer (plus FIN) and does the
    /// bookkeeping: SND.NXT/SND.MAX, retransmission counters, Karn, timer.
    fn send_data(&mut self, w: &mut Wire, seq: Seq, len: usize, fin: bool) -> bool {
        let psh = len > 0 && seq + len == self.data_end();
        let offset = seq.distance_from(self.tx_base);
        let tsval = self.tsval(w.env.now);
        let payload = self.tx.slices(offset, len);
        let sent = w.data(seq, payload, fin, psh, tsval, self.mss);
        let end = seq + len + usize::from(fin);
        let now = w.env.now;
        if self.loss.is_rack() || self.cc.wants_rate_samples() {
            self.rack.on_send(seq, end, self.snd_max, now);
        }
        if seq.lt(self.snd_max) {
            self.on_retransmitted(w.env.counters, seq, len, end);
        } else if self.timed.is_none() && !self.ts_ok && len > 0 {
            self.timed = Some((seq, now));
        }
        let new_data = end.gt(self.snd_max);
        self.snd_nxt = self.snd_nxt.max(end);
        self.snd_max = self.snd_max.max(end);
        if !w.timers.is_armed(Timer::Retransmit) {
            w.timers.set(Timer::Retransmit, now + self.rto());
        }
        if new_data {
            self.arm_tlp(now, w.timers);
        }
        sent
    }

    /// `[seq, seq+len)` (ending at `end` with a FIN) was sent again.
    fn on_retransmitted(&mut self, counters: &mut Counters, seq: Seq, len: usize, end: Seq) {
        self.rtx_high = self.rtx_high.max(end);
        self.rtx_segs += 1;
        self.rtx_bytes += len as u64;
        counters.inc("tcp.retransmitted_segments");
        // Karn's rule: only the timed segment's own retransmission makes
        // its sample ambiguous; others leave it valid (clearing it on
        // every retransmission left lossy flows without samples, so the
        // backed-off RTO never came down).
        if self
            .timed
            .is_some_and(|(s, _)| s.in_range(seq, seq + len.max(1)))
        {
            self.timed = None;
        }
    }

    /// Our SYN (or SYN,ACK) left: SND.NXT/SND.MAX past it, timed the first
    /// time, counted when sent again; the retransmission timer restarts.
    pub fn on_syn_sent(&mut self, w: &mut Wire) {
        let now = w.env.now;
        if self.snd_max != self.iss {
            self.rtx_segs += 1;
            w.env.counters.inc("tcp.syn_retransmitted");
        } else {
            self.timed = Some((self.iss, now));
        }
        self.snd_nxt = self.iss + 1;
        self.snd_max = self.snd_max.max(self.snd_nxt);
        w.timers.set(Timer::Retransmit, now + self.rto());
    }
}
