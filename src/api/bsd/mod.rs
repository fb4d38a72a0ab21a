//! A thin BSD-socket facade over the `std::net`-shaped API: integer
//! descriptors, errno-style errors, and the familiar call names. It holds
//! no protocol logic of its own; every call maps onto `UdpSocket`,
//! `TcpListener`/`TcpStream` and `Poll`.
//!
//! The classic flows, as a C programmer would write them:
//!
//! ```no_run
//! # use std::net::{Ipv4Addr, SocketAddrV4};
//! # use tapstack::api::{Net, bsd::*};
//! # fn udp_server(net: &Net) -> Result<(), Errno> {
//! // UDP server: socket() -> bind() -> recvfrom() -> sendto()
//! let fd = socket(net, Domain::Inet, Type::Dgram)?;
//! bind(net, fd, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7000))?;
//! let mut buf = [0u8; 1500];
//! let (n, from) = recvfrom(net, fd, &mut buf, 0)?;
//! sendto(net, fd, &buf[..n], 0, from)?;
//! close(net, fd)?;
//! # Ok(()) }
//! # fn udp_client(net: &Net) -> Result<(), Errno> {
//! // UDP client: socket() -> connect() -> send() -> recvfrom() -> close()
//! let fd = socket(net, Domain::Inet, Type::Dgram)?;
//! connect(net, fd, SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 7000))?;
//! send(net, fd, b"hello", 0)?;
//! let mut buf = [0u8; 1500];
//! let (n, _from) = recvfrom(net, fd, &mut buf, 0)?;
//! close(net, fd)?;
//! # let _ = n; Ok(()) }
//! # fn tcp_server(net: &Net) -> Result<(), Errno> {
//! // TCP echo server: socket() -> bind() -> listen() -> accept() -> recv()/send()
//! let lfd = socket(net, Domain::Inet, Type::Stream)?;
//! bind(net, lfd, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7000))?;
//! listen(net, lfd, 16)?;
//! let (cfd, _peer) = accept(net, lfd)?;
//! let mut buf = [0u8; 4096];
//! loop {
//!     let n = recv(net, cfd, &mut buf, 0)?;
//!     if n == 0 {
//!         break; // the client shut down its side
//!     }
//!     send(net, cfd, &buf[..n], 0)?;
//! }
//! close(net, cfd)?;
//! close(net, lfd)?;
//! # Ok(()) }
//! # fn tcp_client(net: &Net) -> Result<(), Errno> {
//! // TCP client: socket() -> connect() -> send() -> shutdown() -> recv()
//! let fd = socket(net, Domain::Inet, Type::Stream)?;
//! connect(net, fd, SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 7000))?;
//! send(net, fd, b"hello", 0)?;
//! shutdown(net, fd, SHUT_WR)?;
//! let mut buf = [0u8; 5];
//! let n = recv(net, fd, &mut buf, 0)?;
//! close(net, fd)?;
//! # let _ = n; Ok(()) }
//! ```
//!
//! Semantics follow Linux where they matter to a program:
//! - `socket()` creates an unbound descriptor. A UDP one is bound by
//!   `bind`, `connect` or the first `sendto` (the last two to an ephemeral
//!   port). A TCP one claims its port at `bind` (EADDRINUSE if another
//!   descriptor holds it or a listener uses it) or, unbound, at `listen`
//!   or `connect`; see `tcp.rs` for the stream errors.
//! - Every call names the `Net` (the stack, as a process would be implicit
//!   in C): each `Net` has its own descriptor table, as each process has,
//!   so stacks in one process (tests, several stacks) never see each
//!   other's descriptors. Descriptors start at 3 and reuse the lowest free
//!   number, as `open(2)` does.
//! - `SO_RCVTIMEO` of zero means "no timeout" (as `setsockopt` does),
//!   a timed-out `recv` or `accept` fails with `EAGAIN`.
//! - `close()` while another thread is blocked in `recv` or `accept` on
//!   the same descriptor does not wake that thread (Linux does not
//!   either); the socket is released when that call returns.
//! - `send` never raises SIGPIPE: a broken stream gives EPIPE, as with
//!   `MSG_NOSIGNAL` (which is accepted).
//!
//! Deviations, chosen so that a facade never hangs a thread for ever:
//! a blocking `recv` on a UDP socket that is neither bound nor connected
//! fails with `EINVAL` (Linux would block indefinitely), and `poll` with
//! no descriptors and no timeout fails with `EINVAL`. Others, where the
//! stream API offers less than a kernel socket: `connect` to port 0 or
//! `0.0.0.0` is EINVAL (Linux sends the SYN and gets ECONNREFUSED); a
//! non-zero `SO_LINGER` is EOPNOTSUPP; a second `listen` keeps the first
//! backlog; a connection never holds its port against `bind` (as if every
//! socket had SO_REUSEADDR); `SHUT_RD` discards data that arrives later
//! (Linux still delivers it); and `shutdown` on UDP is EOPNOTSUPP once
//! connected.

mod errno;
mod readiness;
mod tcp;
mod udp;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub use errno::Errno;
pub use readiness::poll;
pub use tcp::SOMAXCONN;

use super::Net;
use crate::stack::udp::MAX_DATAGRAM;
use tcp::TcpEntry;
use udp::UdpEntry;

/// A socket descriptor.
pub type Fd = i32;

/// Peek at the next data without removing it (Linux value).
pub const MSG_PEEK: i32 = 0x02;
/// Do not block in this call, whatever the descriptor's mode (Linux value).
pub const MSG_DONTWAIT: i32 = 0x40;
/// Do not raise SIGPIPE on a broken stream. The facade never does, so
/// this is accepted and changes nothing (Linux value).
pub const MSG_NOSIGNAL: i32 = 0x4000;

/// `shutdown` directions (Linux values): shut down receiving.
pub const SHUT_RD: i32 = 0;
/// Shut down sending (FIN).
pub const SHUT_WR: i32 = 1;
/// Shut down both directions.
pub const SHUT_RDWR: i32 = 2;

/// `poll` event bits (Linux values): readable.
pub const POLLIN: i16 = 0x001;
/// Writable.
pub const POLLOUT: i16 = 0x004;
/// An error is pending (always reported).
pub const POLLERR: i16 = 0x008;
/// Hung up: the connection is closed (always reported).
pub const POLLHUP: i16 = 0x010;
/// Not an open descriptor (always reported).
pub const POLLNVAL: i16 = 0x020;

/// The first descriptor handed out (0, 1 and 2 are stdio by convention).
pub const FIRST_FD: Fd = 3;

/// Address families.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Domain {
    /// AF_INET
    Inet,
    /// AF_INET6: the stack is IPv4-only, so `socket` fails with EAFNOSUPPORT.
    Inet6,
}

/// Socket types.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Type {
    /// SOCK_DGRAM (UDP)
    Dgram,
    /// SOCK_STREAM (TCP)
    Stream,
}

/// Options for `setsockopt`. Set before a TCP socket listens or connects,
/// they apply once it does; an accepted socket inherits its listener's
/// (all but O_NONBLOCK, a file flag).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SockOpt {
    /// SO_RCVTIMEO; `None` or zero = block indefinitely.
    RcvTimeo(Option<Duration>),
    /// SO_SNDTIMEO; `None` or zero = block indefinitely. Also bounds a
    /// blocking TCP `connect` (then EINPROGRESS), as on Linux.
    SndTimeo(Option<Duration>),
    /// O_NONBLOCK (set through fcntl in C).
    NonBlocking(bool),
    /// SO_BROADCAST (UDP; stored and unused on TCP, as on Linux)
    Broadcast(bool),
    /// TCP_NODELAY (TCP only: ENOPROTOOPT on UDP)
    NoDelay(bool),
    /// SO_LINGER: `None` = off (graceful close), `Some(ZERO)` = close
    /// resets the connection. A non-zero linger is EOPNOTSUPP.
    Linger(Option<Duration>),
    /// SO_KEEPALIVE
    KeepAlive(bool),
    /// TCP_KEEPIDLE: idle time before the first probe (1..=32767 s).
    KeepIdle(Duration),
    /// TCP_KEEPINTVL: time between probes (1..=32767 s).
    KeepIntvl(Duration),
    /// TCP_KEEPCNT: unanswered probes before the connection is dropped
    /// (1..=127).
    KeepCnt(u32),
}

/// One entry of the `poll` array, as `struct pollfd`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PollFd {
    /// The descriptor (a negative one is ignored by Linux; here POLLNVAL).
    pub fd: Fd,
    /// The events asked for (POLLIN, POLLOUT).
    pub events: i16,
    /// The events that happened, set by `poll`.
    pub revents: i16,
}

impl PollFd {
    /// An entry asking for `events` on `fd`.
    pub fn new(fd: Fd, events: i16) -> PollFd {
        PollFd {
            fd,
            events,
            revents: 0,
        }
    }
}

/// What a descriptor refers to; every call matches on the kind.
enum Socket {
    Udp(UdpEntry),
    Tcp(TcpEntry),
}

#[derive(Default)]
struct FdTable {
    map: HashMap<Fd, Socket>,
}

/// One `Net`'s descriptor table (every clone of the `Net` shares it).
/// Calls hold it only briefly (never across a blocking wait); its lock is
/// always taken before a stack's.
#[derive(Default)]
pub(crate) struct Descriptors(Mutex<FdTable>);

impl Descriptors {
    /// Closes every descriptor. The entries hold clones of their `Net`,
    /// which holds this table: `Net::shutdown` calls this to break that
    /// cycle.
    pub(crate) fn close_all(&self) {
        let map = std::mem::take(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()).map);
        drop(map); // outside the table lock: closing locks the stack
    }
}

/// Bound on open descriptors (like RLIMIT_NOFILE), reported as EMFILE.
pub const MAX_FDS: usize = 1 << 20;

/// The locked table, handed to the per-kind code that may release it
/// before blocking.
type Table<'a> = MutexGuard<'a, FdTable>;

fn table(net: &Net) -> Table<'_> {
    net.fds.0.lock().unwrap_or_else(|e| e.into_inner())
}

impl FdTable {
    fn get_mut(&mut self, fd: Fd) -> Result<&mut Socket, Errno> {
        self.map.get_mut(&fd).ok_or(Errno::EBADF)
    }

    /// The lowest free descriptor ≥ FIRST_FD.
    fn insert(&mut self, s: Socket) -> Result<Fd, Errno> {
        if self.map.len() >= MAX_FDS {
            return Err(Errno::EMFILE);
        }
        let mut fd = FIRST_FD;
        while self.map.contains_key(&fd) {
            fd += 1;
        }
        self.map.insert(fd, s);
        Ok(fd)
    }
}

fn any_port() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)
}

fn v4(a: SocketAddr) -> Result<SocketAddrV4, Errno> {
    match a {
        SocketAddr::V4(v) => Ok(v),
        SocketAddr::V6(_) => Err(Errno::EAFNOSUPPORT),
    }
}

/// A local address must be the wildcard or the stack's own.
fn check_local(net: &Net, local: SocketAddrV4) -> Result<(), Errno> {
    let ip = *local.ip();
    if !ip.is_unspecified() && ip != net.addr() {
        return Err(Errno::EADDRNOTAVAIL);
    }
    Ok(())
}

fn check_flags(flags: i32, allowed: i32) -> Result<(), Errno> {
    if flags & !allowed != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    Ok(())
}

fn timeout_opt(t: Option<Duration>) -> Option<Duration> {
    t.filter(|d| !d.is_zero())
}

/// Creates a descriptor; it starts unbound.
pub fn socket(net: &Net, domain: Domain, ty: Type) -> Result<Fd, Errno> {
    if domain != Domain::Inet {
        return Err(Errno::EAFNOSUPPORT);
    }
    let s = match ty {
        Type::Dgram => Socket::Udp(UdpEntry::new(net)),
        Type::Stream => Socket::Tcp(TcpEntry::new(net)),
    };
    table(net).insert(s)
}

/// Binds to a local address (`0.0.0.0` = any; port 0 = ephemeral).
/// A socket that is already bound fails with EINVAL, as on Linux.
pub fn bind(net: &Net, fd: Fd, addr: SocketAddrV4) -> Result<(), Errno> {
    let mut t = table(net);
    match t.get_mut(fd)? {
        Socket::Udp(u) => u.bind(addr),
        Socket::Tcp(_) => tcp::bind(&mut t, fd, addr),
    }
}

/// Starts accepting connections (TCP). An unbound socket is bound to an
/// ephemeral port first; `backlog` is clamped to `SOMAXCONN`.
pub fn listen(net: &Net, fd: Fd, backlog: i32) -> Result<(), Errno> {
    let mut t = table(net);
    match t.get_mut(fd)? {
        Socket::Udp(_) => Err(Errno::EOPNOTSUPP),
        Socket::Tcp(_) => tcp::listen(&mut t, fd, backlog),
    }
}

/// Takes the next connection from a listening socket: a new descriptor
/// and the peer's address. EINVAL if `fd` is not listening; EAGAIN when
/// non-blocking (or after SO_RCVTIMEO) with none queued.
pub fn accept(net: &Net, fd: Fd) -> Result<(Fd, SocketAddrV4), Errno> {
    let mut t = table(net);
    match t.get_mut(fd)? {
        Socket::Udp(_) => Err(Errno::EOPNOTSUPP),
        Socket::Tcp(_) => tcp::accept(net, t, fd),
    }
}

/// UDP: sets the default destination (and the only source `recv`
/// accepts), binding an unbound socket to an ephemeral port first.
/// TCP: opens the connection (blocking unless O_NONBLOCK, see `tcp.rs`).
pub fn connect(net: &Net, fd: Fd, addr: SocketAddrV4) -> Result<(), Errno> {
    if addr.port() == 0 || addr.ip().is_unspecified() {
        return Err(Errno::EINVAL);
    }
    let mut t = table(net);
    match t.get_mut(fd)? {
        Socket::Udp(u) => u.connect(addr),
        Socket::Tcp(_) => tcp::connect(net, t, fd, addr),
    }
}

/// Sends to the connected peer. UDP never blocks, so `MSG_DONTWAIT` is
/// accepted and changes nothing there; TCP queues all of `buf` unless
/// non-blocking.
pub fn send(net: &Net, fd: Fd, buf: &[u8], flags: i32) -> Result<usize, Errno> {
    check_flags(flags, MSG_DONTWAIT | MSG_NOSIGNAL)?;
    let mut t = table(net);
    let sock = match t.get_mut(fd)? {
        Socket::Udp(u) => u.connected()?,
        Socket::Tcp(_) => return tcp::send(net, t, fd, buf, flags & MSG_DONTWAIT != 0),
    };
    drop(t);
    if buf.len() > MAX_DATAGRAM {
        return Err(Errno::EMSGSIZE);
    }
    Ok(sock.send(buf)?)
}

/// Sends to `addr`; an unbound UDP socket is first bound to an ephemeral
/// port. On TCP the address is ignored, as Linux does for a stream.
pub fn sendto(
    net: &Net,
    fd: Fd,
    buf: &[u8],
    flags: i32,
    addr: SocketAddrV4,
) -> Result<usize, Errno> {
    check_flags(flags, MSG_DONTWAIT | MSG_NOSIGNAL)?;
    let mut t = table(net);
    let sock = match t.get_mut(fd)? {
        Socket::Udp(u) => {
            if buf.len() > MAX_DATAGRAM {
                return Err(Errno::EMSGSIZE);
            }
            u.ensure_bound(any_port())?.clone()
        }
        Socket::Tcp(_) => return tcp::send(net, t, fd, buf, flags & MSG_DONTWAIT != 0),
    };
    drop(t);
    Ok(sock.send_to(buf, addr)?)
}

/// UDP: receives one datagram, truncated to `buf`, and its sender.
/// TCP: receives what is there (up to `buf`), and the peer's address;
/// Ok with 0 bytes is end of stream.
pub fn recvfrom(
    net: &Net,
    fd: Fd,
    buf: &mut [u8],
    flags: i32,
) -> Result<(usize, SocketAddrV4), Errno> {
    check_flags(flags, MSG_PEEK | MSG_DONTWAIT)?;
    let (peek, dontwait) = (flags & MSG_PEEK != 0, flags & MSG_DONTWAIT != 0);
    let mut t = table(net);
    // Cloned out of the table so other descriptors stay usable while this
    // call blocks.
    let sock = match t.get_mut(fd)? {
        Socket::Udp(u) => u.receiver(dontwait)?,
        Socket::Tcp(_) => {
            let (n, stream) = tcp::recv(net, t, fd, buf, peek, dontwait)?;
            let peer = stream.peer_addr().ok().and_then(|a| v4(a).ok());
            return Ok((n, peer.unwrap_or_else(any_port)));
        }
    };
    drop(t);
    let (n, from) = sock.recv_with(buf, peek, dontwait)?;
    Ok((n, v4(from)?))
}

/// Receives one datagram (UDP) or what is there (TCP; 0 = end of stream).
pub fn recv(net: &Net, fd: Fd, buf: &mut [u8], flags: i32) -> Result<usize, Errno> {
    check_flags(flags, MSG_PEEK | MSG_DONTWAIT)?;
    let mut t = table(net);
    if let Socket::Tcp(_) = t.get_mut(fd)? {
        let (peek, dontwait) = (flags & MSG_PEEK != 0, flags & MSG_DONTWAIT != 0);
        return tcp::recv(net, t, fd, buf, peek, dontwait).map(|(n, _)| n);
    }
    drop(t);
    recvfrom(net, fd, buf, flags).map(|(n, _)| n)
}

/// Shuts down one or both directions (`SHUT_RD`, `SHUT_WR`, `SHUT_RDWR`).
/// TCP: `SHUT_WR` sends FIN once queued data is out; the peer reads EOF.
pub fn shutdown(net: &Net, fd: Fd, how: i32) -> Result<(), Errno> {
    let mut t = table(net);
    match t.get_mut(fd)? {
        Socket::Udp(u) if u.peername().is_ok() => Err(Errno::EOPNOTSUPP),
        Socket::Udp(_) => Err(Errno::ENOTCONN),
        Socket::Tcp(_) => tcp::shutdown(t, fd, how),
    }
}

/// Releases the descriptor; the socket closes once no call is using it.
pub fn close(net: &Net, fd: Fd) -> Result<(), Errno> {
    let s = table(net).map.remove(&fd).ok_or(Errno::EBADF)?;
    drop(s); // outside the table lock: closing locks the stack
    Ok(())
}

/// Sets a socket option (see `SockOpt`).
pub fn setsockopt(net: &Net, fd: Fd, opt: SockOpt) -> Result<(), Errno> {
    let mut t = table(net);
    match t.get_mut(fd)? {
        Socket::Udp(u) => u.setsockopt(opt),
        Socket::Tcp(e) => e.setsockopt(opt),
    }
}

/// The local address: `0.0.0.0:0` while unbound.
pub fn getsockname(net: &Net, fd: Fd) -> Result<SocketAddrV4, Errno> {
    let mut t = table(net);
    match t.get_mut(fd)? {
        Socket::Udp(u) => u.sockname(),
        Socket::Tcp(e) => e.sockname(),
    }
}

/// The peer's address; ENOTCONN if there is none.
pub fn getpeername(net: &Net, fd: Fd) -> Result<SocketAddrV4, Errno> {
    let mut t = table(net);
    match t.get_mut(fd)? {
        Socket::Udp(u) => u.peername(),
        Socket::Tcp(e) => e.peername(),
    }
}
