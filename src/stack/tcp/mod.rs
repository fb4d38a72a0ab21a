//! TCP (RFC 9293): the layer that owns every TCP socket, demultiplexes
//! arriving segments and drives output and timers. Split by concern:
//! `state` (states), `tcb` (connection block), its two halves `sender`
//! (send sequence space, transmit ring, RTT, congestion control, loss
//! recovery; with `sender/recovery`, `sender/loss`, `sender/transmit`)
//! and `receiver`, `input` (segment arrival), `output` (segments out),
//! `timer` (the connection's timer table and expiries), `listen`
//! (backlog), `timewait`, `isn` (ISN and ephemeral ports), `options`
//! (wire format), `api` (socket operations).
//!
//! Calling contract (sans-I/O; the `Stack` documents the whole core's):
//! `receive` segments (they only queue output), then `dispatch` runs the
//! timers and sends the one output queue in order; sleep until `poll_at`;
//! `take_events` tells which handles may have changed readiness.

pub mod assembler;
pub mod buffer;
pub mod cc;
pub mod rtt;
pub mod sack;
pub mod seq;

mod api;
pub mod config;
mod frame;
mod info;
mod input;
mod isn;
mod listen;
mod loss_recovery;
mod options;
mod output;
mod rack;
mod receiver;
mod rmem;
mod sender;
pub mod state;
mod syncookie;
mod tcb;
mod timer;
mod timers;
mod timewait;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};

pub use api::TcpInfo;
pub use cc::CcAlgorithm;
pub use config::{TcpConfig, TcpMem};
pub use state::TcpState;

use self::buffer::BufferPool;
use self::input::RstReply;
use self::isn::Secret;
use self::listen::Listener;
use self::options::{InSeg, OutHdr, ParseError};
use self::rmem::RcvMem;
use self::seq::Seq;
use self::tcb::{ChallengeLimiter, Env, Tcb};
use self::timer::Timer;
use self::timers::Timers;
use self::timewait::{MAX_TIME_WAIT, TimeWaitTable, TwEntry, TwVerdict};
use crate::stack::counters::Counters;
use crate::stack::ip::IpSink;
use crate::stack::ip::RxChecksum;
use crate::stack::rng::Rng;
use crate::stack::time::Instant;

/// A socket handle: slot index (low 20 bits) and generation (high 12), so
/// a stale handle never reaches another socket.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct TcpHandle(pub u32);

const INDEX_BITS: u32 = 20;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;
const MAX_SOCKETS: usize = 1 << INDEX_BITS;
/// Bound of segments without a connection (RSTs, TIME-WAIT ACKs, cookie
/// SYN,ACKs) queued between dispatches; past it they are dropped and
/// counted (`tcp.rst_queue_full`), as a peer's retransmission asks again.
const MAX_QUEUED_CONTROL: usize = 4096;

/// One entry of the output queue `dispatch` drains, in the order the
/// events that produced them happened.
#[derive(Debug)]
enum Emit {
    /// Whatever a connection has due (data, ACKs, probes, its SYN).
    Conn(u32),
    /// A reset: for a segment no connection accepts (RFC 9293 3.10.7.1),
    /// an unacceptable ACK (3.10.7.2-4), or ABORT.
    Rst(SocketAddrV4, SocketAddrV4, RstReply),
    /// The ACK of a TIME-WAIT pair (3.10.7.4), built when it is sent.
    TimeWaitAck(SocketAddrV4, SocketAddrV4),
    /// A SYN,ACK whose sequence number is a SYN cookie (RFC 4987 3.6).
    Cookie(SocketAddrV4, SocketAddrV4, OutHdr),
    /// The ACK of the FIN that moved a connection to TIME-WAIT, from the
    /// entry itself: sent even when the TIME-WAIT table is full (as
    /// Linux's tcp_fin does).
    FinalAck(SocketAddrV4, SocketAddrV4, Box<TwEntry>),
}

/// Boxed, so that a slot costs 16 bytes whatever its socket.
#[derive(Debug)]
enum Sock {
    Listener(Box<Listener>),
    Conn(Box<Tcb>),
}

#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    sock: Option<Sock>,
    /// `SocketInfo::id` of the socket in it (never reused).
    id: u64,
}

/// Owns all TCP sockets.
pub struct TcpLayer {
    config: TcpConfig,
    local_addr: Ipv4Addr,
    /// Counters (`tcp.*`).
    pub counters: Counters,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    /// Connections by 4-tuple: exactly those neither CLOSED nor
    /// TIME-WAIT (`settle` unregisters a connection the moment it reaches
    /// either), so its length is the active-connection count.
    conns: HashMap<(SocketAddrV4, SocketAddrV4), u32>,
    /// How many of `conns` use each local port, so that a port-0 `listen`
    /// tests a candidate port in O(1).
    local_ports: HashMap<u16, u32>,
    listeners: HashMap<u16, u32>,
    time_wait: TimeWaitTable,
    /// Every connection's next deadline (`Tcb::poll_at`).
    timers: Timers,
    /// Buffer storage lent to connections while they hold data.
    pool: BufferPool,
    /// The receive storage connections hold, against `config.tcp_mem`.
    rmem: RcvMem,
    /// The one output route: everything to send, in order, until the
    /// next `dispatch` (a connection at most once, `Tcb::enqueue_output`).
    queue: VecDeque<Emit>,
    /// The entries `dispatch` is sending right now.
    queue_now: VecDeque<Emit>,
    /// Entries of `queue` that are not `Emit::Conn` (bounded).
    control_queued: usize,
    events: Vec<TcpHandle>,
    event_set: HashSet<u32>,
    challenge: ChallengeLimiter,
    secret: Secret,
    port_counter: u32,
    fixed_isn: Option<u32>,
    /// The next `SocketInfo::id`.
    next_id: u64,
}

impl TcpLayer {
    /// A layer with no sockets, sending from `local_addr`; the ISN secret and
    /// ephemeral ports come from `config.seed` (or entropy).
    pub fn new(config: TcpConfig, local_addr: Ipv4Addr) -> TcpLayer {
        let (secret, mut rng) = match config.seed {
            Some(s) => {
                let mut rng = Rng::new(s);
                (Secret::new(&mut rng), rng)
            }
            None => (Secret::from_os(), Rng::from_entropy()),
        };
        let time_wait = TimeWaitTable::new(config.time_wait);
        let rmem = RcvMem::new(config.tcp_mem);
        TcpLayer {
            config,
            local_addr,
            counters: Counters::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            conns: HashMap::new(),
            local_ports: HashMap::new(),
            listeners: HashMap::new(),
            time_wait,
            timers: Timers::default(),
            pool: BufferPool::default(),
            rmem,
            queue: VecDeque::new(),
            queue_now: VecDeque::new(),
            control_queued: 0,
            events: Vec::new(),
            event_set: HashSet::new(),
            challenge: ChallengeLimiter::default(),
            secret,
            port_counter: rng.next_u32(),
            fixed_isn: None,
            next_id: 1,
        }
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &TcpConfig {
        &self.config
    }

    /// See [`TcpConfig::checksum_offload`]; applies to the next segment.
    pub fn set_checksum_offload(&mut self, on: bool) {
        self.config.checksum_offload = on;
    }

    /// See [`TcpConfig::segmentation_offload`]; applies to the next segment.
    pub fn set_segmentation_offload(&mut self, on: bool) {
        self.config.segmentation_offload = on;
    }

    /// Test hook: every new connection uses ISN `isn` and a zero
    /// timestamp offset, so segment scripts are exact.
    #[doc(hidden)]
    pub fn set_fixed_isn(&mut self, isn: Option<u32>) {
        self.fixed_isn = isn;
    }

    /// Fuzzing hook: lengths of the layer's internal queues (timer heap,
    /// connections and other segments in the output queue, readiness
    /// events, TIME-WAIT expiry queue), which must stay bounded.
    #[doc(hidden)]
    pub fn queue_lens(&self) -> [usize; 5] {
        [
            self.timers.len(),
            self.queue.len() - self.control_queued,
            self.control_queued,
            self.events.len(),
            self.time_wait.queue_len(),
        ]
    }

    /// Heap bytes a connection's own state takes, idle: its control block
    /// and its congestion controller (the layer's tables come on top). For
    /// memory budgets and tests (issue 15).
    pub fn connection_state_bytes(cc: CcAlgorithm) -> usize {
        std::mem::size_of::<Tcb>() + cc::state_bytes(cc)
    }

    /// Buffer storage the layer keeps for reuse: (buffers, bytes); bounded
    /// by [`BufferPool`]'s limits.
    pub fn pooled_storage(&self) -> (usize, usize) {
        self.pool.held()
    }

    /// Frees pooled storage nobody reused since the last call (call it
    /// about once a second); returns whether some is still pooled.
    pub fn release_idle_storage(&mut self) -> bool {
        self.pool.release_idle()
    }

    /// Bytes of send and receive buffer storage that connections hold
    /// (idle connections hold none). Scans every socket: for tests and
    /// diagnostics, not for a hot path.
    pub fn buffer_bytes_in_use(&self) -> usize {
        self.slots
            .iter()
            .filter_map(|s| match &s.sock {
                Some(Sock::Conn(t)) => Some(t.rcv.storage_bytes() + t.snd.storage_bytes()),
                _ => None,
            })
            .sum()
    }

    /// Bytes of receive storage connections hold (in order and out of
    /// order), as `TcpConfig::tcp_mem` counts them, and whether that is
    /// memory pressure.
    pub fn rcv_mem(&self) -> (usize, bool) {
        (self.rmem.held(), self.rmem.under_pressure())
    }

    /// The receive account recounted from every connection (tests: it
    /// must equal `rcv_mem().0`).
    #[cfg(test)]
    pub fn rcv_mem_recount(&self) -> usize {
        self.slots
            .iter()
            .filter_map(|s| match &s.sock {
                Some(Sock::Conn(t)) => Some(t.rcv.charged()),
                _ => None,
            })
            .sum()
    }

    /// Queues a connection's output for the next dispatch.
    fn queue_conn(&mut self, raw: u32) {
        self.queue.push_back(Emit::Conn(raw));
    }

    /// Queues a segment that belongs to no connection, within the bound.
    fn queue_control(&mut self, e: Emit) {
        if self.control_queued < MAX_QUEUED_CONTROL {
            self.control_queued += 1;
            self.queue.push_back(e);
        } else {
            self.counters.inc("tcp.rst_queue_full");
        }
    }

    /// Queues a reset.
    fn queue_rst(&mut self, local: SocketAddrV4, remote: SocketAddrV4, r: RstReply) {
        self.queue_control(Emit::Rst(local, remote, r));
    }

    // ---- slot table

    fn raw_of(&self, idx: usize) -> u32 {
        (self.slots[idx].generation << INDEX_BITS) | idx as u32
    }

    fn slot_of(&self, raw: u32) -> Option<usize> {
        let idx = (raw & INDEX_MASK) as usize;
        let slot = self.slots.get(idx)?;
        (slot.sock.is_some() && slot.generation == raw >> INDEX_BITS).then_some(idx)
    }

    fn alloc(&mut self, sock: Sock) -> Option<u32> {
        let idx = match self.free_slots.pop() {
            Some(i) => i as usize,
            None if self.slots.len() < MAX_SOCKETS => {
                self.slots.push(Slot::default());
                self.slots.len() - 1
            }
            None => return None,
        };
        self.slots[idx].sock = Some(sock);
        self.slots[idx].id = self.next_id;
        self.next_id += 1;
        Some(self.raw_of(idx))
    }

    fn free(&mut self, raw: u32) {
        if let Some(idx) = self.slot_of(raw) {
            self.timers.schedule(raw, None);
            let slot = &mut self.slots[idx];
            if let Some(Sock::Conn(t)) = slot.sock.as_mut() {
                t.rcv.release(&mut self.pool, &mut self.rmem);
                t.snd.release(&mut self.pool);
            }
            slot.sock = None;
            slot.generation = (slot.generation + 1) & ((1 << (32 - INDEX_BITS)) - 1);
            self.free_slots.push(idx as u32);
        }
    }

    fn tcb(&self, raw: u32) -> Option<&Tcb> {
        match self.slots[self.slot_of(raw)?].sock.as_ref()? {
            Sock::Conn(t) => Some(t),
            Sock::Listener(_) => None,
        }
    }

    fn tcb_mut(&mut self, raw: u32) -> Option<&mut Tcb> {
        let idx = self.slot_of(raw)?;
        match self.slots[idx].sock.as_mut()? {
            Sock::Conn(t) => Some(t),
            Sock::Listener(_) => None,
        }
    }

    fn listener(&self, raw: u32) -> Option<&Listener> {
        match self.slots[self.slot_of(raw)?].sock.as_ref()? {
            Sock::Listener(l) => Some(l),
            Sock::Conn(_) => None,
        }
    }

    fn listener_mut(&mut self, raw: u32) -> Option<&mut Listener> {
        let idx = self.slot_of(raw)?;
        match self.slots[idx].sock.as_mut()? {
            Sock::Listener(l) => Some(l),
            Sock::Conn(_) => None,
        }
    }

    fn insert_conn(&mut self, tcb: Tcb) -> Option<u32> {
        let key = (tcb.local, tcb.remote);
        let raw = self.alloc(Sock::Conn(Box::new(tcb)))?;
        // Callers check the pair is free; a replaced entry keeps its port.
        if self.conns.insert(key, raw).is_none() {
            *self.local_ports.entry(key.0.port()).or_insert(0) += 1;
        }
        Some(raw)
    }

    /// Unregisters a connection's 4-tuple (it became CLOSED or TIME-WAIT,
    /// or was freed) if it is registered to `raw`.
    fn unregister(&mut self, key: (SocketAddrV4, SocketAddrV4), raw: u32) {
        if self.conns.get(&key) != Some(&raw) {
            return;
        }
        self.conns.remove(&key);
        let port = key.0.port();
        if let Some(n) = self.local_ports.get_mut(&port) {
            *n -= 1;
            if *n == 0 {
                self.local_ports.remove(&port);
            }
        }
    }

    fn push_event(&mut self, raw: u32) {
        if self.event_set.insert(raw) {
            self.events.push(TcpHandle(raw));
        }
    }

    /// Runs `f` on a connection with the layer's environment.
    fn with_tcb<R>(
        &mut self,
        now: Instant,
        raw: u32,
        f: impl FnOnce(&mut Tcb, &mut Env) -> R,
    ) -> Option<R> {
        let idx = self.slot_of(raw)?;
        let Self {
            slots,
            config,
            counters,
            challenge,
            pool,
            rmem,
            ..
        } = self;
        let Some(Sock::Conn(tcb)) = slots[idx].sock.as_mut() else {
            return None;
        };
        let mut env = Env {
            now,
            cfg: config,
            counters,
            challenge,
            pool,
            rmem,
        };
        Some(f(tcb, &mut env))
    }

    // ---- input

    /// One TCP segment (IP payload) whose IPv4 header was validated.
    pub fn receive(
        &mut self,
        now: Instant,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        segment: &[u8],
        csum: RxChecksum,
    ) {
        let seg = match InSeg::parse(src, dst, segment, csum) {
            Ok(s) => s,
            Err(ParseError::BadChecksum) => return self.counters.inc("tcp.bad_checksum"),
            Err(ParseError::Malformed) => return self.counters.inc("tcp.malformed"),
        };
        self.counters.inc("tcp.segments_received");
        let local = SocketAddrV4::new(dst, seg.dst_port);
        let remote = SocketAddrV4::new(src, seg.src_port);
        if let Some(&raw) = self.conns.get(&(local, remote)) {
            return self.conn_input(now, raw, &seg);
        }
        let key = (local, remote);
        if let Some(owner) = self.time_wait.get(&key).map(|e| e.owner) {
            match self.time_wait.input(&key, &seg, now) {
                TwVerdict::Drop => return self.counters.inc("tcp.time_wait_drop"),
                TwVerdict::Ack => {
                    self.counters.inc("tcp.time_wait_ack");
                    return self.queue_control(Emit::TimeWaitAck(local, remote));
                }
                TwVerdict::Closed => {
                    self.close_owner(owner);
                    return;
                }
                TwVerdict::Reuse => {
                    self.counters.inc("tcp.time_wait_reused");
                    self.close_owner(owner);
                }
            }
        }
        if let Some(&lraw) = self.listeners.get(&seg.dst_port) {
            let l_ip = self.listener(lraw).map(|l| *l.local.ip());
            if l_ip.is_some_and(|a| a.is_unspecified() || a == dst) {
                return self.listen_input(now, lraw, &seg, local, remote);
            }
        }
        self.reset_closed(&seg, local, remote);
    }

    /// RFC 9293 3.10.7.1: a segment for no connection gets a RST (never a
    /// RST for a RST).
    fn reset_closed(&mut self, seg: &InSeg, local: SocketAddrV4, remote: SocketAddrV4) {
        if seg.rst {
            return self.counters.inc("tcp.closed_port_rst_ignored");
        }
        self.counters.inc("tcp.closed_port");
        self.queue_rst(local, remote, RstReply::for_segment(seg));
    }

    fn conn_input(&mut self, now: Instant, raw: u32, seg: &InSeg) {
        // A child completing its handshake needs room in the accept queue;
        // otherwise drop the ACK (the SYN,ACK is retransmitted), as Linux.
        let parent = self
            .tcb(raw)
            .filter(|t| t.state == TcpState::SynReceived)
            .and_then(|t| t.parent);
        if let Some(p) = parent
            && seg.ack.is_some()
            && !seg.rst
            && self.listener(p).is_some_and(|l| l.accept_queue_full())
        {
            return self.counters.inc("tcp.accept_queue_full");
        }
        let reply = self
            .with_tcb(now, raw, |tcb, env| tcb.input(env, seg))
            .flatten();
        if let (Some(r), Some(t)) = (reply, self.tcb(raw)) {
            let (l, rm) = (t.local, t.remote);
            self.queue_rst(l, rm, r);
        }
        self.settle(now, raw, false);
    }

    fn send_rst(
        &mut self,
        now: Instant,
        ip: &mut dyn IpSink,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        r: RstReply,
    ) {
        self.counters.inc("tcp.rst_sent");
        let hdr = OutHdr {
            src_port: local.port(),
            dst_port: remote.port(),
            seq: r.seq,
            ack: r.ack,
            rst: true,
            ..OutHdr::default()
        };
        self.send_hdr(now, ip, local, remote, &hdr);
    }

    fn send_hdr(
        &mut self,
        now: Instant,
        ip: &mut dyn IpSink,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        hdr: &OutHdr,
    ) {
        let addrs = (*local.ip(), *remote.ip());
        let ok = frame::send(&self.config, now, ip, addrs, hdr, (&[], &[]));
        self.counters.inc("tcp.segments_sent");
        if !ok {
            self.counters.inc("tcp.ip_send_failed");
        }
    }

    fn close_owner(&mut self, owner: Option<u32>) {
        if let Some(o) = owner
            && let Some(t) = self.tcb_mut(o)
            && t.state == TcpState::TimeWait
        {
            t.set_state(TcpState::Closed);
            self.push_event(o);
        }
    }

    /// ICMP error about a segment we sent (RFC 1122 4.2.3.9, RFC 1191,
    /// RFC 5927: the quoted sequence number must be in flight).
    pub fn icmp_error(
        &mut self,
        now: Instant,
        icmp_type: u8,
        icmp_code: u8,
        next_hop_mtu: u16,
        quoted: &[u8],
    ) {
        let Some((local, remote, seq)) = parse_quoted(quoted) else {
            return self.counters.inc("tcp.icmp_malformed");
        };
        let Some(&raw) = self.conns.get(&(local, remote)) else {
            return self.counters.inc("tcp.icmp_no_connection");
        };
        let handled = self.with_tcb(now, raw, |t, env| {
            t.icmp(env, icmp_type, icmp_code, next_hop_mtu, seq)
        });
        if handled == Some(true) {
            self.settle(now, raw, false);
        }
    }

    // ---- output and timers

    /// Runs the timers due at `now`, then sends what is queued, in order.
    pub fn dispatch(&mut self, now: Instant, ip: &mut dyn IpSink) {
        // A connection whose timers ran is re-armed with its `poll_at`;
        // one re-armed at `now` again waits for the next dispatch rather
        // than looping here (at most one pass over what is queued).
        let mut budget = self.timers.len();
        while budget > 0
            && let Some(raw) = self.timers.pop_due(now)
        {
            budget -= 1;
            let fired = self.with_tcb(now, raw, |tcb, env| tcb.on_timers(env));
            if fired.is_some() {
                self.settle(now, raw, false);
            }
        }
        while let Some(owner) = self.time_wait.pop_expired(now) {
            self.close_owner(owner);
        }
        // Swapped, not taken, so neither queue is reallocated per call.
        std::mem::swap(&mut self.queue, &mut self.queue_now);
        self.control_queued = 0;
        while let Some(e) = self.queue_now.pop_front() {
            self.emit(now, e, ip);
        }
    }

    /// Sends one entry of the output queue.
    fn emit(&mut self, now: Instant, e: Emit, ip: &mut dyn IpSink) {
        match e {
            Emit::Conn(raw) => {
                let done = self.with_tcb(now, raw, |t, env| {
                    t.dequeue_output();
                    t.output(env, ip);
                });
                if done.is_some() {
                    self.settle(now, raw, true);
                }
            }
            Emit::Rst(l, r, rst) => self.send_rst(now, ip, l, r, rst),
            Emit::TimeWaitAck(l, r) => {
                if let Some(e) = self.time_wait.get(&(l, r)) {
                    let hdr = e.ack_header(now, l, r);
                    self.send_hdr(now, ip, l, r, &hdr);
                }
            }
            Emit::FinalAck(l, r, e) => {
                let hdr = e.ack_header(now, l, r);
                self.send_hdr(now, ip, l, r, &hdr);
            }
            Emit::Cookie(l, r, hdr) => self.send_hdr(now, ip, l, r, &hdr),
        }
    }

    /// Earliest deadline, or `Instant::ZERO` ("now") when output is queued.
    pub fn poll_at(&self) -> Option<Instant> {
        if !self.queue.is_empty() {
            return Some(Instant::ZERO);
        }
        crate::stack::time::earliest(self.timers.next(), self.time_wait.next_expiry())
    }

    /// Handles whose readiness may have changed since the last call.
    pub fn take_events(&mut self, out: &mut Vec<TcpHandle>) {
        out.append(&mut self.events);
        self.event_set.clear();
    }

    /// After anything touched a connection: lifecycle bookkeeping (accept
    /// queue, TIME-WAIT table, freeing), readiness events, output queue
    /// and timer registration.
    fn settle(&mut self, now: Instant, raw: u32, after_output: bool) {
        let cfg_tw = self.config.time_wait;
        let Some(t) = self.tcb_mut(raw) else { return };
        t.close_send_side();
        if t.orphaned && t.state == TcpState::FinWait2 && !t.timers.is_armed(Timer::FinWait2) {
            t.timers.set(Timer::FinWait2, now + cfg_tw);
        }
        t.arm_keepalive(now);
        let (state, orphaned, parent, key) = (t.state, t.orphaned, t.parent, (t.local, t.remote));
        let changed = t.take_changed();
        if let Some(p) = parent {
            self.settle_child(raw, p, state);
        }
        let registered = self.conns.get(&key) == Some(&raw);
        if state == TcpState::TimeWait && registered {
            return self.enter_time_wait(now, raw);
        }
        if state == TcpState::Closed {
            self.unregister(key, raw);
            if orphaned {
                return self.free(raw);
            }
        }
        if changed && !orphaned {
            self.push_event(raw);
        }
        let Some(idx) = self.slot_of(raw) else { return };
        let Self {
            slots,
            pool,
            timers,
            ..
        } = self;
        let Some(Sock::Conn(t)) = slots[idx].sock.as_mut() else {
            return;
        };
        // Idle connections hold no buffer storage.
        t.snd.release_if_idle(pool);
        t.rcv.release_if_idle(pool);
        let want = !after_output && t.enqueue_output();
        timers.schedule(raw, t.poll_at());
        if want {
            self.queue_conn(raw);
        }
    }

    /// Moves a finished handshake from the SYN queue to the accept queue,
    /// or forgets a child that died in the SYN queue.
    fn settle_child(&mut self, raw: u32, p: u32, state: TcpState) {
        let Some(l) = self.listener_mut(p) else {
            return;
        };
        if state == TcpState::SynReceived || !l.syn_queue_remove(raw) {
            return;
        }
        if state != TcpState::Closed {
            l.accept_queue.push_back(raw);
            self.push_event(p);
        }
    }

    fn enter_time_wait(&mut self, now: Instant, raw: u32) {
        let expires = now + self.config.time_wait;
        let id = self.slot_of(raw).map_or(0, |i| self.slots[i].id);
        let Some(t) = self.tcb_mut(raw) else { return };
        let ack_due = t.rcv.ack_owed();
        t.enter_closed();
        t.state = TcpState::TimeWait;
        let owner = (!t.orphaned).then_some(raw);
        let entry = TwEntry::from_tcb(t, expires, owner, id);
        let (key, orphaned) = ((t.local, t.remote), t.orphaned);
        self.unregister(key, raw);
        // Its deadlines were cleared by `enter_closed`.
        self.timers.schedule(raw, None);
        if ack_due {
            // Bounded by the connections there are.
            self.queue_control(Emit::FinalAck(key.0, key.1, Box::new(entry.clone())));
        }
        if self.time_wait.len() < MAX_TIME_WAIT {
            self.time_wait.insert(key, entry);
        } else {
            self.counters.inc("tcp.time_wait_table_full");
            if let Some(t) = self.tcb_mut(raw) {
                t.state = TcpState::Closed;
            }
        }
        if orphaned {
            self.free(raw);
        } else {
            self.push_event(raw);
        }
    }

    /// Connections that are not LISTEN, CLOSED or TIME-WAIT, in O(1).
    pub fn active_connections(&self) -> usize {
        self.conns.len()
    }
}

/// Quoted IPv4 header + TCP ports and sequence number of our segment.
fn parse_quoted(q: &[u8]) -> Option<(SocketAddrV4, SocketAddrV4, Seq)> {
    let ihl = usize::from(*q.first()? & 0x0f) * 4;
    if ihl < 20 || q.len() < ihl + 8 || q[9] != 6 {
        return None;
    }
    let src = Ipv4Addr::new(q[12], q[13], q[14], q[15]);
    let dst = Ipv4Addr::new(q[16], q[17], q[18], q[19]);
    let t = &q[ihl..];
    let sport = u16::from_be_bytes([t[0], t[1]]);
    let dport = u16::from_be_bytes([t[2], t[3]]);
    let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    Some((
        SocketAddrV4::new(src, sport),
        SocketAddrV4::new(dst, dport),
        Seq(seq),
    ))
}
