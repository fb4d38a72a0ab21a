//! The transmission control block (RFC 9293 3.3.1): everything one
//! connection remembers. Behaviour lives in `input.rs`, `output.rs`,
//! `recovery.rs` and `timer.rs`.

use std::io::ErrorKind;
use std::net::SocketAddrV4;
use std::time::Duration;

use super::buffer::RingBuffer;
use super::cc::{CongestionControl, CwndUse, new_congestion_control};
use super::config::TcpConfig;
use super::loss_recovery::LossRecovery;
use super::output::OwedSegments;
use super::rack::Rack;
use super::receiver::Receiver;
use super::rtt::RttEstimator;
use super::seq::Seq;
use super::state::TcpState;
use super::timer::{Timer, TimerTable};
use crate::stack::counters::Counters;
use crate::stack::time::Instant;

/// Bytes of a timestamp option as carried on every segment (NOP NOP TS).
pub const TS_OVERHEAD: usize = 12;
/// RFC 9293 3.7.1: default send MSS when the peer sends no MSS option.
pub const DEFAULT_MSS: usize = 536;
/// RFC 8985 7.2 WCDelAckT: the longest a peer may delay its ACK of one
/// segment (200 ms recommended; Linux's TCP_DELACK_MAX).
pub const WC_DEL_ACK_T: Duration = Duration::from_millis(200);

/// Layer-wide RFC 5961 section 7 challenge-ACK cap (off unless
/// `TcpConfig::challenge_ack_limit` sets one); the per-connection limit
/// is the receiver's.
#[derive(Debug, Default)]
pub struct ChallengeLimiter {
    window_start: Instant,
    count: u32,
}

impl ChallengeLimiter {
    /// True if one more challenge ACK may be sent now.
    pub fn allow(&mut self, now: Instant, limit: u32) -> bool {
        if now - self.window_start >= Duration::from_secs(1) {
            self.window_start = now;
            self.count = 0;
        }
        if self.count >= limit {
            return false;
        }
        self.count += 1;
        true
    }
}

/// What a TCB needs from the layer while it processes an event.
pub struct Env<'a> {
    pub now: Instant,
    pub cfg: &'a TcpConfig,
    pub counters: &'a mut Counters,
    pub challenge: &'a mut ChallengeLimiter,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RecoveryKind {
    /// Fast retransmit / fast recovery (RFC 5681 3.2, RFC 6582, RFC 6675).
    Fast,
    /// After a retransmission timeout (go-back-N from SND.UNA).
    Rto,
}

#[derive(Copy, Clone, Debug)]
pub struct Recovery {
    pub kind: RecoveryKind,
    /// When it began.
    pub started: Instant,
    /// RFC 6582 "recover" / RFC 6675 RecoveryPoint: SND.MAX at entry.
    pub recover: Seq,
    /// RFC 6675 HighRxt.
    pub high_rxt: Seq,
}

/// Per-connection options that sockets inherit from a listener.
#[derive(Clone, Debug)]
pub struct SockOpts {
    pub rx_buffer: usize,
    pub tx_buffer: usize,
    pub nodelay: bool,
    pub keepalive: Option<(Duration, Duration, u32)>,
    pub cc: super::cc::CcAlgorithm,
}

impl SockOpts {
    pub fn from_config(cfg: &TcpConfig) -> SockOpts {
        SockOpts {
            rx_buffer: cfg.rx_buffer,
            tx_buffer: cfg.tx_buffer,
            nodelay: false,
            keepalive: cfg.keepalive,
            cc: cfg.cc,
        }
    }
}

#[derive(Debug)]
pub struct Tcb {
    pub state: TcpState,
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    /// Raw handle of the listener this connection came from.
    pub parent: Option<u32>,
    pub opts: SockOpts,

    // Send sequence space (RFC 9293 3.3.1) plus SND.MAX, the highest
    // sequence number sent (SND.NXT is pulled back for go-back-N).
    pub iss: Seq,
    pub snd_una: Seq,
    pub snd_nxt: Seq,
    pub snd_max: Seq,
    pub snd_wnd: usize,
    pub snd_wl1: Seq,
    pub snd_wl2: Seq,
    pub max_snd_wnd: usize,
    pub tx: RingBuffer,
    /// Sequence number of `tx[0]`.
    pub tx_base: Seq,
    /// The application shut down writing: FIN follows the queued data.
    pub fin_queued: bool,

    /// The receive half: RCV.NXT, the window, the receive ring and the
    /// out-of-order assembler, TS.Recent, delayed-ACK count.
    pub rcv: Receiver,

    // Options (RFC 7323, RFC 2018, RFC 9293 3.7.1).
    pub mss: usize,
    pub our_mss: usize,
    pub snd_wscale: u8,
    /// Window scaling negotiated (RFC 7323 2.2).
    pub ws_ok: bool,
    /// SACK-permitted exchanged (RFC 2018 2): we send SACK blocks.
    pub sack_ok: bool,
    pub ts_ok: bool,
    pub ts_offset: u32,

    // Retransmission and timers.
    pub rtt: RttEstimator,
    /// Every deadline of the connection.
    pub timers: TimerTable,
    /// Segments the next output pass must send.
    pub owed: OwedSegments,
    /// RFC 8985 7 tail loss probe: whether this flight already had one,
    /// and the sequence number the probe ended at.
    pub tlp_used: bool,
    pub tlp_high: Seq,
    pub retries: u32,
    /// Karn: the segment being timed (without timestamps).
    pub timed: Option<(Seq, Instant)>,
    pub persist_backoff: u32,
    /// When the last zero-window probe left, and how many in a row met
    /// silence (no segment at all from the peer since the one before).
    pub probe_sent_at: Option<Instant>,
    pub probes_unanswered: u32,
    pub ka_probes: u32,
    pub last_rx: Instant,

    // Congestion control and loss recovery.
    pub cc: Box<dyn CongestionControl>,
    /// Whether cwnd limited the last window of data (RFC 7661).
    pub cwnd_use: CwndUse,
    pub dupacks: u32,
    pub recovery: Option<Recovery>,
    pub inflation: usize,
    /// Loss detection and recovery, chosen at negotiation.
    pub loss: LossRecovery,
    /// Per-segment transmit records: RACK's (RFC 8985 6.1) and the
    /// delivery-rate estimator's, which rate-based congestion control
    /// uses whatever `loss` is.
    pub rack: Rack,

    pub rtx_segs: u64,
    pub rtx_bytes: u64,
    /// End of the highest range ever retransmitted: a D-SACK below it
    /// reports a spurious retransmission (RFC 2883 / RFC 3708).
    pub rtx_high: Seq,

    pub error: Option<ErrorKind>,
    pub error_taken: bool,
    pub soft_error: Option<ErrorKind>,
    /// The application closed its handle.
    pub orphaned: bool,
    /// Set when the state, buffers or error changed (readiness event).
    pub changed: bool,
    pub in_pending: bool,
}

impl Tcb {
    pub fn new(
        now: Instant,
        cfg: &TcpConfig,
        opts: SockOpts,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: Seq,
        ts_offset: u32,
    ) -> Tcb {
        let mss = cfg.mss.max(64);
        Tcb {
            state: TcpState::Closed,
            local,
            remote,
            parent: None,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            snd_wl1: Seq(0),
            snd_wl2: iss,
            max_snd_wnd: 0,
            tx: RingBuffer::new(opts.tx_buffer),
            tx_base: iss + 1,
            fin_queued: false,
            rcv: Receiver::new(opts.rx_buffer, mss, now),
            mss: DEFAULT_MSS.min(mss),
            our_mss: mss,
            snd_wscale: 0,
            ws_ok: false,
            sack_ok: false,
            ts_ok: false,
            ts_offset,
            timers: TimerTable::default(),
            rtt: RttEstimator::new(cfg.initial_rto, cfg.min_rto, cfg.max_rto),
            owed: OwedSegments::default(),
            tlp_used: false,
            tlp_high: Seq(0),
            retries: 0,
            timed: None,
            persist_backoff: 0,
            probe_sent_at: None,
            probes_unanswered: 0,
            ka_probes: 0,
            last_rx: now,
            cc: new_congestion_control(opts.cc, DEFAULT_MSS.min(mss), now),
            cwnd_use: CwndUse::default(),
            dupacks: 0,
            recovery: None,
            inflation: 0,
            loss: LossRecovery::NewReno,
            rack: Rack::new(),
            rtx_segs: 0,
            rtx_bytes: 0,
            rtx_high: iss,
            error: None,
            error_taken: false,
            soft_error: None,
            orphaned: false,
            changed: true,
            in_pending: false,
            opts,
        }
    }

    pub fn set_state(&mut self, new: TcpState) {
        if self.state != new {
            log::debug!(target: "tapstack::trace", "{} <-> {} {} -> {}",
                self.local, self.remote, self.state, new);
            self.state = new;
            self.changed = true;
        }
    }

    pub fn trace_drop(&self, reason: &str) {
        log::debug!(target: "tapstack::trace", "{} <-> {} {} drop: {}",
            self.local, self.remote, self.state, reason);
    }

    /// Closes with an error visible to the application.
    pub fn fail(&mut self, kind: ErrorKind) {
        if self.error.is_none() {
            self.error = Some(kind);
        }
        self.enter_closed();
    }

    pub fn enter_closed(&mut self) {
        self.set_state(TcpState::Closed);
        self.timers.stop_all();
        self.owed.clear();
        self.changed = true;
    }

    /// One past the last byte of queued data.
    pub fn data_end(&self) -> Seq {
        self.tx_base + self.tx.len()
    }

    /// Our FIN was sent and acknowledged.
    pub fn fin_acked(&self) -> bool {
        self.fin_queued && self.tx.is_empty() && self.snd_una == self.tx_base + 1
    }

    /// Sequence space sent and not yet acknowledged.
    pub fn bytes_outstanding(&self) -> usize {
        self.snd_max.distance_from(self.snd_una)
    }

    /// RFC 6675 style estimate of bytes in the network.
    pub fn bytes_in_flight(&self) -> usize {
        self.bytes_outstanding()
            .saturating_sub(self.loss.sacked_bytes())
    }

    pub fn ts_now(&self, now: Instant) -> u32 {
        (now.total_millis() as u32).wrapping_add(self.ts_offset)
    }

    /// Effective send MSS given negotiated options (RFC 9293 3.7.1).
    pub fn set_send_mss(&mut self, peer_mss: Option<u16>) {
        let peer = peer_mss.map(usize::from).unwrap_or(DEFAULT_MSS);
        let mut mss = peer.min(self.our_mss);
        if self.ts_ok {
            mss = mss.saturating_sub(TS_OVERHEAD);
        }
        self.mss = mss.max(64);
        self.cc.set_mss(self.mss);
    }

    /// Current retransmission timeout, backoff included.
    pub fn rto(&self) -> Duration {
        self.rtt.rto()
    }

    // ---- read-only views (for `info`, `ss` and tests)

    /// SND.UNA: oldest unacknowledged sequence number.
    pub fn snd_una(&self) -> Seq {
        self.snd_una
    }

    /// SND.NXT: next sequence number to send.
    pub fn snd_nxt(&self) -> Seq {
        self.snd_nxt
    }

    /// SND.WND: the peer's window, scaled, in bytes.
    pub fn snd_wnd(&self) -> usize {
        self.snd_wnd
    }

    /// Congestion window, in bytes.
    pub fn cwnd(&self) -> usize {
        self.cc.cwnd()
    }

    /// Slow-start threshold, in bytes.
    pub fn ssthresh(&self) -> usize {
        self.cc.ssthresh()
    }

    /// Smoothed RTT (RFC 6298), once sampled.
    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }

    /// Segments retransmitted over the connection's life.
    pub fn retransmitted_segments(&self) -> u64 {
        self.rtx_segs
    }

    /// Bytes retransmitted over the connection's life.
    pub fn retransmitted_bytes(&self) -> u64 {
        self.rtx_bytes
    }

    /// Restart or stop the retransmission timer (RFC 6298 5.1-5.3).
    pub fn restart_rtx(&mut self, now: Instant) {
        if self.snd_max == self.snd_una {
            self.timers.stop(Timer::Retransmit);
        } else {
            self.timers.set(Timer::Retransmit, now + self.rto());
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
    pub fn arm_tlp(&mut self, now: Instant) {
        self.timers.stop(Timer::LossProbe);
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
        if self
            .timers
            .get(Timer::Retransmit)
            .is_none_or(|rto| at < rto)
        {
            self.timers.set(Timer::LossProbe, at);
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

    pub fn poll_at(&self) -> Option<Instant> {
        self.timers.next_expiry()
    }

    /// Something should be emitted on the next dispatch.
    pub fn wants_output(&self) -> bool {
        let sack_recovery = self.in_sack_recovery();
        if !self.owed.is_empty() || sack_recovery {
            return true;
        }
        match self.state {
            TcpState::SynSent | TcpState::SynReceived => self.snd_nxt == self.iss,
            TcpState::Closed | TcpState::Listen | TcpState::TimeWait => false,
            _ => {
                let end = self.data_end() + usize::from(self.fin_queued);
                self.snd_nxt.lt(end)
            }
        }
    }
}
