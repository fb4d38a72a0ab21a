//! The sending half of a connection (RFC 9293 3.3.1 send sequence
//! space): SND.UNA/NXT/MAX and the peer's window, the transmit ring, the
//! RTT estimator (RFC 6298, RFC 7323 4), congestion control, loss
//! recovery (`recovery.rs`, with RACK-TLP in `loss.rs`), the loss probe,
//! persist and retransmission bookkeeping, and what to send next
//! (`transmit.rs`). The deadlines are in the connection's timer table,
//! passed in: `Sender` arms and handles Retransmit, LossProbe, Reorder
//! and Persist.

mod loss;
mod recovery;
mod transmit;

use std::time::Duration;

use super::buffer::{BufferPool, RingBuffer};
use super::cc::{CcAlgorithm, CongestionControl, CwndUse, new_congestion_control};
use super::config::TcpConfig;
use super::loss_recovery::LossRecovery;
use super::options::InSeg;
use super::rack::Rack;
use super::rtt::RttEstimator;
use super::seq::Seq;
use super::state::TcpState;
use super::tcb::{Env, TS_OVERHEAD};
use super::timer::{Timer, TimerTable};
use crate::stack::time::Instant;

/// RFC 9293 3.7.1: default send MSS when the peer sends no MSS option.
pub const DEFAULT_MSS: usize = 536;
/// RFC 8985 7.2 WCDelAckT: the longest a peer may delay its ACK of one
/// segment (200 ms recommended; Linux's TCP_DELACK_MAX).
pub const WC_DEL_ACK_T: Duration = Duration::from_millis(200);

/// What started the recovery under way.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum RecoveryKind {
    /// Fast retransmit / fast recovery (RFC 5681 3.2, RFC 6582, RFC 6675).
    Fast,
    /// After a retransmission timeout (go-back-N from SND.UNA).
    Rto,
}

/// A loss recovery under way.
#[derive(Copy, Clone, Debug)]
struct Recovery {
    kind: RecoveryKind,
    /// When it began.
    started: Instant,
    /// RFC 6582 "recover" / RFC 6675 RecoveryPoint: SND.MAX at entry.
    recover: Seq,
    /// RFC 6675 HighRxt.
    high_rxt: Seq,
}

/// A segment the sender's next output pass sends whatever the windows
/// and Nagle allow, recorded by the event that decided it (an ACK, a
/// timer) and consumed by `Sender::output`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Due {
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

/// The set of `Due` segments (asking twice sends one).
#[derive(Copy, Clone, Debug, Default)]
struct DueSet(u8);

impl DueSet {
    fn bit(d: Due) -> u8 {
        1 << d as u8
    }

    fn insert(&mut self, d: Due) {
        self.0 |= Self::bit(d);
    }

    fn contains(&self, d: Due) -> bool {
        self.0 & Self::bit(d) != 0
    }

    /// Removes `d`; true if it was due.
    fn take(&mut self, d: Due) -> bool {
        let had = self.contains(d);
        self.0 &= !Self::bit(d);
        had
    }

    fn is_empty(&self) -> bool {
        self.0 == 0
    }
}

/// Why a retransmission timeout ended the connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// The SYN (or SYN,ACK) was sent `syn_retries` times unanswered.
    Syn,
    /// Data was retransmitted `max_retries` times unanswered.
    Data,
}

/// The send side of one connection.
#[derive(Debug)]
pub struct Sender {
    // Send sequence space (RFC 9293 3.3.1) plus SND.MAX, the highest
    // sequence number sent (SND.NXT is pulled back for go-back-N).
    iss: Seq,
    snd_una: Seq,
    snd_nxt: Seq,
    snd_max: Seq,
    snd_wnd: usize,
    snd_wl1: Seq,
    snd_wl2: Seq,
    max_snd_wnd: usize,
    tx: RingBuffer,
    /// Sequence number of `tx[0]`.
    tx_base: Seq,
    /// The application shut down writing: FIN follows the queued data.
    fin_queued: bool,

    /// SND.MSS (RFC 9293 3.7.1), less the timestamp option.
    mss: usize,
    /// The peer's window shift (RFC 7323 2.2); 0 unless negotiated.
    snd_wscale: u8,
    /// Timestamps negotiated (RFC 7323): every segment carries TSval.
    ts_ok: bool,
    /// Our TSval clock's offset from `Instant` (RFC 7323 5.4).
    ts_offset: u32,

    rtt: RttEstimator,
    /// Segments the next output pass must send.
    due: DueSet,
    /// RFC 8985 7 tail loss probe: whether this flight already had one,
    /// and the sequence number the probe ended at.
    tlp_used: bool,
    tlp_high: Seq,
    retries: u32,
    /// Karn: the segment being timed (without timestamps).
    timed: Option<(Seq, Instant)>,
    persist_backoff: u32,
    /// When the last zero-window probe left, and how many in a row met
    /// silence (no segment at all from the peer since the one before).
    probe_sent_at: Option<Instant>,
    probes_unanswered: u32,

    // Congestion control and loss recovery.
    cc: Box<dyn CongestionControl>,
    /// Whether cwnd limited the last window of data (RFC 7661).
    cwnd_use: CwndUse,
    dupacks: u32,
    recovery: Option<Recovery>,
    inflation: usize,
    /// Loss detection and recovery, chosen at negotiation.
    loss: LossRecovery,
    /// Per-segment transmit records: RACK's (RFC 8985 6.1) and the
    /// delivery-rate estimator's, which rate-based congestion control
    /// uses whatever `loss` is.
    rack: Rack,

    rtx_segs: u64,
    rtx_bytes: u64,
    /// End of the highest range ever retransmitted: a D-SACK below it
    /// reports a spurious retransmission (RFC 2883 / RFC 3708).
    rtx_high: Seq,
}

impl Sender {
    /// A sender with ISS `iss`, before any segment: a `tx_buffer`-byte
    /// ring, the default MSS capped by ours (`our_mss`).
    pub fn new(
        now: Instant,
        cfg: &TcpConfig,
        tx_buffer: usize,
        cc: CcAlgorithm,
        our_mss: usize,
        iss: Seq,
        ts_offset: u32,
    ) -> Sender {
        let mss = DEFAULT_MSS.min(our_mss);
        Sender {
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            snd_wl1: Seq(0),
            snd_wl2: iss,
            max_snd_wnd: 0,
            tx: RingBuffer::new(tx_buffer),
            tx_base: iss + 1,
            fin_queued: false,
            mss,
            snd_wscale: 0,
            ts_ok: false,
            ts_offset,
            rtt: RttEstimator::new(cfg.initial_rto, cfg.min_rto, cfg.max_rto),
            due: DueSet::default(),
            tlp_used: false,
            tlp_high: Seq(0),
            retries: 0,
            timed: None,
            persist_backoff: 0,
            probe_sent_at: None,
            probes_unanswered: 0,
            cc: new_congestion_control(cc, mss, now),
            cwnd_use: CwndUse::default(),
            dupacks: 0,
            recovery: None,
            inflation: 0,
            loss: LossRecovery::NewReno,
            rack: Rack::new(),
            rtx_segs: 0,
            rtx_bytes: 0,
            rtx_high: iss,
        }
    }

    // ---- negotiation

    /// Options from the peer's SYN: its window shift if both sides scale,
    /// SACK (with RACK if configured), timestamps, its MSS (RFC 7323 2.2,
    /// RFC 2018 2, RFC 9293 3.7.1).
    pub fn negotiate(
        &mut self,
        wscale: Option<u8>,
        sack: bool,
        rack: bool,
        ts: bool,
        peer_mss: Option<u16>,
        our_mss: usize,
    ) {
        self.snd_wscale = wscale.map_or(0, |w| w.min(14));
        self.loss = LossRecovery::negotiated(sack, rack);
        self.ts_ok = ts;
        self.set_send_mss(peer_mss, our_mss);
    }

    /// Effective send MSS given negotiated options (RFC 9293 3.7.1).
    fn set_send_mss(&mut self, peer_mss: Option<u16>, our_mss: usize) {
        let peer = peer_mss.map(usize::from).unwrap_or(DEFAULT_MSS);
        let mut mss = peer.min(our_mss);
        if self.ts_ok {
            mss = mss.saturating_sub(TS_OVERHEAD);
        }
        self.mss = mss.max(64);
        self.cc.set_mss(self.mss);
    }

    /// The peer's SYN (passive open, simultaneous open) offered `window`
    /// (never scaled, RFC 7323 2.2) at sequence number `seq`.
    pub fn on_syn(&mut self, seq: Seq, window: u16) {
        self.snd_wl1 = seq;
        self.snd_wnd = usize::from(window);
        self.max_snd_wnd = self.snd_wnd;
    }

    /// SYN-SENT: the peer's SYN,ACK acknowledged our SYN (3.10.7.3).
    /// True if the application may write more.
    pub fn on_syn_ack(
        &mut self,
        env: &mut Env,
        timers: &mut TimerTable,
        seg: &InSeg,
        ack: Seq,
    ) -> bool {
        self.snd_wl1 = seg.seq;
        self.snd_wnd = usize::from(seg.window) << self.snd_wscale;
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl2 = ack;
        self.on_new_ack(env, timers, seg, ack)
    }

    /// SYN-RECEIVED: the ACK of our SYN,ACK (3.10.7.4 fifth check) sets
    /// the window.
    pub fn on_handshake_ack(&mut self, seg: &InSeg, ack: Seq) {
        self.snd_wnd = usize::from(seg.window) << self.snd_wscale;
        self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
        self.snd_wl1 = seg.seq;
        self.snd_wl2 = ack;
    }

    /// Whether `ack` acknowledges our SYN and nothing unsent.
    pub fn acks_syn(&self, ack: Seq) -> bool {
        ack.gt(self.snd_una) && ack.le(self.snd_max)
    }

    /// SYN-SENT got an unacceptable answer: the SYN goes again at once
    /// unless it was already retransmitted (why: `Tcb::input_syn_sent`).
    pub fn hasten_syn_retransmit(&mut self, now: Instant, timers: &mut TimerTable) {
        if self.retries == 0 {
            timers.set(Timer::Retransmit, now);
        }
    }

    /// The SYN (or SYN,ACK) goes out again on the next output pass.
    pub fn resend_syn(&mut self) {
        self.snd_nxt = self.iss;
    }

    /// A SYN cookie's SYN,ACK was sent (RFC 4987 3.6) for the peer's SYN
    /// at `peer_isn`: our ISS is the cookie and its SYN is out. The
    /// window is learnt from the ACK that returns the cookie.
    pub fn syn_sent_as_cookie(&mut self, peer_isn: Seq) {
        self.snd_nxt = self.iss + 1;
        self.snd_max = self.iss + 1;
        self.snd_wl1 = peer_isn;
    }

    // ---- the application's side

    /// SEND: queues what fits of `data` (storage from `pool`); the bytes
    /// taken.
    pub fn queue(&mut self, data: &[u8], pool: &mut BufferPool) -> usize {
        self.tx.provide(pool);
        self.tx.enqueue(data)
    }

    /// The application shut down writing: a FIN follows the queued data.
    pub fn queue_fin(&mut self) {
        self.fin_queued = true;
    }

    /// Whether a FIN is queued after the data.
    pub fn fin_queued(&self) -> bool {
        self.fin_queued
    }

    /// Whether the ring has room for more data.
    pub fn has_room(&self) -> bool {
        self.tx.free() > 0
    }

    /// Whether data is queued (unsent or unacknowledged).
    pub fn has_queued(&self) -> bool {
        !self.tx.is_empty()
    }

    /// Bytes queued and not yet acknowledged.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// Resizes the empty ring (before the handshake).
    pub fn set_capacity(&mut self, capacity: usize) {
        self.tx.set_capacity(capacity);
    }

    /// Gives the ring's storage back to `pool` if it holds no byte, and
    /// the RACK records' once nothing is outstanding.
    pub fn release_if_idle(&mut self, pool: &mut BufferPool) {
        self.tx.release_if_idle(pool);
        self.rack.release_if_idle();
    }

    /// Gives the ring's storage back to `pool` (the connection is going away).
    pub fn release(&mut self, pool: &mut BufferPool) {
        self.tx.release(pool);
    }

    /// Bytes of storage the ring (and the RACK records) hold now.
    pub fn storage_bytes(&self) -> usize {
        self.tx.storage_bytes() + self.rack.storage_bytes()
    }

    /// Switches the congestion control, restarting the controller if it
    /// changes (as Linux's `TCP_CONGESTION`).
    pub fn set_congestion_control(&mut self, cc: CcAlgorithm, now: Instant) {
        if self.cc.name() != cc.to_string() {
            // Restart the controller (Linux does the same on
            // TCP_CONGESTION): keep cwnd/ssthresh semantics fresh.
            self.cc = new_congestion_control(cc, self.mss, now);
        }
    }

    // ---- sequence space

    /// One past the last byte of queued data.
    pub fn data_end(&self) -> Seq {
        self.tx_base + self.tx.len()
    }

    /// Our FIN was sent and acknowledged.
    pub fn fin_acked(&self) -> bool {
        self.fin_queued && self.tx.is_empty() && self.snd_una == self.tx_base + 1
    }

    /// Sequence space sent and not yet acknowledged.
    fn bytes_outstanding(&self) -> usize {
        self.snd_max.distance_from(self.snd_una)
    }

    /// RFC 6675 style estimate of bytes in the network.
    pub fn bytes_in_flight(&self) -> usize {
        self.bytes_outstanding()
            .saturating_sub(self.loss.sacked_bytes())
    }

    /// Whether `seq` lies in what was sent and not acknowledged
    /// (RFC 5927 4.1: an ICMP error quoting anything else is stale).
    pub fn in_flight_seq(&self, seq: Seq) -> bool {
        seq.ge(self.snd_una) && seq.le(self.snd_max)
    }

    /// Our TSval at `now` (RFC 7323 4.1).
    pub fn ts_now(&self, now: Instant) -> u32 {
        (now.total_millis() as u32).wrapping_add(self.ts_offset)
    }

    /// Fragmentation needed (RFC 1191): lower the MSS to fit `mtu` and go
    /// back to SND.UNA. False when the MSS is already no larger.
    pub fn lower_mss(&mut self, mtu: u16) -> bool {
        let hdr = 40 + if self.ts_ok { TS_OVERHEAD } else { 0 };
        let new_mss = usize::from(mtu).saturating_sub(hdr).max(88);
        if mtu == 0 || new_mss >= self.mss {
            return false;
        }
        self.mss = new_mss;
        self.cc.set_mss(new_mss);
        self.snd_nxt = self.snd_una;
        true
    }

    // ---- read-only views (for `info`, `ss` and the TIME-WAIT entry)

    /// ISS: our initial sequence number.
    pub fn iss(&self) -> Seq {
        self.iss
    }

    /// SND.UNA: oldest unacknowledged sequence number.
    pub fn snd_una(&self) -> Seq {
        self.snd_una
    }

    /// SND.NXT: next sequence number to send.
    pub fn snd_nxt(&self) -> Seq {
        self.snd_nxt
    }

    /// SND.MAX: one past the highest sequence number sent.
    pub fn snd_max(&self) -> Seq {
        self.snd_max
    }

    /// SND.WND: the peer's window, scaled, in bytes.
    pub fn snd_wnd(&self) -> usize {
        self.snd_wnd
    }

    /// The peer's window shift.
    pub fn snd_wscale(&self) -> u8 {
        self.snd_wscale
    }

    /// SND.MSS.
    pub fn mss(&self) -> usize {
        self.mss
    }

    /// Whether timestamps were negotiated (RFC 7323).
    pub fn timestamps(&self) -> bool {
        self.ts_ok
    }

    /// Our TSval clock offset (RFC 7323 5.4).
    pub fn ts_offset(&self) -> u32 {
        self.ts_offset
    }

    /// The congestion controller.
    pub fn cc(&self) -> &dyn CongestionControl {
        self.cc.as_ref()
    }

    /// The RTT estimator.
    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    /// Current retransmission timeout, backoff included.
    pub fn rto(&self) -> Duration {
        self.rtt.rto()
    }

    /// The loss detection in use (its scoreboard).
    pub fn loss(&self) -> &LossRecovery {
        &self.loss
    }

    /// The per-segment transmit records.
    pub fn rack(&self) -> &Rack {
        &self.rack
    }

    /// Segments retransmitted over the connection's life.
    pub fn retransmitted_segments(&self) -> u64 {
        self.rtx_segs
    }

    /// Bytes retransmitted over the connection's life.
    pub fn retransmitted_bytes(&self) -> u64 {
        self.rtx_bytes
    }

    /// Retransmission timeouts in a row without progress.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Linux's ca_state names for where loss recovery is.
    pub fn ca_state(&self) -> &'static str {
        match self.recovery.map(|r| r.kind) {
            Some(RecoveryKind::Fast) => "recovery",
            Some(RecoveryKind::Rto) => "loss",
            None if self.dupacks > 0 => "disorder",
            None => "open",
        }
    }

    // ---- output scheduling

    /// Something should be emitted on the next output pass (ACKs aside:
    /// the receiver owes those).
    pub fn wants_output(&self, state: TcpState) -> bool {
        if !self.due.is_empty() || self.in_sack_recovery() {
            return true;
        }
        match state {
            TcpState::SynSent | TcpState::SynReceived => self.syn_due(),
            TcpState::Closed | TcpState::Listen | TcpState::TimeWait => false,
            _ => {
                let end = self.data_end() + usize::from(self.fin_queued);
                self.snd_nxt.lt(end)
            }
        }
    }

    /// Our SYN (or SYN,ACK) is to be sent.
    pub fn syn_due(&self) -> bool {
        self.snd_nxt == self.iss
    }

    /// The connection closed: nothing more is owed.
    pub fn forget_due(&mut self) {
        self.due = DueSet::default();
    }

    /// A keepalive probe (RFC 9293 3.8.4): `<SEQ=SND.UNA-1>` on the next
    /// output pass.
    pub fn probe_peer(&mut self) {
        self.due.insert(Due::WindowProbe);
    }

    /// Restart or stop the retransmission timer (RFC 6298 5.1-5.3).
    fn restart_rtx(&mut self, now: Instant, timers: &mut TimerTable) {
        if self.snd_max == self.snd_una {
            timers.stop(Timer::Retransmit);
        } else {
            timers.set(Timer::Retransmit, now + self.rto());
        }
    }

    /// RFC 8985 7.2: schedule a probe timeout (PTO) so a lost tail is
    /// found at RTT scale instead of by the retransmission timer (200 ms
    /// at best, ~4000 RTTs on a TAP). PTO = 2*SRTT (at least 1 ms, the
    /// timer granularity RFC 9002 6.1.2 assumes), plus WCDelAckT when one
    /// segment is in flight: the peer may hold its ACK of a lone segment
    /// that long (Linux's delayed ACK grows to 200 ms), and a probe before
    /// it is a spurious retransmission. A PTO at or past the RTO is not
    /// armed: the RTO resends the head once (RFC 6298 5.4).
    ///
    /// As RFC 8985 7.2 asks: only with SACK, and never in RTO recovery.
    /// With RACK the probe is armed in fast recovery, where RFC 8985 7.2
    /// does not: when every segment in flight is lost (a small window at a
    /// few percent loss: the retransmission and what followed it),
    /// nothing is left to deliver for RACK to reason from, and only the
    /// RTO would be left. A probe that gets through lets RACK mark the
    /// rest lost (as QUIC's PTO, RFC 9002 6.2, which runs in recovery). In
    /// recovery the receiver has a hole and ACKs at once (RFC 5681 4.2),
    /// so no delayed-ACK allowance is added.
    fn arm_tlp(&mut self, now: Instant, timers: &mut TimerTable) {
        timers.stop(Timer::LossProbe);
        let fast_recovery = match (&self.loss, self.recovery) {
            (LossRecovery::NewReno, _) => return,
            (_, None) => false,
            (LossRecovery::Rack(_), Some(r)) if r.kind == RecoveryKind::Fast => true,
            (_, Some(_)) => return,
        };
        if self.tlp_used || self.snd_max == self.snd_una {
            return;
        }
        if !fast_recovery && self.rwnd_limited() {
            return;
        }
        let Some(srtt) = self.rtt.srtt() else {
            return;
        };
        let mut pto = (srtt * 2).max(Duration::from_millis(1));
        if self.bytes_in_flight() <= self.mss && !fast_recovery {
            pto += WC_DEL_ACK_T;
        }
        let at = now + pto;
        if timers.get(Timer::Retransmit).is_none_or(|rto| at < rto) {
            timers.set(Timer::LossProbe, at);
        }
    }

    /// Queued data waits for room in the peer's window. Then no loss
    /// probe is armed, and the RTO repeats the head if need be: a probe
    /// could only repeat the last segment (RFC 8985 7.3), and a peer
    /// re-offering a small window after each segment got every segment
    /// twice where Linux waits for its RTO (packetimpact
    /// est_small_window; Linux's tcp_schedule_loss_probe long skipped
    /// connections not limited by cwnd or the application, and current
    /// Linux waits there because its first probe's episode, RFC 8985
    /// 7.4, is still open).
    fn rwnd_limited(&self) -> bool {
        let unsent = (self.data_end() + usize::from(self.fin_queued)).distance_from(self.snd_max);
        let wnd_end = self.snd_una + self.snd_wnd;
        let room = if wnd_end.gt(self.snd_max) {
            wnd_end.distance_from(self.snd_max)
        } else {
            0
        };
        unsent > 0 && room < unsent.min(self.mss)
    }

    // ---- timers

    /// The retransmission timer fired in SYN-SENT or SYN-RECEIVED: the
    /// SYN goes again, backed off, unless it was sent `syn_retries` times.
    pub fn on_syn_timeout(&mut self, cfg: &TcpConfig) -> Result<(), GiveUp> {
        self.retries += 1;
        if self.retries > cfg.syn_retries {
            return Err(GiveUp::Syn);
        }
        self.rtt.backoff();
        self.timed = None;
        self.snd_nxt = self.iss;
        Ok(())
    }

    /// The retransmission timer fired in a synchronized state (RFC 6298
    /// 5.4-5.7), unless `max_retries` expiries in a row went unanswered.
    pub fn on_rto(&mut self, env: &mut Env, timers: &mut TimerTable) -> Result<(), GiveUp> {
        if self.snd_max == self.snd_una {
            return Ok(());
        }
        self.retries += 1;
        if self.retries > env.cfg.max_retries {
            return Err(GiveUp::Data);
        }
        self.on_rto_data(env, timers);
        Ok(())
    }

    /// The probe timeout fired (RFC 8985 7.3): the probe goes on the next
    /// output pass.
    pub fn on_loss_probe_timer(&mut self, env: &mut Env) {
        let allowed = self.recovery.is_none() || self.loss.is_rack();
        if allowed && self.snd_max != self.snd_una && !self.tlp_used {
            env.counters.inc("tcp.tlp_probe");
            self.tlp_used = true;
            self.due.insert(Due::LossProbe);
        }
    }

    /// The persist timer fired. For a zero window a probe is due (RFC
    /// 9293 3.8.6.1). RFC 1122 4.2.2.17: probing goes on as long as the
    /// peer answers, however long its window stays shut. A peer that has
    /// gone silent would hold the connection forever, so as Linux does
    /// (tcp_probe_timer) it fails after `max_retries` probes in a row got
    /// no segment back (`Err`; `last_rx` is when the last segment
    /// arrived). For a small open window it is the SWS override timeout
    /// (3.8.6.2.1): send what fits.
    pub fn on_persist_timer(&mut self, env: &mut Env, last_rx: Instant) -> Result<(), ()> {
        if self.snd_wnd != 0 {
            self.due.insert(Due::SwsOverride);
            return Ok(());
        }
        self.persist_backoff += 1;
        let answered = self.probe_sent_at.is_none_or(|t| last_rx >= t);
        self.probes_unanswered = if answered {
            0
        } else {
            self.probes_unanswered + 1
        };
        if self.probes_unanswered >= env.cfg.max_retries {
            env.counters.inc("tcp.persist_give_up");
            return Err(());
        }
        self.probe_sent_at = Some(env.now);
        self.due.insert(Due::WindowProbe);
        Ok(())
    }

    /// With data waiting, nothing in flight and a window too small to
    /// use, start the persist timer: for a zero window the probe timer
    /// (RFC 9293 3.8.6.1), backed off per probe; for a small open window
    /// the SWS override timeout (3.8.6.2.1, 0.1-1.0 s; the RTO, 200 ms
    /// on a LAN, as Linux), which does not back off: the peer is taking
    /// the data.
    pub fn arm_persist(&mut self, env: &Env, timers: &mut TimerTable) {
        if self.snd_una != self.snd_max {
            return;
        }
        let unsent = self.data_end().distance_from(self.snd_max);
        if unsent == 0 || self.snd_wnd >= unsent.min(self.mss) || timers.is_armed(Timer::Persist) {
            return;
        }
        let d = if self.snd_wnd == 0 {
            let shift = self.persist_backoff.min(16);
            self.rto().saturating_mul(1 << shift).min(env.cfg.max_rto)
        } else {
            self.rtt
                .base_rto()
                .clamp(transmit::SWS_OVERRIDE_MIN, transmit::SWS_OVERRIDE_MAX)
        };
        timers.set(Timer::Persist, env.now + d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_segments_are_a_set() {
        let mut d = DueSet::default();
        assert!(d.is_empty());
        d.insert(Due::LossProbe);
        d.insert(Due::LossProbe);
        d.insert(Due::WindowProbe);
        assert!(d.contains(Due::LossProbe) && d.contains(Due::WindowProbe));
        assert!(!d.contains(Due::RetransmitHead) && !d.contains(Due::SwsOverride));
        assert!(d.take(Due::LossProbe));
        assert!(!d.take(Due::LossProbe), "asked twice, due once");
        assert!(!d.contains(Due::LossProbe) && d.contains(Due::WindowProbe));
        assert!(!d.is_empty());
    }
}
