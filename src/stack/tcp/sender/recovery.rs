//! Acknowledgment processing for the sender: acceptability (RFC 5961
//! 5.2), SND.UNA and the send window (RFC 9293 3.10.7.4), SACK blocks
//! (RFC 2018, RFC 2883), RTT sampling (RFC 6298,
//! RFC 7323 4), congestion control hooks, fast retransmit (RFC 5681 3.2),
//! NewReno (RFC 6582) and SACK-based loss recovery (RFC 6675), with loss
//! detection by RACK (RFC 8985, `loss.rs`) on SACK connections.

use std::time::Duration;

use super::super::loss_recovery::LossRecovery;
use super::super::options::InSeg;
use super::super::seq::Seq;
use super::super::tcb::Env;
use super::super::timer::{Timer, TimerTable};
use super::{Due, Recovery, RecoveryKind, Sender};

/// RFC 5681 DupThresh.
pub(super) const DUP_THRESH: u32 = 3;

impl Sender {
    /// RFC 5961 5.2: acceptable ACKs lie in [SND.UNA - MAX.SND.WND,
    /// SND.MAX]. Otherwise the counter and the trace text of the reason.
    pub fn check_ack(&self, ack: Seq) -> Result<(), (&'static str, &'static str)> {
        if ack.gt(self.snd_max) {
            return Err(("tcp.ack_unsent", "ACK for unsent data"));
        }
        if ack.lt(self.snd_una - self.max_snd_wnd) {
            return Err(("tcp.ack_too_old", "ACK too old"));
        }
        Ok(())
    }

    /// The ACK field of an acceptable segment (3.10.7.4 fifth check):
    /// SND.UNA, SACK and RACK, the send window, duplicate ACKs. `pure`:
    /// the segment carries neither data nor FIN. True if the application
    /// may write more (acknowledged data freed room, the window opened).
    pub fn on_ack(
        &mut self,
        env: &mut Env,
        timers: &mut TimerTable,
        seg: &InSeg,
        ack: Seq,
        pure: bool,
    ) -> bool {
        let old_wnd = self.snd_wnd;
        let wnd = usize::from(seg.window) << self.snd_wscale;
        let duplicate = ack == self.snd_una;
        let mut changed = false;
        if ack.gt(self.snd_una) {
            changed |= self.on_new_ack(env, timers, seg, ack);
        }
        let (newly_sacked, dsack) = self.on_sack_blocks(env, timers, seg, ack, duplicate);
        // RFC 9293 3.10.7.4: update the send window from newer segments.
        if self.snd_wl1.lt(seg.seq) || (self.snd_wl1 == seg.seq && self.snd_wl2.le(ack)) {
            self.snd_wnd = wnd;
            self.max_snd_wnd = self.max_snd_wnd.max(wnd);
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = ack;
            if wnd > old_wnd {
                changed = true;
                if wnd > 0 {
                    timers.stop(Timer::Persist);
                    self.persist_backoff = 0;
                    self.probe_sent_at = None;
                    self.probes_unanswered = 0;
                }
            }
        }
        // RFC 5681 2 "duplicate ACK"; with SACK, RFC 6675 2's DupAck: only
        // an ACK whose blocks report octets not yet SACKed (Linux counts no
        // duplicate ACKs on a SACK connection either: tcp_time_to_recover).
        let outstanding = self.snd_max != self.snd_una;
        let evidence = match self.loss {
            LossRecovery::NewReno => wnd == old_wnd,
            _ => newly_sacked > 0,
        };
        // A D-SACK reports a duplicate that arrived, not a loss.
        if duplicate && pure && outstanding && !dsack && evidence {
            self.on_dupack(env, timers);
        }
        self.rate_sample_on_ack(env);
        changed
    }

    /// The SACK blocks of an ACK (RFC 2018, RFC 2883 D-SACK) and RACK's
    /// part of it. Returns the bytes newly SACKed and whether the first
    /// block was a D-SACK.
    fn on_sack_blocks(
        &mut self,
        env: &mut Env,
        timers: &mut TimerTable,
        seg: &InSeg,
        ack: Seq,
        duplicate: bool,
    ) -> (usize, bool) {
        let mut newly_sacked = 0;
        let mut dsack = false;
        let mut buf = [(Seq(0), Seq(0)); 3];
        let mut n = 0;
        for (slot, block) in buf.iter_mut().zip(seg.sack.iter().flatten()) {
            *slot = *block;
            n += 1;
        }
        let blocks = &buf[..n];
        if let Some(sb) = self.loss.scoreboard_mut() {
            if !blocks.is_empty() {
                newly_sacked = sb.update(self.snd_una, self.snd_max, blocks);
            }
            dsack = super::loss::is_dsack(blocks, ack);
            if dsack {
                self.on_dsack(env, blocks[0]);
            }
        }
        if let LossRecovery::Rack(_) = self.loss {
            let delivered = !duplicate || newly_sacked > 0;
            self.rack_on_ack(env, timers, seg, blocks, delivered);
        }
        (newly_sacked, dsack)
    }

    /// SEG.ACK advanced SND.UNA (3.10.7.4 fifth check, ESTABLISHED case).
    /// True if acknowledged data left the ring (room to write).
    pub(super) fn on_new_ack(
        &mut self,
        env: &mut Env,
        timers: &mut TimerTable,
        seg: &InSeg,
        ack: Seq,
    ) -> bool {
        let now = env.now;
        let syn_acked = self.snd_una == self.iss;
        let acked = ack.distance_from(self.snd_una) - usize::from(syn_acked);
        let flight_before = self.bytes_in_flight();
        let mut freed = false;
        if ack.gt(self.tx_base) {
            let n = ack.distance_from(self.tx_base).min(self.tx.len());
            self.tx.discard(n);
            self.tx_base += n;
            freed = n > 0;
        }
        self.snd_una = ack;
        if self.snd_nxt.lt(ack) {
            self.snd_nxt = ack;
        }
        self.loss.advance(ack);
        let rack = self.loss.is_rack();
        let rack_rtt = if rack || self.cc.wants_rate_samples() {
            // Without RACK the records serve delivery-rate estimation only.
            let echo_before = self.echo_before(seg);
            let rtt = self.rack.on_cum_ack(ack, now, &echo_before);
            rtt.filter(|_| rack)
        } else {
            None
        };
        self.sample_rtt(now, seg, ack, rack_rtt);
        self.retries = 0;
        self.dupacks = 0;
        // New data acknowledged: the peer is reading, so zero-window
        // probing starts over at one RTO (Linux resets icsk_backoff).
        self.persist_backoff = 0;
        match self.recovery {
            Some(r) if ack.ge(r.recover) => {
                if r.kind == RecoveryKind::Fast {
                    self.cc.on_recovery_exit(now);
                }
                self.rack.on_recovery_exit();
                self.recovery = None;
                self.inflation = 0;
            }
            Some(r) if r.kind == RecoveryKind::Fast => {
                // RFC 6582 3.2 step 5: partial ACK.
                env.counters.inc("tcp.partial_ack");
                if let LossRecovery::NewReno = self.loss {
                    self.due.insert(Due::RetransmitHead);
                    self.inflation = self.inflation.saturating_sub(acked);
                    if acked >= self.mss {
                        self.inflation += self.mss;
                    }
                }
            }
            _ if !syn_acked && acked > 0 => {
                // A new ACK ends the RFC 3042 allowance.
                self.inflation = 0;
                // RFC 7661: only a window that cwnd limited is validated.
                let app_limited = !self
                    .cwnd_use
                    .allows_growth(self.cc.cwnd(), self.cc.in_slow_start());
                let srtt = self.rtt.srtt();
                self.cc.on_ack(now, acked, flight_before, srtt, app_limited);
            }
            _ => {}
        }
        self.restart_rtx(now, timers);
        self.tlp_used = false;
        self.arm_tlp(now, timers);
        freed
    }

    /// RTT measurement: from RACK's per-segment send times (microsecond
    /// resolution, Karn-safe even during recovery), else from TSecr
    /// (RFC 7323 4.1) or, without timestamps, from one timed segment not
    /// retransmitted (Karn).
    fn sample_rtt(
        &mut self,
        now: crate::stack::time::Instant,
        seg: &InSeg,
        ack: Seq,
        rack_rtt: Option<Duration>,
    ) {
        if let Some(rtt) = rack_rtt {
            self.rtt.sample(rtt);
            return;
        }
        // During fast recovery the echoed timestamp may be that of the
        // last segment before the hole (RFC 7323 4.3), so a sample would
        // include the whole recovery and inflate SRTT and the RTO. After
        // an RTO, an echo of a segment sent since is one round trip of a
        // retransmission (4.3: the one that filled the hole) and ends the
        // backoff (RFC 6298 5.7; as Linux, which samples from TSecr):
        // else every ACK of the recovery covers retransmitted data, no
        // sample comes, and the timer keeps doubling through a long
        // recovery (the issue 13 stall's growing pauses).
        let since = match self.recovery {
            None => None,
            Some(r) if r.kind == RecoveryKind::Rto => Some(self.ts_now(r.started)),
            Some(_) => return,
        };
        if self.ts_ok
            && let Some((_, ecr)) = seg.ts
        {
            let ms = self.ts_now(now).wrapping_sub(ecr);
            let fresh = since.is_none_or(|t| (ecr.wrapping_sub(t) as i32) >= 0);
            if ecr != 0 && ms < 120_000 && fresh {
                self.rtt.sample(Duration::from_millis(u64::from(ms)));
                return;
            }
        }
        if since.is_some() {
            return;
        }
        if let Some((s, at)) = self.timed
            && ack.gt(s)
        {
            self.rtt.sample(now - at);
            self.timed = None;
        }
    }

    /// A duplicate ACK (RFC 5681 3.2; RFC 6675 5 for SACK).
    pub(super) fn on_dupack(&mut self, env: &mut Env, timers: &mut TimerTable) {
        self.dupacks += 1;
        env.counters.inc("tcp.dupack");
        match self.recovery {
            Some(r) if r.kind == RecoveryKind::Fast => {
                if let LossRecovery::NewReno = self.loss {
                    // RFC 6582 3.2 step 4: inflate by one segment.
                    self.inflation += self.mss;
                }
                return;
            }
            Some(_) => return,
            None => {}
        }
        let three = self.dupacks >= DUP_THRESH;
        let lost = match &self.loss {
            LossRecovery::NewReno => three,
            // RACK decides what is lost (RFC 8985 6.2, in place of the
            // DupThresh rule, in `rack_on_ack`).
            LossRecovery::Rack(_) => false,
            // RFC 8985 7.4 (RACK's view of the probe): the probe went out
            // at least 2*SRTT after everything below it, so a SACK for it
            // while SND.UNA is still missing means SND.UNA was lost.
            LossRecovery::Sack(sb) => {
                let probe_sacked = self.tlp_used && sb.is_sacked(self.tlp_high - 1);
                three || probe_sacked || sb.is_lost(self.snd_una, self.mss)
            }
        };
        if !lost {
            // RFC 3042 Limited Transmit: each of the first two duplicate
            // ACKs lets one new segment out beyond cwnd, so that a small
            // window can still produce the third duplicate ACK. With RACK
            // and SACK blocks the pipe already frees what was SACKed.
            let pipe_counts = matches!(&self.loss, LossRecovery::Rack(sb) if !sb.is_empty());
            self.inflation = if pipe_counts {
                0
            } else {
                self.dupacks.min(DUP_THRESH - 1) as usize * self.mss
            };
            return;
        }
        self.enter_fast_recovery(env, timers);
    }

    /// RFC 5681 3.2 / RFC 6675 5 step 4: a loss was detected outside
    /// recovery; reduce the window and retransmit the first lost segment.
    pub(super) fn enter_fast_recovery(&mut self, env: &mut Env, timers: &mut TimerTable) {
        env.counters.inc("tcp.fast_retransmit");
        // RFC 5681 eq. 4 / RFC 6675 5 step 4.2: FlightSize is all data
        // sent and not cumulatively ACKed, SACKed bytes included; without
        // them the window was cut twice (once by beta, once by the SACKs).
        let flight = self.bytes_outstanding();
        self.cc.on_congestion_event(env.now, flight);
        self.recovery = Some(Recovery {
            kind: RecoveryKind::Fast,
            started: env.now,
            recover: self.snd_max,
            high_rxt: self.snd_una,
        });
        self.due.insert(Due::RetransmitHead);
        self.timed = None;
        self.inflation = match self.loss {
            LossRecovery::NewReno => DUP_THRESH as usize * self.mss,
            _ => 0,
        };
        if !self.loss.is_rack() {
            timers.stop(Timer::LossProbe);
        }
    }

    /// In SACK recovery (RFC 6675 5 step C), the next range to send:
    /// (seq, len). None when pipe fills cwnd or nothing is left.
    pub(super) fn sack_next(&mut self) -> Option<(Seq, usize)> {
        let r = self.recovery?;
        let high_rxt = r.high_rxt.max(self.snd_una);
        let pipe = match &self.loss {
            LossRecovery::NewReno => return None,
            LossRecovery::Sack(sb) => sb.pipe(self.snd_una, self.snd_max, high_rxt, self.mss),
            LossRecovery::Rack(_) => self.rack.pipe(),
        };
        if self.cc.cwnd() < pipe + self.mss {
            return None;
        }
        // Rule 1: lost and not SACKed; RACK's marks stand in for IsLost()
        // when it runs (RFC 8985 6.2 step 5).
        let rule1 = match &self.loss {
            LossRecovery::Sack(sb) => {
                sb.next_seg(self.snd_una, self.snd_max, high_rxt, self.mss, false)
            }
            _ => self.next_lost(),
        };
        if rule1.is_some() {
            return rule1;
        }
        // Rule 2: new data the receiver's window allows.
        let unsent = self.data_end().distance_from(self.snd_max);
        let wnd_room = (self.snd_una + self.snd_wnd).distance_from(self.snd_max);
        if unsent > 0 && wnd_room > 0 {
            return Some((self.snd_max, unsent.min(wnd_room).min(self.mss)));
        }
        // Rule 3: not SACKed (not yet deemed lost).
        self.loss
            .scoreboard()?
            .next_seg(self.snd_una, self.snd_max, high_rxt, self.mss, true)
    }

    /// Loss recovery by NextSeg(): after fast retransmit with SACK, and
    /// with RACK after a timeout too (RFC 8985 6.3).
    pub(super) fn in_sack_recovery(&self) -> bool {
        match self.recovery {
            None => false,
            Some(r) => match self.loss {
                LossRecovery::NewReno => false,
                LossRecovery::Sack(_) => r.kind == RecoveryKind::Fast,
                LossRecovery::Rack(_) => true,
            },
        }
    }

    /// After an RTO (RFC 6298 5.4-5.6, RFC 5681 3.1): back off, collapse
    /// the window and go back to SND.UNA (with RACK: mark the lost).
    pub(super) fn on_rto_data(&mut self, env: &mut Env, timers: &mut TimerTable) {
        env.counters.inc("tcp.rto");
        timers.stop(Timer::LossProbe);
        if self.rtt.backoff_count() == 0 {
            let flight = self.bytes_outstanding();
            self.cc.on_retransmission_timeout(env.now, flight);
        } else {
            // Without this, ACKs between two expiries grew cwnd again and
            // the second expiry sent a burst of everything marked lost.
            self.cc.on_repeated_timeout(env.now);
        }
        self.rtt.backoff();
        self.recovery = Some(Recovery {
            kind: RecoveryKind::Rto,
            started: env.now,
            recover: self.snd_max,
            high_rxt: self.snd_una,
        });
        self.inflation = 0;
        self.dupacks = 0;
        self.due.take(Due::RetransmitHead);
        self.timed = None;
        if self.loss.is_sacked(self.snd_una) {
            // The cumulative ACK stopped at data the receiver had SACKed:
            // it reneged (RFC 2018 8), so forget the scoreboard (Linux
            // tcp_check_sack_reneging). Otherwise SACKed data stays SACKed
            // through timeouts (RFC 8985 6.3): forgetting it on repeated
            // timeouts resent it in bursts, and a receiver reports only its
            // newest three blocks, so most was never learnt again (the
            // issue 13 stall).
            env.counters.inc("tcp.sack_reneging");
            if let Some(sb) = self.loss.scoreboard_mut() {
                sb.clear();
            }
            self.rack.clear_sacked();
        }
        if let LossRecovery::Rack(_) = self.loss {
            // RFC 8985 6.3: mark what is lost and let NextSeg resend it;
            // RACK keeps watching the retransmissions.
            let reo_wnd = self.rack.reo_wnd(true, self.rtt.srtt());
            self.rack.mark_lost_on_rto(env.now, reo_wnd);
            timers.stop(Timer::Reorder);
            // RFC 6298 5.4: the earliest segment goes out whatever the
            // pipe (segments sent within RACK.rtt still count in it).
            self.due.insert(Due::RetransmitHead);
            // No loss probe in RTO recovery (RFC 8985 7.2): the next
            // expiry, backed off, resends the head once more (5.4-5.6).
        } else {
            self.snd_nxt = self.snd_una;
        }
    }
}
