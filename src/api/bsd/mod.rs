//! A thin BSD-socket facade over the `std::net`-shaped API: integer
//! descriptors, errno-style errors, and the familiar call names. It holds
//! no protocol logic of its own; every call maps onto `UdpSocket` (and,
//! once TCP lands, `TcpListener`/`TcpStream`) and `Poll`.
//!
//! The two classic UDP flows, as a C programmer would write them:
//!
//! ```no_run
//! # use std::net::{Ipv4Addr, SocketAddrV4};
//! # use tapstack::api::{Net, bsd::*};
//! # fn server(net: &Net) -> Result<(), Errno> {
//! // Server: socket() -> bind() -> recvfrom() -> sendto()
//! let fd = socket(net, Domain::Inet, Type::Dgram)?;
//! bind(fd, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7000))?;
//! let mut buf = [0u8; 1500];
//! let (n, from) = recvfrom(fd, &mut buf, 0)?;
//! sendto(fd, &buf[..n], 0, from)?;
//! close(fd)?;
//! # Ok(()) }
//! # fn client(net: &Net) -> Result<(), Errno> {
//! // Client: socket() -> connect() -> send() -> recvfrom() -> close()
//! let fd = socket(net, Domain::Inet, Type::Dgram)?;
//! connect(fd, SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 7000))?;
//! send(fd, b"hello", 0)?;
//! let mut buf = [0u8; 1500];
//! let (n, _from) = recvfrom(fd, &mut buf, 0)?;
//! close(fd)?;
//! # let _ = n; Ok(()) }
//! ```
//!
//! Semantics follow Linux where they matter to a program:
//! - `socket()` creates an unbound UDP descriptor; `bind`, `connect` and
//!   the first `sendto` bind it (the last two to an ephemeral port).
//! - Descriptors are process-wide (one table shared by every `Net`),
//!   start at 3 and reuse the lowest free number, as `open(2)` does.
//! - `SO_RCVTIMEO` of zero means "no timeout" (as `setsockopt` does),
//!   a timed-out `recv` fails with `EAGAIN`.
//! - `close()` while another thread is blocked in `recv` on the same
//!   descriptor does not wake that thread (Linux does not either); the
//!   socket is released when that call returns.
//!
//! Deviations, chosen so that a facade never hangs a thread for ever:
//! a blocking `recv` on a socket that is neither bound nor connected fails
//! with `EINVAL` (Linux would block indefinitely), and `poll` with no
//! descriptors and no timeout fails with `EINVAL`.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use super::{Events, Interest, Net, Poll, Token, UdpSocket};
use crate::stack::udp::MAX_DATAGRAM;

/// A socket descriptor.
pub type Fd = i32;

/// Peek at the next datagram without removing it (Linux value).
pub const MSG_PEEK: i32 = 0x02;
/// Do not block in this call, whatever the descriptor's mode (Linux value).
pub const MSG_DONTWAIT: i32 = 0x40;

/// `poll` event bits (Linux values).
pub const POLLIN: i16 = 0x001;
pub const POLLOUT: i16 = 0x004;
pub const POLLERR: i16 = 0x008;
pub const POLLHUP: i16 = 0x010;
pub const POLLNVAL: i16 = 0x020;

/// The first descriptor handed out (0, 1 and 2 are stdio by convention).
pub const FIRST_FD: Fd = 3;

/// errno values the facade returns. `code()` gives the Linux number.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Errno {
    EBADF,
    EINVAL,
    EADDRINUSE,
    EADDRNOTAVAIL,
    ECONNREFUSED,
    ECONNRESET,
    ECONNABORTED,
    EAGAIN,
    ETIMEDOUT,
    ENOTCONN,
    EDESTADDRREQ,
    EMSGSIZE,
    EACCES,
    EHOSTUNREACH,
    ENETUNREACH,
    EPIPE,
    EAFNOSUPPORT,
    EPROTONOSUPPORT,
    EOPNOTSUPP,
    EINTR,
    ENOMEM,
    EMFILE,
    EIO,
}

impl Errno {
    /// The Linux errno number.
    pub fn code(self) -> i32 {
        use nix::libc;
        match self {
            Errno::EBADF => libc::EBADF,
            Errno::EINVAL => libc::EINVAL,
            Errno::EADDRINUSE => libc::EADDRINUSE,
            Errno::EADDRNOTAVAIL => libc::EADDRNOTAVAIL,
            Errno::ECONNREFUSED => libc::ECONNREFUSED,
            Errno::ECONNRESET => libc::ECONNRESET,
            Errno::ECONNABORTED => libc::ECONNABORTED,
            Errno::EAGAIN => libc::EAGAIN,
            Errno::ETIMEDOUT => libc::ETIMEDOUT,
            Errno::ENOTCONN => libc::ENOTCONN,
            Errno::EDESTADDRREQ => libc::EDESTADDRREQ,
            Errno::EMSGSIZE => libc::EMSGSIZE,
            Errno::EACCES => libc::EACCES,
            Errno::EHOSTUNREACH => libc::EHOSTUNREACH,
            Errno::ENETUNREACH => libc::ENETUNREACH,
            Errno::EPIPE => libc::EPIPE,
            Errno::EAFNOSUPPORT => libc::EAFNOSUPPORT,
            Errno::EPROTONOSUPPORT => libc::EPROTONOSUPPORT,
            Errno::EOPNOTSUPP => libc::EOPNOTSUPP,
            Errno::EINTR => libc::EINTR,
            Errno::ENOMEM => libc::ENOMEM,
            Errno::EMFILE => libc::EMFILE,
            Errno::EIO => libc::EIO,
        }
    }

    /// The errno for a std error kind (what the socket types return).
    pub fn from_kind(kind: io::ErrorKind) -> Errno {
        use io::ErrorKind as K;
        match kind {
            K::WouldBlock => Errno::EAGAIN,
            K::TimedOut => Errno::ETIMEDOUT,
            K::AddrInUse => Errno::EADDRINUSE,
            K::AddrNotAvailable => Errno::EADDRNOTAVAIL,
            K::ConnectionRefused => Errno::ECONNREFUSED,
            K::ConnectionReset => Errno::ECONNRESET,
            K::ConnectionAborted => Errno::ECONNABORTED,
            K::NotConnected => Errno::ENOTCONN,
            K::BrokenPipe => Errno::EPIPE,
            K::PermissionDenied => Errno::EACCES,
            K::HostUnreachable => Errno::EHOSTUNREACH,
            K::NetworkUnreachable => Errno::ENETUNREACH,
            K::InvalidInput | K::InvalidData => Errno::EINVAL,
            K::Unsupported => Errno::EOPNOTSUPP,
            K::Interrupted => Errno::EINTR,
            K::OutOfMemory => Errno::ENOMEM,
            _ => Errno::EIO,
        }
    }

    /// The errno for a raw OS error number, if it is one we name.
    pub fn from_code(code: i32) -> Option<Errno> {
        ALL.iter().copied().find(|e| e.code() == code)
    }

    /// The strerror(3) text, as glibc words it.
    pub fn message(self) -> &'static str {
        match self {
            Errno::EBADF => "Bad file descriptor",
            Errno::EINVAL => "Invalid argument",
            Errno::EADDRINUSE => "Address already in use",
            Errno::EADDRNOTAVAIL => "Cannot assign requested address",
            Errno::ECONNREFUSED => "Connection refused",
            Errno::ECONNRESET => "Connection reset by peer",
            Errno::ECONNABORTED => "Software caused connection abort",
            Errno::EAGAIN => "Resource temporarily unavailable",
            Errno::ETIMEDOUT => "Connection timed out",
            Errno::ENOTCONN => "Transport endpoint is not connected",
            Errno::EDESTADDRREQ => "Destination address required",
            Errno::EMSGSIZE => "Message too long",
            Errno::EACCES => "Permission denied",
            Errno::EHOSTUNREACH => "No route to host",
            Errno::ENETUNREACH => "Network is unreachable",
            Errno::EPIPE => "Broken pipe",
            Errno::EAFNOSUPPORT => "Address family not supported by protocol",
            Errno::EPROTONOSUPPORT => "Protocol not supported",
            Errno::EOPNOTSUPP => "Operation not supported",
            Errno::EINTR => "Interrupted system call",
            Errno::ENOMEM => "Cannot allocate memory",
            Errno::EMFILE => "Too many open files",
            Errno::EIO => "Input/output error",
        }
    }
}

const ALL: [Errno; 23] = [
    Errno::EBADF,
    Errno::EINVAL,
    Errno::EADDRINUSE,
    Errno::EADDRNOTAVAIL,
    Errno::ECONNREFUSED,
    Errno::ECONNRESET,
    Errno::ECONNABORTED,
    Errno::EAGAIN,
    Errno::ETIMEDOUT,
    Errno::ENOTCONN,
    Errno::EDESTADDRREQ,
    Errno::EMSGSIZE,
    Errno::EACCES,
    Errno::EHOSTUNREACH,
    Errno::ENETUNREACH,
    Errno::EPIPE,
    Errno::EAFNOSUPPORT,
    Errno::EPROTONOSUPPORT,
    Errno::EOPNOTSUPP,
    Errno::EINTR,
    Errno::ENOMEM,
    Errno::EMFILE,
    Errno::EIO,
];

impl From<io::Error> for Errno {
    fn from(e: io::Error) -> Errno {
        e.raw_os_error()
            .and_then(Errno::from_code)
            .unwrap_or_else(|| Errno::from_kind(e.kind()))
    }
}

impl From<io::ErrorKind> for Errno {
    fn from(kind: io::ErrorKind) -> Errno {
        Errno::from_kind(kind)
    }
}

/// Back to std: the OS error with the same number, so `kind()` and the
/// message match what std would give for a kernel socket.
impl From<Errno> for io::Error {
    fn from(e: Errno) -> io::Error {
        io::Error::from_raw_os_error(e.code())
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Errno {}

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

/// Options for `setsockopt`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SockOpt {
    /// SO_RCVTIMEO; `None` or zero = block indefinitely.
    RcvTimeo(Option<Duration>),
    /// SO_SNDTIMEO; `None` or zero = block indefinitely.
    SndTimeo(Option<Duration>),
    /// O_NONBLOCK (set through fcntl in C).
    NonBlocking(bool),
    /// SO_BROADCAST
    Broadcast(bool),
}

/// One entry of the `poll` array, as `struct pollfd`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PollFd {
    pub fd: Fd,
    pub events: i16,
    pub revents: i16,
}

impl PollFd {
    pub fn new(fd: Fd, events: i16) -> PollFd {
        PollFd {
            fd,
            events,
            revents: 0,
        }
    }
}

/// Options set on a descriptor, kept so they survive the lazy bind.
#[derive(Copy, Clone, Debug, Default)]
struct UdpOpts {
    rcvtimeo: Option<Duration>,
    sndtimeo: Option<Duration>,
    nonblocking: bool,
    broadcast: bool,
}

struct UdpEntry {
    net: Net,
    /// None until bound (explicitly or by connect/sendto).
    sock: Option<UdpSocket>,
    opts: UdpOpts,
}

/// What a descriptor refers to. The TCP issue adds `TcpListener` and
/// `TcpStream` variants (and an unbound/unconnected stream state) here;
/// every function matches on the kind, so they slot in per function.
enum Socket {
    Udp(UdpEntry),
}

impl Socket {
    fn net(&self) -> &Net {
        match self {
            Socket::Udp(u) => &u.net,
        }
    }
}

struct FdTable {
    map: HashMap<Fd, Socket>,
}

/// The process-wide descriptor table. Calls hold it only briefly (never
/// across a blocking wait); its lock is always taken before a stack's.
static TABLE: LazyLock<Mutex<FdTable>> = LazyLock::new(|| {
    Mutex::new(FdTable {
        map: HashMap::new(),
    })
});

/// Bound on open descriptors (like RLIMIT_NOFILE), reported as EMFILE.
pub const MAX_FDS: usize = 1 << 20;

fn table() -> MutexGuard<'static, FdTable> {
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
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

impl UdpEntry {
    /// Binds the socket if it is not yet, to `local` (port 0 = ephemeral),
    /// applying the options set so far.
    fn ensure_bound(&mut self, local: SocketAddrV4) -> Result<&UdpSocket, Errno> {
        if self.sock.is_none() {
            let ip = *local.ip();
            if !ip.is_unspecified() && ip != self.net.addr() {
                return Err(Errno::EADDRNOTAVAIL);
            }
            let s = UdpSocket::bind(&self.net, local)?;
            apply(&s, &self.opts)?;
            self.sock = Some(s);
        }
        Ok(self.sock.as_ref().expect("bound above"))
    }
}

fn apply(s: &UdpSocket, o: &UdpOpts) -> Result<(), Errno> {
    s.set_read_timeout(o.rcvtimeo)?;
    s.set_write_timeout(o.sndtimeo)?;
    s.set_nonblocking(o.nonblocking)?;
    s.set_broadcast(o.broadcast)?;
    Ok(())
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

/// Creates a descriptor. UDP sockets start unbound.
pub fn socket(net: &Net, domain: Domain, ty: Type) -> Result<Fd, Errno> {
    if domain != Domain::Inet {
        return Err(Errno::EAFNOSUPPORT);
    }
    let s = match ty {
        Type::Dgram => Socket::Udp(UdpEntry {
            net: net.clone(),
            sock: None,
            opts: UdpOpts::default(),
        }),
        // TCP is being written separately; the TCP issue adds stream
        // sockets (a `Socket::Tcp*` variant) and listen/accept here.
        Type::Stream => return Err(Errno::EPROTONOSUPPORT),
    };
    table().insert(s)
}

/// Binds to a local address (`0.0.0.0` = any; port 0 = ephemeral).
/// A socket that is already bound fails with EINVAL, as on Linux.
pub fn bind(fd: Fd, addr: SocketAddrV4) -> Result<(), Errno> {
    let mut t = table();
    match t.get_mut(fd)? {
        Socket::Udp(u) => {
            if u.sock.is_some() {
                return Err(Errno::EINVAL);
            }
            u.ensure_bound(addr).map(|_| ())
        }
    }
}

/// Sets the default destination (and the only source `recv` accepts).
/// Binds an unbound socket to an ephemeral port first.
pub fn connect(fd: Fd, addr: SocketAddrV4) -> Result<(), Errno> {
    if addr.port() == 0 || addr.ip().is_unspecified() {
        return Err(Errno::EINVAL);
    }
    let mut t = table();
    match t.get_mut(fd)? {
        Socket::Udp(u) => Ok(u.ensure_bound(any_port())?.connect(addr)?),
    }
}

fn check_flags(flags: i32, allowed: i32) -> Result<(), Errno> {
    if flags & !allowed != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    Ok(())
}

/// Sends to the connected peer. UDP never blocks, so `MSG_DONTWAIT` is
/// accepted and changes nothing.
pub fn send(fd: Fd, buf: &[u8], flags: i32) -> Result<usize, Errno> {
    check_flags(flags, MSG_DONTWAIT)?;
    let sock = {
        let mut t = table();
        match t.get_mut(fd)? {
            Socket::Udp(u) => match &u.sock {
                Some(s) if s.peer_addr().is_ok() => s.clone(),
                _ => return Err(Errno::EDESTADDRREQ),
            },
        }
    };
    if buf.len() > MAX_DATAGRAM {
        return Err(Errno::EMSGSIZE);
    }
    Ok(sock.send(buf)?)
}

/// Sends to `addr`; an unbound socket is first bound to an ephemeral port.
pub fn sendto(fd: Fd, buf: &[u8], flags: i32, addr: SocketAddrV4) -> Result<usize, Errno> {
    check_flags(flags, MSG_DONTWAIT)?;
    if buf.len() > MAX_DATAGRAM {
        return Err(Errno::EMSGSIZE);
    }
    let sock = {
        let mut t = table();
        match t.get_mut(fd)? {
            Socket::Udp(u) => u.ensure_bound(any_port())?.clone(),
        }
    };
    Ok(sock.send_to(buf, addr)?)
}

/// The socket to receive on, or the error for an unbound one.
fn recv_socket(fd: Fd, flags: i32) -> Result<UdpSocket, Errno> {
    check_flags(flags, MSG_PEEK | MSG_DONTWAIT)?;
    let mut t = table();
    match t.get_mut(fd)? {
        Socket::Udp(u) => match &u.sock {
            Some(s) => Ok(s.clone()),
            None if u.opts.nonblocking || flags & MSG_DONTWAIT != 0 => Err(Errno::EAGAIN),
            // Nothing can ever arrive: see the module comment.
            None => Err(Errno::EINVAL),
        },
    }
}

/// Receives one datagram, truncated to `buf`; returns its sender.
pub fn recvfrom(fd: Fd, buf: &mut [u8], flags: i32) -> Result<(usize, SocketAddrV4), Errno> {
    // Cloned out of the table so other descriptors stay usable while this
    // call blocks.
    let sock = recv_socket(fd, flags)?;
    let (n, from) = sock.recv_with(buf, flags & MSG_PEEK != 0, flags & MSG_DONTWAIT != 0)?;
    Ok((n, v4(from)?))
}

/// Receives one datagram, truncated to `buf`.
pub fn recv(fd: Fd, buf: &mut [u8], flags: i32) -> Result<usize, Errno> {
    recvfrom(fd, buf, flags).map(|(n, _)| n)
}

/// Releases the descriptor; the socket closes once no call is using it.
pub fn close(fd: Fd) -> Result<(), Errno> {
    let s = table().map.remove(&fd).ok_or(Errno::EBADF)?;
    drop(s); // outside the table lock: closing locks the stack
    Ok(())
}

fn timeout_opt(t: Option<Duration>) -> Option<Duration> {
    t.filter(|d| !d.is_zero())
}

pub fn setsockopt(fd: Fd, opt: SockOpt) -> Result<(), Errno> {
    let mut t = table();
    match t.get_mut(fd)? {
        Socket::Udp(u) => {
            match opt {
                SockOpt::RcvTimeo(d) => u.opts.rcvtimeo = timeout_opt(d),
                SockOpt::SndTimeo(d) => u.opts.sndtimeo = timeout_opt(d),
                SockOpt::NonBlocking(on) => u.opts.nonblocking = on,
                SockOpt::Broadcast(on) => u.opts.broadcast = on,
            }
            if let Some(s) = &u.sock {
                apply(s, &u.opts)?;
            }
            Ok(())
        }
    }
}

/// The local address: `0.0.0.0:0` while unbound; a connected socket bound
/// to the wildcard reports the source address it uses, as Linux does.
pub fn getsockname(fd: Fd) -> Result<SocketAddrV4, Errno> {
    let mut t = table();
    match t.get_mut(fd)? {
        Socket::Udp(u) => match &u.sock {
            None => Ok(any_port()),
            Some(s) => {
                let local = v4(s.local_addr()?)?;
                if local.ip().is_unspecified() && s.peer_addr().is_ok() {
                    Ok(SocketAddrV4::new(u.net.addr(), local.port()))
                } else {
                    Ok(local)
                }
            }
        },
    }
}

pub fn getpeername(fd: Fd) -> Result<SocketAddrV4, Errno> {
    let mut t = table();
    match t.get_mut(fd)? {
        Socket::Udp(u) => match &u.sock {
            None => Err(Errno::ENOTCONN),
            Some(s) => v4(s.peer_addr()?),
        },
    }
}

/// Waits until a descriptor is ready or `timeout` passes (`None` = no
/// limit, `Some(ZERO)` = just check). Sets each `revents` and returns how
/// many entries have a non-zero one. A descriptor that is not open gets
/// `POLLNVAL`; `POLLERR`/`POLLHUP` are reported whatever `events` asks,
/// as poll(2) does. Every open descriptor in one call must belong to the
/// same `Net` (EINVAL otherwise): one `Poll` waits on one stack.
pub fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> Result<usize, Errno> {
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    let mut net: Option<Net> = None;
    // (index into fds, socket to watch)
    let mut watched: Vec<(usize, UdpSocket)> = Vec::new();
    let mut ready_now = 0;
    {
        let mut t = table();
        for (i, p) in fds.iter_mut().enumerate() {
            p.revents = 0;
            let Ok(s) = t.get_mut(p.fd) else {
                p.revents = POLLNVAL;
                ready_now += 1;
                continue;
            };
            match &net {
                Some(n) if !Arc::ptr_eq(&n.shared, &s.net().shared) => return Err(Errno::EINVAL),
                Some(_) => {}
                None => net = Some(s.net().clone()),
            }
            match s {
                Socket::Udp(u) => match &u.sock {
                    Some(sock) => watched.push((i, sock.clone())),
                    // Unbound: sendto would work, nothing can arrive.
                    None => {
                        p.revents = p.events & POLLOUT;
                        ready_now += usize::from(p.revents != 0);
                    }
                },
            }
        }
    }
    let Some(net) = net.filter(|_| !watched.is_empty()) else {
        if ready_now > 0 {
            return Ok(ready_now);
        }
        return match timeout {
            Some(t) => {
                std::thread::sleep(t);
                Ok(0)
            }
            None => Err(Errno::EINVAL),
        };
    };
    let registry = Poll::new(&net);
    let mut registered = 0;
    for (i, sock) in &watched {
        let ev = fds[*i].events;
        let interest = match (ev & POLLIN != 0, ev & POLLOUT != 0) {
            (true, true) => Interest::BOTH,
            (true, false) => Interest::READABLE,
            (false, true) => Interest::WRITABLE,
            // Asks for nothing: only errors would be reported, and a
            // level-triggered registry cannot watch for errors alone
            // without waking on data too.
            (false, false) => continue,
        };
        registry.register(sock, Token(*i), interest)?;
        registered += 1;
    }
    // Something is already ready (an invalid or unbound descriptor): only
    // collect what else is ready now.
    let wait = if ready_now > 0 {
        Some(Duration::ZERO)
    } else {
        deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()))
    };
    if registered == 0 {
        if let Some(w) = wait {
            std::thread::sleep(w);
            return Ok(ready_now);
        }
        return Err(Errno::EINVAL);
    }
    let mut events = Events::with_capacity(registered);
    registry.poll(&mut events, wait)?;
    let mut n = ready_now;
    for e in &events {
        let p = &mut fds[e.token().0];
        // Every registered interest is one of POLLIN/POLLOUT that was
        // asked for, so each event gives a non-zero `revents`.
        let mut r = 0;
        if e.is_readable() {
            r |= POLLIN;
        }
        if e.is_writable() {
            r |= POLLOUT;
        }
        r &= p.events;
        if e.is_error() {
            r |= POLLERR;
        }
        if e.is_hup() {
            r |= POLLHUP;
        }
        p.revents = r;
        n += usize::from(r != 0);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use io::ErrorKind as K;

    #[test]
    fn std_kinds_map_to_errno() {
        let cases = [
            (K::WouldBlock, Errno::EAGAIN),
            (K::TimedOut, Errno::ETIMEDOUT),
            (K::AddrInUse, Errno::EADDRINUSE),
            (K::AddrNotAvailable, Errno::EADDRNOTAVAIL),
            (K::ConnectionRefused, Errno::ECONNREFUSED),
            (K::ConnectionReset, Errno::ECONNRESET),
            (K::ConnectionAborted, Errno::ECONNABORTED),
            (K::NotConnected, Errno::ENOTCONN),
            (K::BrokenPipe, Errno::EPIPE),
            (K::PermissionDenied, Errno::EACCES),
            (K::HostUnreachable, Errno::EHOSTUNREACH),
            (K::NetworkUnreachable, Errno::ENETUNREACH),
            (K::InvalidInput, Errno::EINVAL),
            (K::Interrupted, Errno::EINTR),
            (K::Unsupported, Errno::EOPNOTSUPP),
            (K::Other, Errno::EIO),
        ];
        for (kind, errno) in cases {
            assert_eq!(Errno::from(io::Error::new(kind, "x")), errno, "{kind:?}");
            assert_eq!(Errno::from(kind), errno, "{kind:?}");
        }
    }

    #[test]
    fn raw_os_errors_keep_their_number_and_round_trip() {
        for e in ALL {
            assert_eq!(Errno::from(io::Error::from_raw_os_error(e.code())), e);
            assert_eq!(Errno::from(io::Error::from(e)), e);
            assert_eq!(Errno::from_code(e.code()), Some(e));
        }
        // Round trip through std keeps the kind std gives a kernel socket.
        assert_eq!(io::Error::from(Errno::EAGAIN).kind(), K::WouldBlock);
        assert_eq!(
            io::Error::from(Errno::ECONNREFUSED).kind(),
            K::ConnectionRefused
        );
        assert_eq!(Errno::from_code(-1), None);
        // A number we do not name falls back to the kind.
        let e = io::Error::from_raw_os_error(nix::libc::ENOSPC);
        assert_eq!(Errno::from(e), Errno::EIO);
    }

    #[test]
    fn codes_are_distinct_and_linux_numbers() {
        let mut codes: Vec<i32> = ALL.iter().map(|e| e.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), ALL.len());
        assert_eq!(Errno::EAGAIN.code(), 11);
        assert_eq!(Errno::ECONNREFUSED.code(), 111);
        assert_eq!(Errno::EBADF.code(), 9);
    }

    #[test]
    fn display_is_strerror_text() {
        assert_eq!(
            Errno::EAGAIN.to_string(),
            "Resource temporarily unavailable"
        );
        assert_eq!(Errno::ECONNREFUSED.to_string(), "Connection refused");
        assert_eq!(Errno::EMSGSIZE.to_string(), "Message too long");
        assert_eq!(
            Errno::EDESTADDRREQ.to_string(),
            "Destination address required"
        );
        // glibc's texts are what std prints for the same number.
        for e in ALL {
            let std_text = io::Error::from_raw_os_error(e.code()).to_string();
            assert!(std_text.starts_with(e.message()), "{std_text} vs {e}");
        }
    }

    #[test]
    fn bad_descriptors_are_ebadf() {
        let mut buf = [0u8; 4];
        assert_eq!(close(-1), Err(Errno::EBADF));
        assert_eq!(recv(1, &mut buf, 0), Err(Errno::EBADF));
        assert_eq!(bind(2, any_port()), Err(Errno::EBADF));
        assert_eq!(getsockname(i32::MAX), Err(Errno::EBADF));
        let mut p = [PollFd::new(-5, POLLIN)];
        assert_eq!(poll(&mut p, Some(Duration::ZERO)), Ok(1));
        assert_eq!(p[0].revents, POLLNVAL);
    }
}
