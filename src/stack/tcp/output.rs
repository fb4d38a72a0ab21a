//! Segment construction (RFC 9293 3.8.6): what to send now, sender SWS
//! avoidance and Nagle (3.8.6.2.1), window updates, ACKs, probes.

use std::time::Duration;

use super::frame;
use super::loss_recovery::LossRecovery;
use super::options::OutHdr;
use super::receiver::Receiver;
use super::seq::Seq;
use super::state::TcpState;
use super::tcb::{Env, Tcb};
use super::timer::Timer;
use crate::stack::ip::IpSink;

/// RFC 9293 3.8.6.2.1: the SWS override timeout lies in 0.1-1.0 s.
const SWS_OVERRIDE_MIN: Duration = Duration::from_millis(100);
const SWS_OVERRIDE_MAX: Duration = Duration::from_secs(1);

/// A segment the next `output` pass must send whatever the windows and
/// Nagle allow. Segment arrival and timers ask for one with `Tcb::owe`
/// (the send itself waits for the layer's dispatch: output is batched).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Owed {
    /// An ACK: out-of-order or duplicate data, a FIN, the delayed-ACK
    /// timer, a window update, or a (challenge) ACK owed to an
    /// unacceptable segment. Any segment carrying an ACK pays it.
    Ack,
    /// The first lost segment (RFC 6675 5 step 4.2, RFC 6298 5.4 with
    /// RACK) or SND.UNA (fast retransmit, NewReno partial ACK), whatever
    /// the pipe.
    RetransmitHead,
    /// The RFC 8985 7.3 loss probe.
    LossProbe,
    /// A zero-window or keepalive probe: `<SEQ=SND.UNA-1>` (RFC 9293
    /// 3.8.6.1, 3.8.4).
    WindowProbe,
    /// The SWS override timeout expired (RFC 9293 3.8.6.2.1): the next
    /// segment that fits goes even if small.
    SwsOverride,
}

/// The set of `Owed` segments of one connection.
#[derive(Copy, Clone, Debug, Default)]
pub struct OwedSegments(u8);

impl OwedSegments {
    fn bit(o: Owed) -> u8 {
        1 << o as u8
    }

    /// Adds `o` (once: asking twice sends one segment).
    pub fn insert(&mut self, o: Owed) {
        self.0 |= Self::bit(o);
    }

    /// Whether `o` is owed.
    pub fn contains(&self, o: Owed) -> bool {
        self.0 & Self::bit(o) != 0
    }

    /// Removes `o`; true if it was owed.
    pub fn take(&mut self, o: Owed) -> bool {
        let had = self.contains(o);
        self.0 &= !Self::bit(o);
        had
    }

    /// Whether nothing is owed.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// Forgets everything owed.
    pub fn clear(&mut self) {
        self.0 = 0;
    }
}

impl Tcb {
    /// Asks the next output pass for segment `o`.
    pub fn owe(&mut self, o: Owed) {
        self.owed.insert(o);
    }

    /// The application shut down writing (CLOSE or SHUTDOWN, RFC 9293
    /// 3.10.4): a FIN follows the queued data.
    pub fn shutdown_write(&mut self) {
        self.fin_queued = true;
        self.close_send_side();
    }

    /// Whether a FIN is queued after the data.
    pub fn fin_queued(&self) -> bool {
        self.fin_queued
    }

    /// With a FIN queued, the state that sends it (3.10.4): from
    /// ESTABLISHED to FIN-WAIT-1, from CLOSE-WAIT to LAST-ACK. Called at
    /// once on shutdown, and again after each event, for a shutdown made
    /// before the handshake completed.
    pub fn close_send_side(&mut self) {
        if self.fin_queued {
            match self.state {
                TcpState::Established => self.set_state(TcpState::FinWait1),
                TcpState::CloseWait => self.set_state(TcpState::LastAck),
                _ => {}
            }
        }
    }

    /// Emits everything due for this connection.
    pub fn output(&mut self, env: &mut Env, ip: &mut dyn IpSink) {
        match self.state {
            TcpState::Closed | TcpState::Listen | TcpState::TimeWait => return,
            TcpState::SynSent | TcpState::SynReceived => {
                if self.snd_nxt == self.iss {
                    self.send_syn(env, ip);
                } else if self.owed.contains(Owed::Ack) {
                    self.send_ack(env, ip, self.snd_max);
                }
                return;
            }
            _ => {}
        }
        if self.owed.take(Owed::RetransmitHead) {
            match self.loss {
                LossRecovery::Rack(_) if self.in_sack_recovery() => {
                    self.retransmit_first_lost(env, ip)
                }
                _ => self.retransmit_una(env, ip),
            }
        }
        if self.owed.take(Owed::LossProbe) {
            self.send_tlp(env, ip);
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
                if !self.send_data(env, ip, seq, len, fin) || budget == 0 {
                    break;
                }
                if let (true, Some(r)) = (rtx, self.recovery.as_mut()) {
                    // RFC 6675 HighRxt: highest retransmitted sequence.
                    r.high_rxt = r.high_rxt.max(seq + len);
                }
            }
        } else {
            while let Some((seq, len, fin)) = self.next_segment() {
                budget -= 1;
                self.snd_nxt = seq;
                if !self.send_data(env, ip, seq, len, fin) || budget == 0 {
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
        if self.owed.take(Owed::WindowProbe) {
            env.counters.inc("tcp.probe_sent");
            self.send_ack(env, ip, self.snd_una - 1);
        }
        if self.owed.contains(Owed::Ack) {
            self.send_ack(env, ip, self.snd_max);
        }
        self.arm_persist(env);
    }

    /// RFC 8985 7.3: the loss probe is one segment of new data if the
    /// receiver's window allows, else the last segment sent again. In
    /// recovery (see `arm_tlp`) the last segment is SACKed or in the
    /// pipe: the head the receiver lacks goes instead, as an RTO's would.
    fn send_tlp(&mut self, env: &mut Env, ip: &mut dyn IpSink) {
        let end = self.data_end();
        let unsent = end.distance_from(self.snd_max);
        let room = (self.snd_una + self.snd_wnd).distance_from(self.snd_max);
        let nxt = self.snd_nxt;
        if unsent > 0 && room > 0 && self.snd_max.le(end) {
            let len = unsent.min(room).min(self.mss);
            let fin = self.fin_queued && self.snd_max + len == end;
            self.send_data(env, ip, self.snd_max, len, fin);
        } else if self.recovery.is_some() {
            self.retransmit_una(env, ip);
            self.restart_rtx(env.now);
        } else {
            // The last segment sent (RFC 8985 7.3), not the tail of what
            // is queued: that may lie past the receiver's window.
            let fin = self.fin_queued && self.snd_max.gt(end);
            let top = if fin { end } else { self.snd_max };
            let len = top.distance_from(self.snd_una).min(self.mss);
            if len == 0 && !fin {
                return;
            }
            self.send_data(env, ip, top - len, len, fin);
            // RFC 8985 7.3: the RTO is re-armed after the probe. As Linux
            // (tcp_rearm_rto), it counts from the head's last send: from
            // now when the probe was the head itself, else unchanged.
            if top - len == self.snd_una {
                self.restart_rtx(env.now);
            }
        }
        self.snd_nxt = nxt.max(self.snd_nxt);
        self.tlp_high = self.snd_max;
    }

    /// RFC 6675 5 step 4.2: the first lost segment goes out at once,
    /// whatever the pipe.
    fn retransmit_first_lost(&mut self, env: &mut Env, ip: &mut dyn IpSink) {
        let Some((seq, len)) = self.next_lost() else {
            return self.retransmit_una(env, ip);
        };
        let fin = self.fin_queued && seq + len == self.data_end();
        self.send_data(env, ip, seq, len, fin);
        if let Some(r) = self.recovery.as_mut() {
            r.high_rxt = r.high_rxt.max(seq + len);
        }
    }

    /// Retransmits the segment at SND.UNA (fast retransmit, partial ACK).
    fn retransmit_una(&mut self, env: &mut Env, ip: &mut dyn IpSink) {
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
        self.send_data(env, ip, una, data, fin);
        self.snd_nxt = nxt.max(self.snd_nxt);
        if let Some(r) = self.recovery.as_mut() {
            r.high_rxt = r.high_rxt.max(una + data);
        }
    }

    /// Outside SACK recovery: the next segment from SND.NXT, if the
    /// windows, Nagle and SWS avoidance allow it.
    fn next_segment(&mut self) -> Option<(Seq, usize, bool)> {
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
        let usable = if rtx {
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
        };
        let len = avail.min(limit).min(usable);
        let fin = fin_pending && len == avail;
        if len == 0 {
            // A bare FIN is sent once all data is out (window permitting
            // nothing else).
            return fin.then_some((seq, 0, true));
        }
        if !rtx && len < self.mss && !self.owed.contains(Owed::SwsOverride) && !fin {
            let all_queued = len == avail;
            let nagle_ok = self.opts.nodelay || self.snd_una == self.snd_max;
            let big = self.max_snd_wnd > 0 && len >= self.max_snd_wnd / 2;
            if !(big || all_queued && nagle_ok) {
                return None;
            }
        }
        self.owed.take(Owed::SwsOverride);
        Some((seq, len, fin))
    }

    /// With data waiting, nothing in flight and a window too small to
    /// use, start the persist timer: for a zero window the probe timer
    /// (RFC 9293 3.8.6.1), backed off per probe; for a small open window
    /// the SWS override timeout (3.8.6.2.1, 0.1-1.0 s; the RTO, 200 ms
    /// on a LAN, as Linux), which does not back off: the peer is taking
    /// the data.
    fn arm_persist(&mut self, env: &mut Env) {
        if !self.state.is_synchronized() || self.snd_una != self.snd_max {
            return;
        }
        let unsent = self.data_end().distance_from(self.snd_max);
        if unsent == 0
            || self.snd_wnd >= unsent.min(self.mss)
            || self.timers.is_armed(Timer::Persist)
        {
            return;
        }
        let d = if self.snd_wnd == 0 {
            let shift = self.persist_backoff.min(16);
            self.rto().saturating_mul(1 << shift).min(env.cfg.max_rto)
        } else {
            self.rtt
                .base_rto()
                .clamp(SWS_OVERRIDE_MIN, SWS_OVERRIDE_MAX)
        };
        self.timers.set(Timer::Persist, env.now + d);
    }

    /// Sends `[seq, seq+len)` of the send buffer (plus FIN) and does the
    /// bookkeeping: SND.NXT/SND.MAX, retransmission counters, Karn, timer.
    fn send_data(
        &mut self,
        env: &mut Env,
        ip: &mut dyn IpSink,
        seq: Seq,
        len: usize,
        fin: bool,
    ) -> bool {
        // The D-SACK block `header` takes and puts first, if any.
        let dsack = self.rcv.pending_dsack();
        let mut hdr = self.header(env, seq);
        // SND.MSS leaves room for the timestamp option only: SACK blocks
        // on a full-sized segment made a 1520-byte packet that IP had to
        // fragment (and a lost fragment loses the segment). Drop the
        // blocks that do not fit; a bare ACK carries them after the data.
        let ts = if self.ts_ok {
            super::tcb::TS_OVERHEAD
        } else {
            0
        };
        let blocks = hdr.sack.len();
        while !hdr.sack.is_empty() && hdr.header_len() + len > 20 + ts + self.mss {
            hdr.sack.pop();
        }
        hdr.fin = fin;
        hdr.psh = len > 0 && seq + len == self.data_end();
        let offset = seq.distance_from(self.tx_base);
        let sent = self.transmit(env, ip, &hdr, offset, len);
        if hdr.sack.len() < blocks {
            // RFC 2018 4: "SACK options SHOULD be included in all ACKs
            // which do not ACK the highest sequence number in the data
            // receiver's queue". The data's ACK field does not count: a
            // peer that only ever sees it (this side always has full
            // segments to send, as an echo does) learns of nothing it
            // sent past a lost retransmission and waits for its RTO. (Linux
            // makes the data segment smaller instead.)
            self.owe(Owed::Ack);
            if let Some((s, e)) = dsack
                && hdr.sack.is_empty()
            {
                self.rcv.note_duplicate(s, e);
            }
        }
        let end = seq + len + usize::from(fin);
        if self.loss.is_rack() || self.cc.wants_rate_samples() {
            self.rack.on_send(seq, end, self.snd_max, env.now);
        }
        if seq.lt(self.snd_max) {
            self.rtx_high = self.rtx_high.max(end);
            self.rtx_segs += 1;
            self.rtx_bytes += len as u64;
            env.counters.inc("tcp.retransmitted_segments");
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
        } else if self.timed.is_none() && !self.ts_ok && len > 0 {
            self.timed = Some((seq, env.now));
        }
        let new_data = end.gt(self.snd_max);
        self.snd_nxt = self.snd_nxt.max(end);
        self.snd_max = self.snd_max.max(end);
        if !self.timers.is_armed(Timer::Retransmit) {
            self.timers.set(Timer::Retransmit, env.now + self.rto());
        }
        if new_data {
            self.arm_tlp(env.now);
        }
        sent
    }

    /// A segment without data: ACK, window update, or probe (`seq`
    /// SND.UNA-1, RFC 9293 3.8.6.1 / 3.8.4).
    fn send_ack(&mut self, env: &mut Env, ip: &mut dyn IpSink, seq: Seq) {
        let hdr = self.header(env, seq);
        self.transmit(env, ip, &hdr, 0, 0);
    }

    /// SYN (SYN-SENT) or SYN,ACK (SYN-RECEIVED) with our options.
    fn send_syn(&mut self, env: &mut Env, ip: &mut dyn IpSink) {
        let active = self.state == TcpState::SynSent;
        let retransmit = self.snd_max != self.iss;
        let mut hdr = OutHdr {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq: self.iss,
            syn: true,
            window: self.rcv.syn_window(!active),
            mss: Some(self.our_mss.min(65535) as u16),
            ..OutHdr::default()
        };
        if !active {
            hdr.ack = Some(self.rcv.nxt());
        }
        if env.cfg.window_scaling && (active || self.ws_ok) {
            hdr.wscale = Some(Receiver::wscale_for(self.rcv.capacity()));
        }
        hdr.sack_perm = env.cfg.sack && (active || self.sack_ok);
        if env.cfg.timestamps && (active || self.ts_ok) {
            hdr.ts = Some((
                self.ts_now(env.now),
                if active { 0 } else { self.rcv.ts_recent() },
            ));
        }
        self.transmit(env, ip, &hdr, 0, 0);
        if retransmit {
            self.rtx_segs += 1;
            env.counters.inc("tcp.syn_retransmitted");
        } else {
            self.timed = Some((self.iss, env.now));
        }
        self.snd_nxt = self.iss + 1;
        self.snd_max = self.snd_max.max(self.snd_nxt);
        self.timers.set(Timer::Retransmit, env.now + self.rto());
    }

    /// Header fields common to every synchronized-state segment.
    fn header(&mut self, env: &Env, seq: Seq) -> OutHdr {
        let mut hdr = OutHdr {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq,
            ..OutHdr::default()
        };
        if self.ts_ok {
            hdr.ts = Some((self.ts_now(env.now), 0));
        }
        self.rcv.fill_ack(&mut hdr);
        hdr
    }

    /// Writes one segment through the IP layer. Any segment carrying an
    /// ACK satisfies pending (delayed) ACKs.
    fn transmit(
        &mut self,
        env: &mut Env,
        ip: &mut dyn IpSink,
        hdr: &OutHdr,
        offset: usize,
        len: usize,
    ) -> bool {
        if hdr.ack.is_some() {
            self.rcv.on_ack_sent();
            self.owed.take(Owed::Ack);
            self.timers.stop(Timer::DelayedAck);
        }
        let payload = self.tx.slices(offset, len);
        let addrs = (*self.local.ip(), *self.remote.ip());
        let ok = frame::send(env.cfg, env.now, ip, addrs, hdr, payload);
        env.counters.inc("tcp.segments_sent");
        if !ok {
            env.counters.inc("tcp.ip_send_failed");
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owed_segments_are_a_set() {
        let mut o = OwedSegments::default();
        assert!(o.is_empty());
        o.insert(Owed::Ack);
        o.insert(Owed::Ack);
        o.insert(Owed::WindowProbe);
        assert!(o.contains(Owed::Ack) && o.contains(Owed::WindowProbe));
        assert!(!o.contains(Owed::LossProbe) && !o.contains(Owed::SwsOverride));
        assert!(o.take(Owed::Ack));
        assert!(!o.take(Owed::Ack), "asked twice, owed once");
        assert!(!o.contains(Owed::Ack) && o.contains(Owed::WindowProbe));
        assert!(!o.is_empty());
        o.clear();
        assert!(o.is_empty());
    }
}
