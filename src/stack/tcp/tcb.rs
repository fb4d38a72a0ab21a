//! The transmission control block (RFC 9293 3.3.1): one connection's
//! state, addresses and options, its two halves (`Sender`, `Receiver`)
//! and its timer table. Behaviour lives in `input.rs` (segment arrival),
//! `output.rs` (segments out), `timer.rs` (expiries) and in the halves.

use std::io::ErrorKind;
use std::net::SocketAddrV4;
use std::time::Duration;

use super::config::TcpConfig;
use super::receiver::Receiver;
use super::sender::Sender;
use super::seq::Seq;
use super::state::TcpState;
use super::timer::TimerTable;
use crate::stack::counters::Counters;
use crate::stack::time::Instant;

/// Bytes of a timestamp option as carried on every segment (NOP NOP TS).
pub const TS_OVERHEAD: usize = 12;

/// Layer-wide RFC 5961 section 7 challenge-ACK limiter.
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

    /// The send half: the send sequence space, the transmit ring, RTT
    /// estimation, congestion control and loss recovery.
    pub snd: Sender,
    /// The receive half: RCV.NXT, the window, the receive ring and the
    /// out-of-order assembler, TS.Recent, delayed-ACK count.
    pub rcv: Receiver,

    // Options (RFC 7323, RFC 2018, RFC 9293 3.7.1).
    pub our_mss: usize,
    /// Window scaling negotiated (RFC 7323 2.2).
    pub ws_ok: bool,
    /// SACK-permitted exchanged (RFC 2018 2): we send SACK blocks.
    pub sack_ok: bool,

    /// Every deadline of the connection.
    pub timers: TimerTable,
    pub ka_probes: u32,
    pub last_rx: Instant,

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
            snd: Sender::new(now, cfg, opts.tx_buffer, opts.cc, mss, iss, ts_offset),
            rcv: Receiver::new(opts.rx_buffer, mss, now),
            our_mss: mss,
            ws_ok: false,
            sack_ok: false,
            timers: TimerTable::default(),
            ka_probes: 0,
            last_rx: now,
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
        self.snd.forget_due();
        self.rcv.forget_ack();
        self.changed = true;
    }

    pub fn poll_at(&self) -> Option<Instant> {
        self.timers.next_expiry()
    }

    /// Something should be emitted on the next dispatch.
    pub fn wants_output(&self) -> bool {
        self.rcv.ack_owed() || self.snd.wants_output(self.state)
    }
}
