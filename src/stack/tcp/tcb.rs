//! The transmission control block (RFC 9293 3.3.1): one connection's
//! state, addresses and options, its two halves (`Sender`, `Receiver`)
//! and its timer table. Behaviour lives in `input.rs` (segment arrival),
//! `output.rs` (segments out), `timer.rs` (expiries) and in the halves.

use std::io::ErrorKind;
use std::net::SocketAddrV4;
use std::time::Duration;

use super::buffer::BufferPool;
use super::cc::CcAlgorithm;
use super::config::TcpConfig;
use super::receiver::Receiver;
use super::rmem::RcvMem;
use super::rtt::Nanos;
use super::sender::Sender;
use super::seq::Seq;
use super::state::TcpState;
use super::timer::{Timer, TimerTable};
use crate::stack::counters::Counters;
use crate::stack::time::Instant;

/// Bytes of a timestamp option as carried on every segment (NOP NOP TS).
pub const TS_OVERHEAD: usize = 12;

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
    /// Where receive storage comes from, and the account it is charged to.
    pub pool: &'a mut BufferPool,
    pub rmem: &'a mut RcvMem,
}

/// Per-connection options that sockets inherit from a listener.
#[derive(Clone, Debug)]
pub struct SockOpts {
    pub rx_buffer: usize,
    pub tx_buffer: usize,
    pub nodelay: bool,
    /// (idle, interval, probes); idle `Nanos::NONE` when off. Not an
    /// `Option<(Duration, Duration, u32)>`: 24 bytes instead of 40 in
    /// every connection's block (issue 15).
    keepalive: (Nanos, Nanos, u32),
    pub cc: super::cc::CcAlgorithm,
}

impl SockOpts {
    pub fn from_config(cfg: &TcpConfig) -> SockOpts {
        let mut o = SockOpts {
            rx_buffer: cfg.rx_buffer,
            tx_buffer: cfg.tx_buffer,
            nodelay: false,
            keepalive: (Nanos::NONE, Nanos::NONE, 0),
            cc: cfg.cc,
        };
        o.set_keepalive(cfg.keepalive);
        o
    }

    /// Keepalive (RFC 1122 4.2.3.6): `(idle, interval, probes)`.
    pub fn keepalive(&self) -> Option<(Duration, Duration, u32)> {
        let (idle, interval, probes) = self.keepalive;
        Some((idle.get()?, interval.dur(), probes))
    }

    /// Sets or (`None`) clears keepalive.
    pub fn set_keepalive(&mut self, ka: Option<(Duration, Duration, u32)>) {
        self.keepalive = match ka {
            Some((idle, interval, probes)) => (Nanos::of(idle), Nanos::of(interval), probes),
            None => (Nanos::NONE, Nanos::NONE, 0),
        };
    }
}

/// One connection. Fields are `pub(super)` where the connection's
/// behaviour, which is `impl Tcb` in the sibling modules `input.rs`,
/// `output.rs`, `timer.rs` and `info.rs`, reads or changes them; the
/// layer (`mod.rs`, `api.rs`, `listen.rs`) goes through methods for the
/// rest.
#[derive(Debug)]
pub struct Tcb {
    /// Changed through `set_state` (which raises a readiness event), but
    /// for the layer's silent moves into and out of TIME-WAIT.
    pub(super) state: TcpState,
    /// The connection's 4-tuple, fixed at creation (the layer's keys).
    pub(super) local: SocketAddrV4,
    pub(super) remote: SocketAddrV4,
    /// Raw handle of the listener this connection came from, until it
    /// is accepted.
    pub(super) parent: Option<u32>,
    opts: SockOpts,

    /// The send half: the send sequence space, the transmit ring, RTT
    /// estimation, congestion control and loss recovery. Its fields are
    /// private: the whole connection and the layer call its methods.
    pub(super) snd: Sender,
    /// The receive half: RCV.NXT, the window, the receive ring and the
    /// out-of-order assembler, TS.Recent, delayed-ACK count, the owed
    /// ACK. Its fields are private too.
    pub(super) rcv: Receiver,

    // Options (RFC 7323, RFC 2018, RFC 9293 3.7.1), set on the SYNs.
    pub(super) our_mss: usize,
    /// Window scaling negotiated (RFC 7323 2.2).
    pub(super) ws_ok: bool,
    /// SACK-permitted exchanged (RFC 2018 2): we send SACK blocks.
    pub(super) sack_ok: bool,

    /// Every deadline of the connection; armed by the halves as well
    /// (passed to them), read by the layer after each event.
    pub(super) timers: TimerTable,
    /// Keepalive probes sent without an answer (RFC 9293 3.8.4).
    pub(super) ka_probes: u32,
    /// When the last segment arrived (keepalive, persist give-up).
    pub(super) last_rx: Instant,

    error: Option<ErrorKind>,
    error_taken: bool,
    /// The last ICMP error (RFC 1122 4.2.3.9): reported by SO_ERROR, and
    /// as the reason when a timer gives up.
    pub(super) soft_error: Option<ErrorKind>,
    /// The application closed its handle.
    pub(super) orphaned: bool,
    /// Set when the state, buffers or error changed (readiness event).
    pub(super) changed: bool,
    /// In the layer's output queue (at most once).
    in_pending: bool,
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
        self.trace_note("drop", reason);
    }

    /// A `--trace` line about this connection: `what: detail`.
    pub fn trace_note(&self, what: &str, detail: &str) {
        log::debug!(target: "tapstack::trace", "{} <-> {} {} {}: {}",
            self.local, self.remote, self.state, what, detail);
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

    /// The application shut down writing (CLOSE or SHUTDOWN, RFC 9293
    /// 3.10.4): a FIN follows the queued data.
    pub fn shutdown_write(&mut self) {
        self.snd.queue_fin();
        self.close_send_side();
    }

    /// With a FIN queued, the state that sends it (3.10.4): from
    /// ESTABLISHED to FIN-WAIT-1, from CLOSE-WAIT to LAST-ACK. Called at
    /// once on shutdown, and again after each event, for a shutdown made
    /// before the handshake completed.
    pub fn close_send_side(&mut self) {
        if self.snd.fin_queued() {
            match self.state {
                TcpState::Established => self.set_state(TcpState::FinWait1),
                TcpState::CloseWait => self.set_state(TcpState::LastAck),
                _ => {}
            }
        }
    }

    /// Passive OPEN answered a SYN: a child of listener `lraw`, from
    /// LISTEN to SYN-RECEIVED.
    pub fn open_passive(&mut self, lraw: u32) {
        self.state = TcpState::Listen;
        self.parent = Some(lraw);
        self.set_state(TcpState::SynReceived);
    }

    /// The application accepted the connection from its listener.
    pub fn detach_from_listener(&mut self) {
        self.parent = None;
    }

    // ---- the layer's output queue

    /// Claims a place in the layer's output queue: true if the
    /// connection has something to send and was not queued yet.
    pub fn enqueue_output(&mut self) -> bool {
        if self.in_pending || !self.wants_output() {
            return false;
        }
        self.in_pending = true;
        true
    }

    /// The layer took the connection off its output queue to run `output`.
    pub fn dequeue_output(&mut self) {
        self.in_pending = false;
    }

    /// Whether readiness may have changed since the last call.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    // ---- errors

    /// The error that closed the connection, if any.
    pub fn error(&self) -> Option<ErrorKind> {
        self.error
    }

    /// An error not yet reported by `take_error`.
    pub fn error_pending(&self) -> bool {
        self.error.is_some() && !self.error_taken
    }

    /// SO_ERROR: the pending error, once; else the last soft error.
    pub fn take_error(&mut self) -> Option<ErrorKind> {
        if let (Some(e), false) = (self.error, self.error_taken) {
            self.error_taken = true;
            return Some(e);
        }
        self.soft_error.take()
    }

    // ---- socket options

    /// Turns Nagle's algorithm off (`true`) or on.
    pub fn set_nodelay(&mut self, on: bool) {
        self.opts.nodelay = on;
    }

    /// Whether Nagle's algorithm is off (`TCP_NODELAY`).
    pub fn nodelay(&self) -> bool {
        self.opts.nodelay
    }

    /// Keepalive (RFC 1122 4.2.3.6): `(idle, interval, probes)`.
    pub fn keepalive(&self) -> Option<(Duration, Duration, u32)> {
        self.opts.keepalive()
    }

    /// Sets keepalive, armed relative to the last segment received.
    pub fn set_keepalive(&mut self, ka: Option<(Duration, Duration, u32)>) {
        self.opts.set_keepalive(ka);
        self.timers.stop(Timer::Keepalive);
        self.ka_probes = 0;
        let last = self.last_rx;
        self.arm_keepalive(last);
    }

    /// Switches the congestion control (as Linux's `TCP_CONGESTION`).
    pub fn set_congestion_control(&mut self, cc: CcAlgorithm) {
        self.opts.cc = cc;
        self.snd.set_congestion_control(cc, self.last_rx);
    }

    /// Buffer sizes; only before data flows (buffers must be empty).
    pub fn set_buffer_sizes(
        &mut self,
        rx: Option<usize>,
        tx: Option<usize>,
    ) -> Result<(), ErrorKind> {
        if self.state.is_synchronized() || self.rcv.has_unread() || self.snd.has_queued() {
            return Err(ErrorKind::InvalidInput);
        }
        if let Some(r) = rx {
            self.rcv.set_capacity(r);
            self.opts.rx_buffer = r;
        }
        if let Some(s) = tx {
            self.snd.set_capacity(s);
            self.opts.tx_buffer = s;
        }
        Ok(())
    }

    pub fn poll_at(&self) -> Option<Instant> {
        self.timers.next_expiry()
    }

    /// Something should be emitted on the next dispatch.
    pub fn wants_output(&self) -> bool {
        self.rcv.ack_owed() || self.snd.wants_output(self.state)
    }
}
