//! SOCK_STREAM descriptors: the BSD life cycle (socket, bind, then listen
//! and accept, or connect; send/recv; shutdown) on top of `TcpListener`
//! and `TcpStream`. The std-shaped types bind and listen in one step and
//! connect in one blocking step, so this module keeps what happens in
//! between: the address `bind` claimed, a connect in progress, and the
//! options set before a socket exists.
//!
//! Errors are the ones Linux gives (checked against a kernel socket):
//! `send` on a socket never connected is EPIPE, `recv` is ENOTCONN; a
//! connected or listening socket cannot `bind`/`connect` again (EINVAL /
//! EISCONN); `listen` on an unbound socket binds an ephemeral port;
//! a non-blocking `connect` gives EINPROGRESS, then EALREADY, then 0 (or
//! the failure, e.g. ECONNREFUSED) once the handshake is over, then
//! EISCONN.

use std::io;
use std::net::{Shutdown, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use super::readiness::Watched;
use super::{Errno, Fd, FdTable, SHUT_RD, SHUT_RDWR, SHUT_WR, SockOpt, Socket, any_port};
use super::{Table, check_local, table, timeout_opt, v4};
use crate::api::{Net, TcpListener, TcpStream};
use crate::stack::tcp::TcpState;

/// Linux's default (and maximum) listen backlog, net.core.somaxconn.
pub const SOMAXCONN: i32 = 4096;

/// Linux limits for TCP_KEEPIDLE/TCP_KEEPINTVL (seconds) and TCP_KEEPCNT
/// (include/net/tcp.h MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT).
const MAX_KEEP_SECS: u64 = 32767;
const MAX_KEEPCNT: u32 = 127;

/// How often `bind(port 0)` retries when the stack's ephemeral pick is a
/// port another idle descriptor has claimed (the stack does not know
/// about those).
const EPHEMERAL_TRIES: usize = 16;

#[derive(Copy, Clone, Debug)]
struct TcpOpts {
    rcvtimeo: Option<Duration>,
    sndtimeo: Option<Duration>,
    nonblocking: bool,
    nodelay: bool,
    /// SO_LINGER {on, 0}: close() resets the connection.
    abort_on_close: bool,
    keepalive: bool,
    keepidle: Duration,
    keepintvl: Duration,
    keepcnt: u32,
}

impl Default for TcpOpts {
    /// Linux's defaults: keepalive off, 7200 s idle, 75 s apart, 9 probes
    /// (tcp(7)).
    fn default() -> TcpOpts {
        TcpOpts {
            rcvtimeo: None,
            sndtimeo: None,
            nonblocking: false,
            nodelay: false,
            abort_on_close: false,
            keepalive: false,
            keepidle: Duration::from_secs(7200),
            keepintvl: Duration::from_secs(75),
            keepcnt: 9,
        }
    }
}

enum State {
    /// New, or back after a failed connect or a listener's SHUT_RD.
    Idle,
    /// The SYN is out; the handshake has not finished (as far as this
    /// descriptor has looked).
    Connecting(TcpStream),
    Connected(TcpStream),
    Listening(TcpListener),
}

pub(super) struct TcpEntry {
    pub(super) net: Net,
    /// What `bind` (or `listen` on an unbound socket) claimed. While the
    /// socket is idle or listening, no other descriptor may bind its port.
    bound: Option<SocketAddrV4>,
    state: State,
    opts: TcpOpts,
}

fn apply_stream(s: &TcpStream, o: &TcpOpts) -> Result<(), Errno> {
    s.set_read_timeout(o.rcvtimeo)?;
    s.set_write_timeout(o.sndtimeo)?;
    s.set_nonblocking(o.nonblocking)?;
    s.set_nodelay(o.nodelay)?;
    s.set_linger(o.abort_on_close.then_some(Duration::ZERO))?;
    s.set_keepalive(o.keepalive.then_some((o.keepidle, o.keepintvl, o.keepcnt)))?;
    Ok(())
}

fn keep_secs(d: Duration) -> Result<Duration, Errno> {
    if (1..=MAX_KEEP_SECS).contains(&d.as_secs()) {
        Ok(d)
    } else {
        Err(Errno::EINVAL)
    }
}

impl TcpEntry {
    pub(super) fn new(net: &Net) -> TcpEntry {
        TcpEntry {
            net: net.clone(),
            bound: None,
            state: State::Idle,
            opts: TcpOpts::default(),
        }
    }

    /// Whether this descriptor holds `port` against a new `bind`.
    fn claims(&self, net: &Net, port: u16) -> bool {
        Arc::ptr_eq(&self.net.shared, &net.shared)
            && self.bound.is_some_and(|b| b.port() == port)
            && matches!(self.state, State::Idle | State::Listening(_))
    }

    pub(super) fn setsockopt(&mut self, opt: SockOpt) -> Result<(), Errno> {
        let o = &mut self.opts;
        match opt {
            SockOpt::RcvTimeo(d) => o.rcvtimeo = timeout_opt(d),
            SockOpt::SndTimeo(d) => o.sndtimeo = timeout_opt(d),
            SockOpt::NonBlocking(on) => o.nonblocking = on,
            // Linux stores SO_BROADCAST on any socket; TCP never uses it.
            SockOpt::Broadcast(_) => {}
            SockOpt::NoDelay(on) => o.nodelay = on,
            SockOpt::Linger(None) => o.abort_on_close = false,
            SockOpt::Linger(Some(d)) if d.is_zero() => o.abort_on_close = true,
            // A close that blocks until the data is acknowledged: the
            // stream API only offers the abortive {on, 0} form.
            SockOpt::Linger(Some(_)) => return Err(Errno::EOPNOTSUPP),
            SockOpt::KeepAlive(on) => o.keepalive = on,
            SockOpt::KeepIdle(d) => o.keepidle = keep_secs(d)?,
            SockOpt::KeepIntvl(d) => o.keepintvl = keep_secs(d)?,
            SockOpt::KeepCnt(n) if (1..=MAX_KEEPCNT).contains(&n) => o.keepcnt = n,
            SockOpt::KeepCnt(_) => return Err(Errno::EINVAL),
        }
        match &self.state {
            State::Idle => Ok(()),
            State::Listening(l) => Ok(l.set_nonblocking(self.opts.nonblocking)?),
            State::Connecting(s) | State::Connected(s) => apply_stream(s, &self.opts),
        }
    }

    /// The local address: what was bound (`0.0.0.0:0` if nothing) until
    /// the socket listens or connects.
    pub(super) fn sockname(&self) -> Result<SocketAddrV4, Errno> {
        let held = self.bound.unwrap_or_else(any_port);
        let addr = match &self.state {
            State::Idle => return Ok(held),
            State::Listening(l) => l.local_addr(),
            State::Connecting(s) | State::Connected(s) => s.local_addr(),
        };
        Ok(addr.ok().and_then(|a| v4(a).ok()).unwrap_or(held))
    }

    /// ENOTCONN unless the connection is established or still closing
    /// (Linux: also ENOTCONN in SYN-SENT and once it is CLOSED).
    pub(super) fn peername(&self) -> Result<SocketAddrV4, Errno> {
        let State::Connected(s) = &self.state else {
            return Err(Errno::ENOTCONN);
        };
        let open = s
            .info()
            .is_ok_and(|i| !matches!(i.state, TcpState::Closed | TcpState::TimeWait));
        if !open {
            return Err(Errno::ENOTCONN);
        }
        s.peer_addr().map_err(|_| Errno::ENOTCONN).and_then(v4)
    }

    /// What `poll` watches; None while idle (neither listening nor
    /// connecting), which Linux reports as POLLOUT | POLLHUP.
    pub(super) fn watch(&self) -> Option<Watched> {
        match &self.state {
            State::Idle => None,
            State::Listening(l) => Some(Watched::Listener(l.clone())),
            State::Connecting(s) | State::Connected(s) => Some(Watched::Stream(s.clone())),
        }
    }
}

/// The stream entry of `fd`. Callers hold the table lock since they saw
/// a stream descriptor, so the UDP arm only guards against misuse.
fn entry(t: &mut FdTable, fd: Fd) -> Result<&mut TcpEntry, Errno> {
    match t.get_mut(fd)? {
        Socket::Tcp(e) => Ok(e),
        Socket::Udp(_) => Err(Errno::EINVAL),
    }
}

/// Claims `addr` for `fd`: refuses a port another descriptor of the same
/// stack holds or a listener uses (EADDRINUSE), and picks a free one for
/// port 0.
fn claim(t: &mut FdTable, fd: Fd, addr: SocketAddrV4) -> Result<SocketAddrV4, Errno> {
    let net = entry(t, fd)?.net.clone();
    check_local(&net, addr)?;
    for _ in 0..EPHEMERAL_TRIES {
        let got = TcpListener::probe(&net, addr)?;
        let taken = t.map.iter().any(|(&other, s)| {
            other != fd && matches!(s, Socket::Tcp(e) if e.claims(&net, got.port()))
        });
        if !taken {
            return Ok(got);
        }
        if addr.port() != 0 {
            break;
        }
    }
    Err(Errno::EADDRINUSE)
}

pub(super) fn bind(t: &mut FdTable, fd: Fd, addr: SocketAddrV4) -> Result<(), Errno> {
    let e = entry(t, fd)?;
    if e.bound.is_some() || !matches!(e.state, State::Idle) {
        return Err(Errno::EINVAL);
    }
    let addr = claim(t, fd, addr)?;
    entry(t, fd)?.bound = Some(addr);
    Ok(())
}

/// `backlog` as Linux takes it: above SOMAXCONN (or negative, which is
/// huge as the kernel's unsigned) it is SOMAXCONN; 0 still lets one
/// connection queue.
pub(super) fn listen(t: &mut FdTable, fd: Fd, backlog: i32) -> Result<(), Errno> {
    let e = entry(t, fd)?;
    match e.state {
        // Linux only updates the backlog; the stack's listener keeps its own.
        State::Listening(_) => return Ok(()),
        State::Connecting(_) | State::Connected(_) => return Err(Errno::EINVAL),
        State::Idle => {}
    }
    let local = match e.bound {
        Some(a) => a,
        None => claim(t, fd, any_port())?,
    };
    let e = entry(t, fd)?;
    let backlog = if (0..=SOMAXCONN).contains(&backlog) {
        backlog
    } else {
        SOMAXCONN
    };
    let l = TcpListener::bind_with_backlog(&e.net, local, backlog as usize)?;
    l.set_nonblocking(e.opts.nonblocking)?;
    e.bound = Some(local);
    e.state = State::Listening(l);
    Ok(())
}

/// Waits (per O_NONBLOCK and SO_RCVTIMEO) for a connection. The new
/// descriptor inherits the listener's socket options but not O_NONBLOCK,
/// which is a file flag (accept(2)).
pub(super) fn accept(net: &Net, mut t: Table, fd: Fd) -> Result<(Fd, SocketAddrV4), Errno> {
    let e = entry(&mut t, fd)?;
    let (listener, opts) = match &e.state {
        State::Listening(l) => (l.clone(), e.opts),
        _ => return Err(Errno::EINVAL),
    };
    drop(t);
    let (stream, peer) = listener.accept_with(opts.rcvtimeo)?;
    let opts = TcpOpts {
        nonblocking: false,
        ..opts
    };
    apply_stream(&stream, &opts)?;
    let new = table(net).insert(Socket::Tcp(TcpEntry {
        net: net.clone(),
        bound: None,
        state: State::Connected(stream),
        opts,
    }))?;
    Ok((new, v4(peer)?))
}

/// Records how a wait for the handshake ended, if `fd` still holds that
/// connection (it may have been closed, or reused, meanwhile). A wait
/// that ran out gives `pending`.
fn settle(
    net: &Net,
    fd: Fd,
    stream: &TcpStream,
    r: io::Result<()>,
    pending: Errno,
) -> Result<(), Errno> {
    if r.as_ref()
        .is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock)
    {
        return Err(pending);
    }
    let mut t = table(net);
    if let Ok(Socket::Tcp(e)) = t.get_mut(fd)
        && matches!(&e.state, State::Connecting(s) if s.id() == stream.id())
    {
        let old = std::mem::replace(
            &mut e.state,
            match r {
                Ok(()) => State::Connected(stream.clone()),
                Err(_) => State::Idle,
            },
        );
        drop(t);
        drop(old); // a failed connection closes outside the table lock
    }
    r.map_err(Errno::from)
}

pub(super) fn connect(net: &Net, mut t: Table, fd: Fd, addr: SocketAddrV4) -> Result<(), Errno> {
    let e = entry(&mut t, fd)?;
    let (stream, pending) = match &e.state {
        State::Listening(_) | State::Connected(_) => return Err(Errno::EISCONN),
        State::Connecting(s) => (s.clone(), Errno::EALREADY),
        State::Idle => {
            let s = TcpStream::connect_start(&e.net, e.bound, addr)?;
            apply_stream(&s, &e.opts)?;
            e.state = State::Connecting(s.clone());
            if e.opts.nonblocking {
                // Linux does not look at the handshake here, even when
                // the answer is already in: the next call reports it.
                return Err(Errno::EINPROGRESS);
            }
            (s, Errno::EINPROGRESS)
        }
    };
    // Linux bounds a blocking connect by SO_SNDTIMEO (then EINPROGRESS).
    let (blocking, timeout) = (!e.opts.nonblocking, e.opts.sndtimeo);
    drop(t);
    let r = stream.wait_connected(blocking, timeout, io::ErrorKind::WouldBlock);
    settle(net, fd, &stream, r, pending)
}

/// The stream to send or receive on. A connect in progress is waited for
/// (or EAGAIN without blocking); never connected: `idle_errno`.
fn established(
    net: &Net,
    mut t: Table,
    fd: Fd,
    dontwait: bool,
    idle_errno: Errno,
) -> Result<TcpStream, Errno> {
    let e = entry(&mut t, fd)?;
    let stream = match &e.state {
        State::Connected(s) => return Ok(s.clone()),
        State::Idle | State::Listening(_) => return Err(idle_errno),
        State::Connecting(s) => s.clone(),
    };
    let blocking = !e.opts.nonblocking && !dontwait;
    let timeout = e.opts.sndtimeo;
    drop(t);
    let r = stream.wait_connected(blocking, timeout, io::ErrorKind::WouldBlock);
    settle(net, fd, &stream, r, Errno::EAGAIN)?;
    Ok(stream)
}

/// Queues all of `buf` (blocking mode) or what fits (non-blocking). As on
/// Linux, an error after some bytes were queued returns that count; the
/// error comes with the next call. SO_SNDTIMEO bounds each wait for room.
pub(super) fn send(
    net: &Net,
    t: Table,
    fd: Fd,
    buf: &[u8],
    dontwait: bool,
) -> Result<usize, Errno> {
    let stream = established(net, t, fd, dontwait, Errno::EPIPE)?;
    if buf.is_empty() {
        return Ok(0);
    }
    let mut sent = 0;
    // Each pass queues at least one byte or returns.
    while sent < buf.len() {
        match stream.send_with(&buf[sent..], dontwait) {
            Ok(n) => sent += n,
            Err(_) if sent > 0 => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(sent)
}

/// One receive (or peek). Ok(0) is end of stream.
pub(super) fn recv(
    net: &Net,
    t: Table,
    fd: Fd,
    buf: &mut [u8],
    peek: bool,
    dontwait: bool,
) -> Result<(usize, TcpStream), Errno> {
    let stream = established(net, t, fd, dontwait, Errno::ENOTCONN)?;
    let n = stream.recv_with(buf, peek, dontwait)?;
    Ok((n, stream))
}

pub(super) fn shutdown(mut t: Table, fd: Fd, how: i32) -> Result<(), Errno> {
    let how = match how {
        SHUT_RD => Shutdown::Read,
        SHUT_WR => Shutdown::Write,
        SHUT_RDWR => Shutdown::Both,
        _ => return Err(Errno::EINVAL),
    };
    let e = entry(&mut t, fd)?;
    let old = match &e.state {
        State::Idle => return Err(Errno::ENOTCONN),
        State::Connected(s) => return Ok(s.shutdown(how)?),
        // Linux: SHUT_WR does nothing to a listener.
        State::Listening(_) if how == Shutdown::Write => return Ok(()),
        // Linux stops listening (the port stays bound; `listen` again
        // reopens it) and abandons a connect in progress.
        State::Listening(_) | State::Connecting(_) => std::mem::replace(&mut e.state, State::Idle),
    };
    drop(t);
    drop(old); // closing locks the stack: outside the table lock
    Ok(())
}
