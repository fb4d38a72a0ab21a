//! Socket operations the API layer calls (RFC 9293 3.10.1-3.10.6 user
//! calls: OPEN, SEND, RECEIVE, CLOSE, ABORT, STATUS).

use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddrV4};
use std::time::Duration;

use super::cc::CcAlgorithm;
use super::input::RstReply;
use super::isn::pick_ephemeral;
use super::listen::Listener;
use super::state::TcpState;
use super::tcb::SockOpts;
use super::{Sock, TcpHandle, TcpLayer};
use crate::stack::socket::Readiness;
use crate::stack::time::Instant;

/// Connection statistics (like Linux `struct tcp_info`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpInfo {
    /// Connection state (RFC 9293 3.3.2).
    pub state: TcpState,
    /// SND.UNA: oldest unacknowledged sequence number.
    pub snd_una: u32,
    /// SND.NXT: next sequence number to send.
    pub snd_nxt: u32,
    /// RCV.NXT: next sequence number expected from the peer.
    pub rcv_nxt: u32,
    /// SND.WND: the peer's advertised window, scaled, in bytes.
    pub snd_wnd: usize,
    /// RCV.WND: the window we advertise, in bytes.
    pub rcv_wnd: usize,
    /// Congestion window, in bytes.
    pub cwnd: usize,
    /// Slow-start threshold, in bytes (`usize::MAX` before the first loss).
    pub ssthresh: usize,
    /// Smoothed RTT (RFC 6298); `None` before the first sample.
    pub srtt: Option<Duration>,
    /// Current retransmission timeout, backoff included.
    pub rto: Duration,
    /// Segments retransmitted over the connection's life.
    pub retransmitted_segments: u64,
    /// Bytes retransmitted over the connection's life.
    pub retransmitted_bytes: u64,
    /// SMSS: the largest segment payload we send, in bytes (from the peer's
    /// MSS option, RFC 9293 3.7.1).
    pub mss: usize,
    /// Shift the peer applies to the windows it advertises (RFC 7323 2.2).
    pub snd_wscale: u8,
    /// Shift we apply to the windows we advertise (RFC 7323 2.2).
    pub rcv_wscale: u8,
    /// SACK (RFC 2018) was negotiated.
    pub sack: bool,
    /// Timestamps (RFC 7323) were negotiated.
    pub timestamps: bool,
    /// Bytes in the network (RFC 6675 estimate): sent, not cumulatively
    /// acknowledged, less what the peer SACKed.
    pub bytes_in_flight: usize,
    /// Name of the congestion control in use (`"reno"`, `"cubic"`, `"bbr"`).
    pub congestion_control: &'static str,
}

fn err(kind: ErrorKind) -> io::Error {
    io::Error::from(kind)
}

impl TcpLayer {
    fn stale(&self, h: TcpHandle) -> io::Error {
        let _ = h;
        err(ErrorKind::NotConnected)
    }

    fn conn_ref(&self, h: TcpHandle) -> io::Result<&super::tcb::Tcb> {
        match self.slot_of(h.0).and_then(|i| self.slots[i].sock.as_ref()) {
            Some(Sock::Conn(t)) => Ok(t),
            Some(Sock::Listener(_)) => Err(err(ErrorKind::InvalidInput)),
            None => Err(self.stale(h)),
        }
    }

    fn conn_mut(&mut self, h: TcpHandle) -> io::Result<&mut super::tcb::Tcb> {
        let idx = self
            .slot_of(h.0)
            .ok_or_else(|| err(ErrorKind::NotConnected))?;
        match self.slots[idx].sock.as_mut() {
            Some(Sock::Conn(t)) => Ok(t),
            _ => Err(err(ErrorKind::InvalidInput)),
        }
    }

    /// A connection and the layer's buffer pool, borrowed together.
    fn conn_and_pool(
        &mut self,
        h: TcpHandle,
    ) -> io::Result<(
        &mut super::tcb::Tcb,
        &mut super::buffer::BufferPool,
        &mut super::rmem::RcvMem,
    )> {
        let idx = self
            .slot_of(h.0)
            .ok_or_else(|| err(ErrorKind::NotConnected))?;
        match self.slots[idx].sock.as_mut() {
            Some(Sock::Conn(t)) => Ok((t, &mut self.pool, &mut self.rmem)),
            _ => Err(err(ErrorKind::InvalidInput)),
        }
    }

    fn port_in_use(&self, port: u16) -> bool {
        self.listeners.contains_key(&port) || self.local_ports.contains_key(&port)
    }

    /// Passive OPEN. Port 0 picks an ephemeral port.
    pub fn listen(&mut self, local: SocketAddrV4, backlog: usize) -> io::Result<TcpHandle> {
        let mut local = local;
        if local.port() == 0 {
            let mut counter = self.port_counter;
            let port = pick_ephemeral(&self.secret, &mut counter, &(*local.ip(), 0u16), |p| {
                !self.port_in_use(p)
            })
            .ok_or_else(|| err(ErrorKind::AddrInUse))?;
            self.port_counter = counter;
            local.set_port(port);
        } else if self.listeners.contains_key(&local.port()) {
            return Err(err(ErrorKind::AddrInUse));
        }
        let opts = SockOpts::from_config(&self.config);
        let raw = self
            .alloc(Sock::Listener(Box::new(Listener::new(
                local, backlog, opts,
            ))))
            .ok_or_else(|| err(ErrorKind::OutOfMemory))?;
        self.listeners.insert(local.port(), raw);
        log::debug!(target: "tapstack::trace", "{local} CLOSED -> LISTEN");
        Ok(TcpHandle(raw))
    }

    /// Takes an established connection from the accept queue.
    pub fn accept(&mut self, listener: TcpHandle) -> io::Result<(TcpHandle, SocketAddrV4)> {
        let idx = self
            .slot_of(listener.0)
            .ok_or_else(|| err(ErrorKind::InvalidInput))?;
        let Some(Sock::Listener(l)) = self.slots[idx].sock.as_mut() else {
            return Err(err(ErrorKind::InvalidInput));
        };
        let queue = std::mem::take(&mut l.accept_queue);
        let mut queue = queue;
        let mut found = None;
        while let Some(raw) = queue.pop_front() {
            if self.tcb(raw).is_some() {
                found = Some(raw);
                break;
            }
        }
        if let Some(Sock::Listener(l)) = self.slots[idx].sock.as_mut() {
            l.accept_queue = queue;
        }
        if let Some(raw) = found {
            let Some(l_ref) = self.tcb_mut(raw) else {
                return Err(err(ErrorKind::WouldBlock));
            };
            l_ref.detach_from_listener();
            let remote = l_ref.remote;
            return Ok((TcpHandle(raw), remote));
        }
        Err(err(ErrorKind::WouldBlock))
    }

    /// Active OPEN: the SYN goes out on the next `dispatch`.
    pub fn connect(
        &mut self,
        now: Instant,
        local: Option<SocketAddrV4>,
        remote: SocketAddrV4,
    ) -> io::Result<TcpHandle> {
        if remote.ip().is_unspecified() || remote.port() == 0 {
            return Err(err(ErrorKind::InvalidInput));
        }
        let mut local = local.unwrap_or(SocketAddrV4::new(self.local_addr, 0));
        if local.ip().is_unspecified() {
            local.set_ip(self.local_addr);
        }
        if local.port() == 0 {
            let mut counter = self.port_counter;
            let (conns, tw, listeners) = (&self.conns, &self.time_wait, &self.listeners);
            let ip = *local.ip();
            let port = pick_ephemeral(&self.secret, &mut counter, &(ip, remote), |p| {
                let key = (SocketAddrV4::new(ip, p), remote);
                !conns.contains_key(&key) && tw.get(&key).is_none() && !listeners.contains_key(&p)
            })
            .ok_or_else(|| err(ErrorKind::AddrNotAvailable))?;
            self.port_counter = counter;
            local.set_port(port);
        } else if self.conns.contains_key(&(local, remote))
            || self.time_wait.get(&(local, remote)).is_some()
        {
            return Err(err(ErrorKind::AddrInUse));
        }
        let iss = self.pick_iss(now, local, remote);
        let mut tcb = self.new_tcb(now, SockOpts::from_config(&self.config), local, remote, iss);
        tcb.set_state(TcpState::SynSent);
        let raw = self
            .insert_conn(tcb)
            .ok_or_else(|| err(ErrorKind::OutOfMemory))?;
        self.counters.inc("tcp.active_open");
        self.settle(now, raw, false);
        Ok(TcpHandle(raw))
    }

    fn touch(&mut self, h: TcpHandle) {
        // No clock here: timers already armed keep their deadlines; output
        // is queued for the next dispatch.
        let raw = h.0;
        let Some(t) = self.tcb_mut(raw) else { return };
        if t.enqueue_output() {
            self.queue_conn(raw);
        }
    }

    /// SEND: queues data; it leaves on the next `dispatch`.
    pub fn send(&mut self, h: TcpHandle, data: &[u8]) -> io::Result<usize> {
        let (t, pool, _) = self.conn_and_pool(h)?;
        if let Some(e) = t.error() {
            return Err(err(e));
        }
        let n = match t.state {
            TcpState::SynSent | TcpState::SynReceived if !t.snd.fin_queued() => {
                return Err(err(ErrorKind::WouldBlock));
            }
            TcpState::Established | TcpState::CloseWait if !t.snd.fin_queued() => {
                if data.is_empty() {
                    return Ok(0);
                }
                let n = t.snd.queue(data, pool);
                if n == 0 {
                    return Err(err(ErrorKind::WouldBlock));
                }
                n
            }
            TcpState::Closed | TcpState::Listen => return Err(err(ErrorKind::NotConnected)),
            _ => return Err(err(ErrorKind::BrokenPipe)),
        };
        self.touch(h);
        Ok(n)
    }

    /// RECEIVE. Ok(0) is EOF. An ACK held back for the read, or a window
    /// opened by enough, is sent at once (`Receiver::ack_on_read`). Data
    /// buffered before a reset or `shutdown(Read)` is still given first,
    /// as Linux's tcp_recvmsg does.
    pub fn recv(&mut self, h: TcpHandle, buf: &mut [u8]) -> io::Result<usize> {
        let (t, pool, rmem) = self.conn_and_pool(h)?;
        if t.rcv.readable_len() > 0 {
            if buf.is_empty() {
                return Ok(0);
            }
            let n = t.rcv.read(buf, rmem);
            t.rcv.release_if_idle(pool);
            let grown = t.rcv.grow_if_limited(rmem);
            let ack = t.state.is_synchronized() && t.rcv.ack_on_read(rmem);
            if ack {
                t.rcv.owe_ack();
            }
            if grown {
                self.counters.inc("tcp.rx_buffer_grown");
            }
            if ack {
                self.counters.inc("tcp.ack_on_read");
                self.touch(h);
            }
            return Ok(n);
        }
        Self::recv_empty(t)
    }

    /// What RECEIVE says once the buffer is empty: EOF after the peer's
    /// FIN, else the error, else EOF after `shutdown(Read)` (the order of
    /// Linux's tcp_recvmsg checks).
    fn recv_empty(t: &super::tcb::Tcb) -> io::Result<usize> {
        if t.rcv.fin_received() {
            return Ok(0);
        }
        if let Some(e) = t.error() {
            return Err(err(e));
        }
        if t.rcv.read_closed() {
            return Ok(0);
        }
        match t.state {
            TcpState::Closed | TcpState::TimeWait => Ok(0),
            _ => Err(err(ErrorKind::WouldBlock)),
        }
    }

    /// Copies received data into `buf` without consuming it; returns 0 at
    /// end of stream and `WouldBlock` when nothing is buffered yet.
    pub fn peek(&mut self, h: TcpHandle, buf: &mut [u8]) -> io::Result<usize> {
        let t = self.conn_ref(h)?;
        if t.rcv.readable_len() > 0 {
            return Ok(t.rcv.peek(buf));
        }
        Self::recv_empty(t)
    }

    /// SHUTDOWN. A call that fails changes nothing, and reading shuts
    /// off only what arrives later: data already buffered stays readable
    /// (Linux's inet_shutdown and tcp_recvmsg).
    pub fn shutdown(&mut self, h: TcpHandle, how: Shutdown) -> io::Result<()> {
        let t = self.conn_mut(h)?;
        // ENOTCONN on a closed socket, whatever `how` (on Linux a socket in
        // TIME-WAIT is closed too; a mini-socket holds the state).
        if matches!(
            t.state,
            TcpState::Closed | TcpState::Listen | TcpState::TimeWait
        ) {
            return Err(err(ErrorKind::NotConnected));
        }
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            t.rcv.shutdown_read();
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            t.shutdown_write();
        }
        self.touch(h);
        Ok(())
    }

    /// The application dropped its handle (RFC 9293 3.10.4; RST when
    /// unread data remains, RFC 2525 2.17).
    pub fn close(&mut self, h: TcpHandle) {
        let Some(idx) = self.slot_of(h.0) else { return };
        if let Some(Sock::Listener(_)) = self.slots[idx].sock {
            return self.close_listener(h.0);
        }
        let Ok(t) = self.conn_mut(h) else { return };
        t.orphaned = true;
        let unread = t.rcv.has_unread();
        match t.state {
            TcpState::Closed | TcpState::TimeWait | TcpState::SynSent => self.free_conn(h.0),
            TcpState::SynReceived => self.abort(h),
            _ if unread => {
                self.counters.inc("tcp.close_with_unread_data");
                self.abort(h);
            }
            _ => {
                t.rcv.shutdown_read();
                t.shutdown_write();
                self.touch(h);
            }
        }
    }

    pub(super) fn free_conn(&mut self, raw: u32) {
        if let Some(t) = self.tcb(raw) {
            let (key, parent) = ((t.local, t.remote), t.parent);
            self.unregister(key, raw);
            if let Some(p) = parent
                && let Some(l) = self.listener_mut(p)
            {
                l.syn_queue_remove(raw);
                l.accept_queue.retain(|&r| r != raw);
            }
        }
        self.free(raw);
    }

    fn close_listener(&mut self, raw: u32) {
        let Some(l) = self.listener_mut(raw) else {
            return;
        };
        let children = l.drain_children();
        let port = l.local.port();
        for c in children {
            self.abort(TcpHandle(c));
        }
        if self.listeners.get(&port) == Some(&raw) {
            self.listeners.remove(&port);
        }
        self.free(raw);
    }

    /// ABORT (SO_LINGER {on, 0}): RST now and free.
    pub fn abort(&mut self, h: TcpHandle) {
        let Some(t) = self.tcb(h.0) else {
            if self.listener(h.0).is_some() {
                self.close_listener(h.0);
            }
            return;
        };
        if matches!(
            t.state,
            TcpState::SynReceived
                | TcpState::Established
                | TcpState::FinWait1
                | TcpState::FinWait2
                | TcpState::CloseWait
        ) {
            let rst = RstReply {
                seq: t.snd.snd_max(),
                ack: Some(t.rcv.nxt()),
            };
            let (l, r) = (t.local, t.remote);
            self.queue_rst(l, r, rst);
            self.counters.inc("tcp.aborted");
        }
        self.free_conn(h.0);
    }

    /// What the socket is ready for (an unknown handle reads as hung up with
    /// an error).
    pub fn readiness(&self, h: TcpHandle) -> Readiness {
        let Some(idx) = self.slot_of(h.0) else {
            return Readiness {
                readable: true,
                writable: true,
                hup: true,
                error: true,
            };
        };
        match self.slots[idx].sock.as_ref() {
            Some(Sock::Listener(l)) => Readiness {
                readable: !l.accept_queue.is_empty(),
                ..Readiness::default()
            },
            Some(Sock::Conn(t)) => {
                let error = t.error_pending();
                let closed = matches!(t.state, TcpState::Closed | TcpState::TimeWait);
                Readiness {
                    readable: t.rcv.readable_len() > 0
                        || t.rcv.fin_received()
                        || t.rcv.read_closed()
                        || t.error().is_some()
                        || closed,
                    writable: (t.state.can_send() && !t.snd.fin_queued() && t.snd.has_room())
                        || t.error().is_some(),
                    hup: t.rcv.fin_received() || closed,
                    error,
                }
            }
            None => Readiness::default(),
        }
    }

    /// The state of the socket (`Listen` for a listener, `Closed` for an
    /// unknown handle).
    pub fn state(&self, h: TcpHandle) -> TcpState {
        match self.slot_of(h.0).and_then(|i| self.slots[i].sock.as_ref()) {
            Some(Sock::Listener(_)) => TcpState::Listen,
            Some(Sock::Conn(t)) => t.state,
            None => TcpState::Closed,
        }
    }

    /// The local address of a listener or connection.
    pub fn local_addr(&self, h: TcpHandle) -> io::Result<SocketAddrV4> {
        match self.slot_of(h.0).and_then(|i| self.slots[i].sock.as_ref()) {
            Some(Sock::Listener(l)) => Ok(l.local),
            Some(Sock::Conn(t)) => Ok(t.local),
            None => Err(err(ErrorKind::NotConnected)),
        }
    }

    /// The peer's address (`NotConnected` for a listener or unknown handle).
    pub fn peer_addr(&self, h: TcpHandle) -> io::Result<SocketAddrV4> {
        Ok(self
            .conn_ref(h)
            .map_err(|_| err(ErrorKind::NotConnected))?
            .remote)
    }

    /// Turns Nagle's algorithm (RFC 896, RFC 9293 3.7.4) off (`true`) or
    /// on; a listener passes it on to the connections it accepts.
    pub fn set_nodelay(&mut self, h: TcpHandle, on: bool) -> io::Result<()> {
        match self.slot_of(h.0).and_then(|i| self.slots[i].sock.as_mut()) {
            Some(Sock::Listener(l)) => l.opts.nodelay = on,
            Some(Sock::Conn(t)) => t.set_nodelay(on),
            None => return Err(err(ErrorKind::NotConnected)),
        }
        self.touch(h);
        Ok(())
    }

    /// Whether Nagle's algorithm is off (`TCP_NODELAY`).
    pub fn nodelay(&self, h: TcpHandle) -> io::Result<bool> {
        match self.slot_of(h.0).and_then(|i| self.slots[i].sock.as_ref()) {
            Some(Sock::Listener(l)) => Ok(l.opts.nodelay),
            Some(Sock::Conn(t)) => Ok(t.nodelay()),
            None => Err(err(ErrorKind::NotConnected)),
        }
    }

    /// Keepalive (RFC 1122 4.2.3.6): `Some((idle, interval, probes))` or
    /// `None` = off; on a listener it is inherited by accepted connections.
    pub fn set_keepalive(
        &mut self,
        h: TcpHandle,
        ka: Option<(Duration, Duration, u32)>,
    ) -> io::Result<()> {
        match self.slot_of(h.0).and_then(|i| self.slots[i].sock.as_mut()) {
            Some(Sock::Listener(l)) => l.opts.set_keepalive(ka),
            Some(Sock::Conn(t)) => {
                t.set_keepalive(ka);
                let deadline = t.poll_at();
                self.timers.schedule(h.0, deadline);
            }
            None => return Err(err(ErrorKind::NotConnected)),
        }
        Ok(())
    }

    /// Switches the congestion control, restarting the controller if it
    /// changes (as Linux's `TCP_CONGESTION`); a listener passes it on.
    pub fn set_congestion_control(&mut self, h: TcpHandle, cc: CcAlgorithm) -> io::Result<()> {
        match self.slot_of(h.0).and_then(|i| self.slots[i].sock.as_mut()) {
            Some(Sock::Listener(l)) => l.opts.cc = cc,
            Some(Sock::Conn(t)) => {
                t.set_congestion_control(cc);
            }
            None => return Err(err(ErrorKind::NotConnected)),
        }
        Ok(())
    }

    /// Buffer sizes; only before data flows (buffers must be empty).
    pub fn set_buffer_sizes(
        &mut self,
        h: TcpHandle,
        rx: Option<usize>,
        tx: Option<usize>,
    ) -> io::Result<()> {
        match self.slot_of(h.0).and_then(|i| self.slots[i].sock.as_mut()) {
            Some(Sock::Listener(l)) => {
                l.opts.rx_buffer = rx.unwrap_or(l.opts.rx_buffer);
                l.opts.tx_buffer = tx.unwrap_or(l.opts.tx_buffer);
            }
            Some(Sock::Conn(t)) => t.set_buffer_sizes(rx, tx).map_err(err)?,
            None => return Err(err(ErrorKind::NotConnected)),
        }
        Ok(())
    }

    /// A snapshot of the connection's statistics (like Linux's `TCP_INFO`).
    pub fn info(&self, h: TcpHandle) -> io::Result<TcpInfo> {
        let t = self.conn_ref(h)?;
        Ok(TcpInfo {
            state: t.state,
            snd_una: t.snd.snd_una().0,
            snd_nxt: t.snd.snd_nxt().0,
            rcv_nxt: t.rcv.nxt().0,
            snd_wnd: t.snd.snd_wnd(),
            rcv_wnd: t.rcv.wnd(),
            cwnd: t.snd.cc().cwnd(),
            ssthresh: t.snd.cc().ssthresh(),
            srtt: t.snd.rtt().srtt(),
            rto: t.snd.rto(),
            retransmitted_segments: t.snd.retransmitted_segments(),
            retransmitted_bytes: t.snd.retransmitted_bytes(),
            mss: t.snd.mss(),
            snd_wscale: t.snd.snd_wscale(),
            rcv_wscale: t.rcv.wscale(),
            sack: t.sack_ok,
            timestamps: t.snd.timestamps(),
            bytes_in_flight: t.snd.bytes_in_flight(),
            congestion_control: t.snd.cc().name(),
        })
    }

    /// SO_ERROR: the pending error, once.
    pub fn take_error(&mut self, h: TcpHandle) -> Option<io::Error> {
        self.conn_mut(h).ok()?.take_error().map(err)
    }
}
