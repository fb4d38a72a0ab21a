//! RACK-TLP loss detection (RFC 8985 section 6) wired into the
//! sender: which ACK fields feed `Rack`, when losses are looked for,
//! and how a loss starts recovery. The RFC 6675 NextSeg() in
//! `recovery.rs` then retransmits what RACK marked lost.

use super::super::options::InSeg;
use super::super::seq::Seq;
use super::super::tcb::Env;
use super::super::timer::{Timer, TimerTable};
use super::Sender;
use crate::stack::time::Instant;

impl Sender {
    /// The ACK's TSecr predates a given send time (RFC 8985 6.2 step 2):
    /// it then acknowledges an earlier transmission of that segment.
    pub(super) fn echo_before(&self, seg: &InSeg) -> impl Fn(Instant) -> bool + use<> {
        let ecr = seg.ts.filter(|_| self.ts_ok).map(|(_, ecr)| ecr);
        let offset = self.ts_offset;
        move |t: Instant| {
            let sent = (t.total_millis() as u32).wrapping_add(offset);
            ecr.is_some_and(|e| (e.wrapping_sub(sent) as i32) < 0)
        }
    }

    /// RACK's part of one ACK's processing (RFC 8985 6.2): SACKed
    /// segments are delivered; then, if the most recent delivery moved,
    /// losses are detected; a loss outside recovery starts one.
    pub(super) fn rack_on_ack(
        &mut self,
        env: &mut Env,
        timers: &mut TimerTable,
        seg: &InSeg,
        blocks: &[(Seq, Seq)],
        delivered: bool,
    ) {
        let ack = seg.ack.unwrap_or(self.snd_una);
        if !blocks.is_empty() {
            let echo_before = self.echo_before(seg);
            let data_end = self.data_end();
            if let Some(sb) = self.loss.scoreboard() {
                self.rack
                    .on_sack(blocks, sb, data_end, env.now, &echo_before);
            }
        }
        if self
            .rack
            .commit(self.snd_una, self.snd_max, is_dsack(blocks, ack))
        {
            self.rack_detect(env, timers);
        }
        if self.rack.has_lost() && self.recovery.is_none() {
            self.enter_fast_recovery(env, timers);
        }
        if delivered && self.recovery.is_some() {
            // In recovery the ACK clock is SACKs: each one that delivers
            // data restarts the probe timeout (see `arm_tlp`).
            self.tlp_used = false;
            self.arm_tlp(env.now, timers);
        }
    }

    /// RACK_detect_loss_and_arm_timer() (RFC 8985 6.2 step 5, 6.3).
    fn rack_detect(&mut self, env: &mut Env, timers: &mut TimerTable) -> u64 {
        let reo_wnd = self.rack.reo_wnd(self.recovery.is_some(), self.rtt.srtt());
        let d = self.rack.detect_loss(env.now, reo_wnd);
        env.counters.add("tcp.rack_lost", d.lost);
        env.counters.add("tcp.rack_lost_retransmit", d.lost_rtx);
        timers.set_opt(Timer::Reorder, d.timer);
        d.lost
    }

    /// A D-SACK arrived (RFC 2883): the peer got `block` twice. Below the
    /// highest range we retransmitted it reports a spurious
    /// retransmission (RFC 3708; a duplicate made by the network below it
    /// counts too, which is rare). RACK widens its reordering window from
    /// the same ACK (`rack_on_ack`, RFC 8985 6.2 step 4).
    pub(super) fn on_dsack(&mut self, env: &mut Env, block: (Seq, Seq)) {
        env.counters.inc("tcp.dsack_received");
        if self.rtx_segs > 0 && block.1.le(self.rtx_high) {
            env.counters.inc("tcp.spurious_rtx");
        }
    }

    /// The RACK reordering timer fired (RFC 8985 6.3).
    pub fn on_rack_timer(&mut self, env: &mut Env, timers: &mut TimerTable) {
        if !self.loss.is_rack() {
            return;
        }
        if self.rack_detect(env, timers) > 0 {
            // Counted only when it finds a loss: a timer that finds
            // nothing cost no waiting.
            env.counters.inc("tcp.rack_timer_lost");
        }
        if self.rack.has_lost() && self.recovery.is_none() {
            self.enter_fast_recovery(env, timers);
        }
    }

    /// The end of one ACK's processing for a rate-based controller (BBR):
    /// the delivery-rate sample with the connection's pipe and recovery
    /// state; then, with nothing more queued and room in the window, the
    /// flight is marked application-limited (draft-cheng 3.4).
    pub(super) fn rate_sample_on_ack(&mut self, env: &mut Env) {
        if !self.cc.wants_rate_samples() {
            return;
        }
        let in_flight = if self.loss.is_rack() {
            self.rack.pipe()
        } else {
            self.bytes_in_flight()
        };
        if let Some(mut rs) = self.rack.take_rate_sample() {
            rs.in_flight = in_flight;
            rs.in_recovery = self.recovery.is_some();
            self.cc.on_rate_sample(env.now, &rs);
        }
        let unsent = (self.data_end() + usize::from(self.fin_queued)).distance_from(self.snd_max);
        if unsent == 0 && in_flight + self.mss < self.cc.cwnd() {
            self.rack.mark_app_limited();
        }
    }

    /// The first lost range to retransmit, clipped to what is still
    /// un-SACKed and to one segment: (seq, data length; FIN follows when
    /// it ends at the end of the data).
    pub(super) fn next_lost(&mut self) -> Option<(Seq, usize)> {
        // Each pass marks one record SACKed or returns: bounded.
        let sb = self.loss.scoreboard()?;
        while let Some((start, end)) = self.rack.first_lost() {
            match sb.first_hole(start, end) {
                Some((s, e)) => {
                    let data_end = e.min(self.data_end());
                    return Some((s, data_end.distance_from(s).min(self.mss)));
                }
                None => self.rack.sacked_range(start, end),
            }
        }
        None
    }
}

/// RFC 2883 4: the first block reports a duplicate when it lies below
/// the cumulative ACK or inside the second block.
pub(super) fn is_dsack(blocks: &[(Seq, Seq)], ack: Seq) -> bool {
    match blocks {
        [(_, e), ..] if e.le(ack) => true,
        [(s, e), (s2, e2), ..] => s2.le(*s) && e.le(*e2),
        _ => false,
    }
}
