//! Segment arrival for a connection (RFC 9293 section 3.10.7.3 and
//! 3.10.7.4, with RFC 5961 and RFC 7323 checks).

use std::io::ErrorKind;

use super::options::InSeg;
use super::receiver::{AckDue, FinArrival};
use super::seq::Seq;
use super::state::TcpState;
use super::tcb::{Env, Tcb};
use super::timer::Timer;

/// A reset the layer must send right away: `<SEQ=seq><CTL=RST>`, or with
/// `ack` set `<SEQ=0><ACK=ack><CTL=RST,ACK>`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RstReply {
    pub seq: Seq,
    pub ack: Option<Seq>,
}

impl RstReply {
    /// The reset RFC 9293 3.10.7.1 sends for a segment no connection
    /// accepts: `<SEQ=SEG.ACK><CTL=RST>` if it carries an ACK, else
    /// `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`.
    pub fn for_segment(seg: &InSeg) -> RstReply {
        match seg.ack {
            Some(ack) => RstReply {
                seq: ack,
                ack: None,
            },
            None => RstReply {
                seq: Seq(0),
                ack: Some(seg.seq + seg.seg_len()),
            },
        }
    }
}

impl Tcb {
    /// Processes one segment addressed to this connection.
    pub fn input(&mut self, env: &mut Env, seg: &InSeg) -> Option<RstReply> {
        self.last_rx = env.now;
        self.ka_probes = 0;
        match self.state {
            TcpState::SynSent => self.input_syn_sent(env, seg),
            TcpState::Closed | TcpState::Listen | TcpState::TimeWait => None,
            _ => self.input_synchronized(env, seg),
        }
    }

    /// RFC 9293 3.10.7.3.
    fn input_syn_sent(&mut self, env: &mut Env, seg: &InSeg) -> Option<RstReply> {
        if let Some(ack) = seg.ack
            && !self.snd.acks_syn(ack)
        {
            env.counters.inc("tcp.syn_sent_bad_ack");
            self.trace_drop("unacceptable ACK in SYN-SENT");
            // Our SYN may have met a stale half-open connection whose
            // answer we are resetting: as Linux (tcp_rcv_synsent_state_process,
            // "Previous FIN/ACK or RST/ACK might be ignored"), the SYN goes
            // again at once, unless it was already retransmitted, instead
            // of after the 1 s initial RTO (RFC 6298 2.1).
            self.snd.hasten_syn_retransmit(env.now, &mut self.timers);
            return (!seg.rst).then_some(RstReply {
                seq: ack,
                ack: None,
            });
        }
        if seg.rst {
            if seg.ack.is_some() {
                // RFC 9293: "error: connection reset" (refused).
                self.fail(ErrorKind::ConnectionRefused);
            } else {
                env.counters.inc("tcp.syn_sent_rst_no_ack");
            }
            return None;
        }
        if !seg.syn {
            env.counters.inc("tcp.syn_sent_no_syn");
            return None;
        }
        self.rcv.synchronize(seg.seq);
        self.negotiate(env, seg);
        if let Some(ack) = seg.ack {
            self.changed |= self.snd.on_syn_ack(env, &mut self.timers, seg, ack);
            self.set_state(TcpState::Established);
            self.rcv.owe_ack();
            // 3.10.7.3 fourth: "If there are other controls or text in the
            // segment, then continue processing at the sixth step under
            // Section 3.10.7.4": the text, then the FIN (CLOSE-WAIT).
            // (Linux drops both and waits for them again.)
            let at = self.rcv.nxt();
            if !seg.payload.is_empty() {
                self.receive_data(env, at, seg.payload);
            }
            if seg.fin {
                self.receive_fin(env, at + seg.payload.len());
            }
        } else {
            // Simultaneous open (3.5, figure 8): answer with SYN,ACK.
            self.snd.on_syn(seg.seq, seg.window);
            self.set_state(TcpState::SynReceived);
            self.snd.resend_syn();
        }
        None
    }

    /// Options from the peer's SYN (RFC 7323 1.3/2.2, RFC 2018 2, 3.7.1).
    pub fn negotiate(&mut self, env: &Env, seg: &InSeg) {
        let wscale = seg.wscale.filter(|_| env.cfg.window_scaling);
        self.ws_ok = wscale.is_some();
        self.sack_ok = seg.sack_perm && env.cfg.sack;
        let ts_ok = seg.ts.is_some() && env.cfg.timestamps;
        let tsval = seg.ts.filter(|_| ts_ok).map(|(val, _)| val);
        self.rcv.negotiate(self.ws_ok, self.sack_ok, tsval, env.now);
        let (rack, mss) = (env.cfg.rack, self.our_mss);
        self.snd
            .negotiate(wscale, self.sack_ok, rack, ts_ok, seg.mss, mss);
    }

    /// RFC 9293 3.10.7.4 for SYN-RECEIVED and the synchronized states.
    fn input_synchronized(&mut self, env: &mut Env, seg: &InSeg) -> Option<RstReply> {
        if self.state == TcpState::SynReceived
            && seg.syn
            && !seg.rst
            && seg.seq == self.rcv.irs()
            && seg.ack.is_none()
        {
            // Retransmitted SYN: send the SYN,ACK again.
            env.counters.inc("tcp.syn_retransmitted_by_peer");
            self.snd.resend_syn();
            return None;
        }
        if self.paws_reject(env, seg) {
            return None;
        }
        let (payload, fin) = self.acceptable(env, seg)?;
        if seg.rst {
            self.input_rst(env, seg);
            return None;
        }
        if seg.syn && self.state == TcpState::SynReceived && self.parent.is_some() {
            // RFC 9293 3.10.7.4 fourth, SYN-RECEIVED after a passive OPEN:
            // back to LISTEN (RFC 5961 4.2 is for synchronized states).
            // Linux (tcp_check_req, embryonic_reset) also resets the peer.
            env.counters.inc("tcp.syn_received_syn");
            self.orphaned = true;
            self.enter_closed();
            return Some(RstReply::for_segment(seg));
        }
        if seg.syn {
            // RFC 5961 4.2: a SYN in a synchronized state gets a challenge ACK.
            env.counters.inc("tcp.syn_in_window");
            self.challenge_ack(env);
            return None;
        }
        let Some(ack) = seg.ack else {
            env.counters.inc("tcp.no_ack");
            self.trace_drop("no ACK");
            return None;
        };
        if self.state == TcpState::SynReceived {
            if !self.snd.acks_syn(ack) {
                env.counters.inc("tcp.syn_received_bad_ack");
                return Some(RstReply {
                    seq: ack,
                    ack: None,
                });
            }
            self.snd.on_handshake_ack(seg, ack);
            self.set_state(TcpState::Established);
        }
        // A probe's ACK is no duplicate ACK (RFC 5681 2: that signals data
        // arriving out of order).
        let probe = is_probe(seg, self.rcv.nxt());
        if !self.process_ack(env, seg, ack, payload.is_empty() && !fin && !probe) {
            return None;
        }
        if self.state == TcpState::Closed {
            return None;
        }
        if !probe {
            // A probe is below the window: RFC 7323 4.3 (3) records no
            // TSval from it (Linux echoes the earlier one).
            self.update_ts_recent(seg);
        }
        let seq = seg.seq.max(self.rcv.nxt());
        if !payload.is_empty() && self.state.can_receive() {
            self.receive_data(env, seq, payload);
        } else if !payload.is_empty() {
            env.counters.inc("tcp.data_after_fin");
        }
        if fin {
            self.receive_fin(env, seq + payload.len());
        }
        None
    }

    /// RFC 7323 5.3 R1: PAWS. Returns true if the segment is dropped.
    fn paws_reject(&mut self, env: &mut Env, seg: &InSeg) -> bool {
        let (true, Some((tsval, _))) = (self.snd.timestamps(), seg.ts) else {
            return false;
        };
        if seg.rst || !self.rcv.paws_rejects(tsval, env.now) {
            return false;
        }
        env.counters.inc("tcp.paws_rejected");
        self.trace_drop("PAWS");
        self.ack_or_challenge(env, seg);
        true
    }

    /// RFC 7323 4.3 (3): record TS.Recent from a segment covering
    /// Last.ACK.sent.
    fn update_ts_recent(&mut self, seg: &InSeg) {
        if let (true, Some((tsval, _))) = (self.snd.timestamps(), seg.ts) {
            self.rcv.update_ts_recent(seg.seq, tsval, self.last_rx);
        }
    }

    /// The acceptability test (3.10.7.4 table) and trimming to the window.
    /// Returns the payload and FIN that lie inside the window.
    fn acceptable<'s>(&mut self, env: &mut Env, seg: &InSeg<'s>) -> Option<(&'s [u8], bool)> {
        let wnd = self.rcv.wnd();
        let len = seg.seg_len();
        let nxt = self.rcv.nxt();
        let end = nxt + wnd;
        let ok = match (len, wnd) {
            // Zero-length segments: Linux-style inclusive right edge, so a
            // pure ACK sent at SND.MAX after a full window is accepted.
            (0, _) => seg.seq.ge(nxt) && seg.seq.le(end),
            (_, 0) => false,
            _ => seg.seq.in_range(nxt, end) || (seg.seq + (len - 1)).in_range(nxt, end),
        };
        if !ok {
            if seg.rst {
                env.counters.inc("tcp.rst_out_of_window");
                self.trace_drop("RST out of window");
                return None;
            }
            self.ack_or_challenge(env, seg);
            let data_start = seg.seq + usize::from(seg.syn);
            // A FIN's sequence number is reported too (RFC 2883 4: the
            // segment's sequence space; Linux tcp_send_dupack, end_seq).
            let data_end = data_start + seg.payload.len() + usize::from(seg.fin);
            if data_end.le(nxt) {
                // RFC 2883 4.1.1: data we already have.
                self.rcv.note_duplicate(data_start, data_end);
            }
            // 3.10.7.4: with a zero window, still process the ACK of a
            // segment at RCV.NXT (its data is dropped).
            if wnd == 0 && seg.seq == nxt {
                if seg.seg_len() > 0 {
                    env.counters.inc("tcp.zero_window_drop");
                }
                return Some((&[], false));
            }
            if is_probe(seg, nxt) {
                // A zero-window probe or keep-alive (Linux sends both one
                // below RCV.NXT, tcp_xmit_probe_skb, so that they are
                // answered): answered above, and its ACK is processed,
                // the "special allowance ... to accept valid ACKs" of
                // 3.10.7.4. While our receive queue is full they may be
                // the only segments the peer sends; Linux ignores their
                // ACK (tcp_sequence), and so did we: our retransmissions
                // then waited out a backed-off RTO although the peer had
                // acknowledged them, a stall of seconds under loss.
                env.counters.inc("tcp.probe_ack_processed");
                self.trace_note("probe", "answered; its ACK is taken");
                return Some((&[], false));
            }
            env.counters.inc("tcp.out_of_window");
            self.trace_drop("out of window");
            return None;
        }
        let mut payload = seg.payload;
        let mut fin = seg.fin;
        let mut skip = nxt.distance_from(seg.seq);
        if seg.syn && skip > 0 {
            skip -= 1;
        }
        if skip > 0 {
            // RFC 2883 4.1.2: the part below RCV.NXT was a duplicate.
            let data_start = nxt - skip;
            self.rcv
                .note_duplicate(data_start, data_start + skip.min(payload.len()));
            payload = &payload[skip.min(payload.len())..];
        }
        let start = seg.seq.max(nxt);
        let room = end.distance_from(start);
        if payload.len() > room {
            env.counters.inc("tcp.trimmed_beyond_window");
            payload = &payload[..room];
            fin = false;
        }
        Some((payload, fin))
    }

    /// RFC 9293 3.10.7.4 second check with RFC 5961 3.2.
    fn input_rst(&mut self, env: &mut Env, seg: &InSeg) {
        if seg.seq != self.rcv.nxt() {
            env.counters.inc("tcp.rst_challenged");
            self.challenge_ack(env);
            return;
        }
        env.counters.inc("tcp.rst_received");
        match self.state {
            TcpState::SynReceived if self.parent.is_some() => {
                // Passive open: back to LISTEN, i.e. forget this entry.
                self.orphaned = true;
                self.enter_closed();
            }
            TcpState::SynReceived => self.fail(ErrorKind::ConnectionRefused),
            TcpState::Established
            | TcpState::FinWait1
            | TcpState::FinWait2
            | TcpState::CloseWait => self.fail(ErrorKind::ConnectionReset),
            _ => self.enter_closed(),
        }
    }

    /// The ACK owed to an unacceptable segment (RFC 9293 3.10.7.4 first
    /// check); for one with SYN a challenge ACK, whatever its sequence
    /// number (RFC 5961 4.2; Linux tcp_validate_incoming syn_challenge).
    /// An ACK for a segment without data shares the challenge ACKs'
    /// per-connection limit (Linux tcp_oow_rate_limited: no ACK loop at
    /// the peer's rate); one for data is always sent.
    fn ack_or_challenge(&mut self, env: &mut Env, seg: &InSeg) {
        if seg.syn {
            env.counters.inc("tcp.syn_unacceptable");
            self.challenge_ack(env);
        } else if seg.seg_len() > 0 || self.rcv.throttled_ack_allowed(env.now) {
            self.rcv.owe_ack();
        } else {
            env.counters.inc("tcp.oow_ack_limited");
        }
    }

    /// RFC 5961 section 7: rate-limited challenge ACK, per connection
    /// first, then by the layer-wide cap if one is set (Linux
    /// tcp_send_challenge_ack).
    pub fn challenge_ack(&mut self, env: &mut Env) {
        if self.rcv.throttled_ack_allowed(env.now)
            && env.challenge.allow(env.now, env.cfg.challenge_ack_limit)
        {
            env.counters.inc("tcp.challenge_ack_sent");
            self.rcv.owe_ack();
        } else {
            env.counters.inc("tcp.challenge_ack_limited");
        }
    }

    /// The ACK field (3.10.7.4 fifth check). Returns false if the rest of
    /// the segment must be dropped.
    fn process_ack(&mut self, env: &mut Env, seg: &InSeg, ack: Seq, pure: bool) -> bool {
        if let Err((counter, why)) = self.snd.check_ack(ack) {
            env.counters.inc(counter);
            self.trace_drop(why);
            self.challenge_ack(env);
            return false;
        }
        self.changed |= self.snd.on_ack(env, &mut self.timers, seg, ack, pure);
        self.after_ack_state();
        true
    }

    /// State changes once our FIN is acknowledged.
    fn after_ack_state(&mut self) {
        if !self.snd.fin_acked() {
            return;
        }
        match self.state {
            TcpState::FinWait1 => self.set_state(TcpState::FinWait2),
            TcpState::Closing => self.set_state(TcpState::TimeWait),
            TcpState::LastAck => self.enter_closed(),
            _ => {}
        }
    }

    /// Stores in-window data (in order or not) and schedules the ACK.
    fn receive_data(&mut self, env: &mut Env, seq: Seq, data: &[u8]) {
        // Receive storage comes from the pool only when data arrives
        // (shutdown(Read) discards it: none needed).
        if !self.rcv.read_closed() {
            if !self.rcv.admits(seq, data.len(), env.rmem) {
                return self.drop_for_memory(env, seq);
            }
            self.rcv.provide(env.pool);
        }
        let calm = !env.rmem.under_pressure();
        let d = self.rcv.receive_data(seq, data, env.rmem);
        if calm && env.rmem.under_pressure() {
            // Linux's TCPMemoryPressures: each time pressure begins.
            env.counters.inc("tcp.mem_pressure");
        }
        if d.buffer_full {
            env.counters.inc("tcp.rx_buffer_full");
        }
        if d.too_many_holes {
            env.counters.inc("tcp.ooo_too_many_holes");
            self.trace_drop("too many holes");
        }
        if d.out_of_order {
            env.counters.inc("tcp.ooo_segment");
        }
        self.changed |= d.readable;
        self.ack_due(env, d.ack);
        if let Some(f) = d.fin_in_order {
            self.receive_fin(env, f);
        }
    }

    /// In-window data that would need receive storage beyond the layer's
    /// hard limit (`TcpConfig::tcp_mem`) is dropped, as Linux's
    /// tcp_try_rmem_schedule failing does: at RCV.NXT (TCPRcvQDrop) with
    /// an ACK at once, which repeats RCV.NXT and the window already offered
    /// (its right edge never moves left, RFC 9293 3.8.6); beyond a hole
    /// (TCPOFODrop) silently, as tcp_data_queue_ofo. The peer retransmits.
    fn drop_for_memory(&mut self, env: &mut Env, seq: Seq) {
        if seq == self.rcv.nxt() {
            env.counters.inc("tcp.rcvq_drop");
            self.rcv.owe_ack();
        } else {
            env.counters.inc("tcp.ofo_drop");
        }
        self.trace_drop("no receive memory (tcp_mem)");
    }

    /// An ACK is owed now, or within the delayed-ACK timeout (RFC 5681
    /// 4.2; the timer is not pushed back by later segments).
    fn ack_due(&mut self, env: &mut Env, due: AckDue) {
        match due {
            AckDue::Now => self.rcv.owe_ack(),
            AckDue::Delayed => {
                if !self.timers.is_armed(Timer::DelayedAck) {
                    self.timers
                        .set(Timer::DelayedAck, env.now + env.cfg.delayed_ack);
                }
            }
        }
    }

    /// The FIN bit (3.10.7.4 eighth check) at sequence number `at`.
    fn receive_fin(&mut self, env: &mut Env, at: Seq) {
        if self.rcv.receive_fin(at) != FinArrival::Accepted {
            return self.rcv.owe_ack();
        }
        env.counters.inc("tcp.fin_received");
        self.changed = true;
        match self.state {
            TcpState::SynReceived | TcpState::Established => {
                self.set_state(TcpState::CloseWait);
                // The ACK of the FIN is delayed (RFC 1122 4.2.3.2 allows
                // it), as Linux's tcp_fin delays it (pingpong mode): an
                // application that closes at once sends its FIN with the
                // ACK, one segment instead of two.
                return self.ack_due(env, AckDue::Delayed);
            }
            TcpState::FinWait1 if self.snd.fin_acked() => self.set_state(TcpState::TimeWait),
            TcpState::FinWait1 => self.set_state(TcpState::Closing),
            TcpState::FinWait2 => self.set_state(TcpState::TimeWait),
            _ => {}
        }
        self.rcv.owe_ack();
    }

    /// ICMP error about one of our segments (RFC 1122 4.2.3.9, RFC 1191,
    /// RFC 5927 4.1: ignore it unless the quoted seq is in flight).
    /// Returns true if the connection changed.
    pub fn icmp(&mut self, env: &mut Env, icmp_type: u8, code: u8, mtu: u16, seq: Seq) -> bool {
        if !self.snd.in_flight_seq(seq) {
            env.counters.inc("tcp.icmp_stale");
            return false;
        }
        match (icmp_type, code) {
            (3, 4) => {
                // Fragmentation needed: lower the MSS and resend.
                if !self.snd.lower_mss(mtu) {
                    return false;
                }
                env.counters.inc("tcp.icmp_pmtu");
                true
            }
            (3, 2) | (3, 3) if self.state == TcpState::SynSent => {
                env.counters.inc("tcp.icmp_refused");
                self.fail(ErrorKind::ConnectionRefused);
                true
            }
            (3, c) => {
                env.counters.inc("tcp.icmp_soft_error");
                self.soft_error = Some(match c {
                    0 | 6 | 9 | 11 => ErrorKind::NetworkUnreachable,
                    2 | 3 => ErrorKind::ConnectionRefused,
                    _ => ErrorKind::HostUnreachable,
                });
                false
            }
            _ => {
                env.counters.inc("tcp.icmp_ignored");
                false
            }
        }
    }
}

/// Whether `seg` has the shape of a zero-window probe or keep-alive: no
/// data, SYN or FIN, at RCV.NXT - 1 (RFC 9293 3.8.4; Linux
/// tcp_xmit_probe_skb). Callers have dealt with RSTs already.
fn is_probe(seg: &InSeg, nxt: Seq) -> bool {
    seg.seg_len() == 0 && seg.seq == nxt - 1
}
