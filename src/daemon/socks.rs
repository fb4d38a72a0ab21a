//! What the daemon keeps per client socket, and the pumps that move bytes
//! between a socket's descriptor pair and the stack.
//!
//! Flow control is the buffers' own: each direction has one bounded
//! staging buffer, refilled only once it is empty. A full TCP send buffer
//! leaves bytes in the fd->TCP stage, so the daemon stops reading the
//! descriptor and the client's writes block (or return EAGAIN) once the
//! socketpair fills; a full socketpair leaves bytes in the TCP->fd stage,
//! so the daemon stops reading TCP and the receive window closes.

use std::net::{Shutdown, SocketAddrV4};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;

use super::fdio;
use super::proto::{self, UDP_HDR};
use crate::api::Net;
use crate::api::bsd::Errno as BsdErrno;
use crate::stack::tcp::{TcpHandle, TcpState};
use crate::stack::udp::UdpHandle;

/// Bytes staged per direction per TCP connection.
const STAGE: usize = 64 * 1024;
/// Read/write rounds per pump call before other sockets get a turn.
const ROUNDS: usize = 16;
/// Datagrams per direction per pump call.
const DATAGRAMS: usize = 64;

pub fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error()
        .unwrap_or_else(|| BsdErrno::from_kind(e.kind()).code())
}

/// One direction's bytes in transit. The buffer is allocated at the
/// first use, so idle and never-used sockets cost no staging memory.
pub struct Stage {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Stage {
    fn new() -> Stage {
        Stage {
            buf: Vec::new(),
            start: 0,
            end: 0,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
    /// Room to fill; only called when empty.
    fn space(&mut self) -> &mut [u8] {
        if self.buf.is_empty() {
            self.buf = vec![0u8; STAGE];
        }
        &mut self.buf[self.end..]
    }
    fn filled(&mut self, n: usize) {
        self.end += n;
    }
}

/// TCP options a client set, applied when the connection exists.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpOpts {
    pub nodelay: bool,
    pub keepalive: bool,
    pub keep_idle: u32,
    pub keep_intvl: u32,
    pub keep_cnt: u32,
    /// SO_LINGER {on, 0}: the client's close aborts (RST).
    pub linger_abort: bool,
}

impl TcpOpts {
    /// Linux's defaults: 7200 s idle, 75 s interval, 9 probes.
    pub fn keepalive(&self) -> Option<(Duration, Duration, u32)> {
        self.keepalive.then(|| {
            let or = |v: u32, d: u32| Duration::from_secs(u64::from(if v == 0 { d } else { v }));
            (
                or(self.keep_idle, 7200),
                or(self.keep_intvl, 75),
                if self.keep_cnt == 0 { 9 } else { self.keep_cnt },
            )
        })
    }
}

pub enum Kind {
    /// A TCP socket neither connected nor listening yet.
    Fresh {
        bound: Option<SocketAddrV4>,
        opts: TcpOpts,
    },
    Conn(Box<Conn>),
    Listener(Listener),
    Udp(Udp),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    Open,
    /// The connect failed; the errno is reported once by SO_ERROR.
    Failed(Option<i32>),
}

pub struct Conn {
    pub h: TcpHandle,
    pub phase: Phase,
    pub opts: TcpOpts,
    to_tcp: Stage,
    to_fd: Stage,
    /// The client shut its write side (or closed).
    fd_eof: bool,
    fin_sent: bool,
    /// TCP delivered end-of-file.
    tcp_eof: bool,
    fd_shut: bool,
    /// The client's descriptor is closed everywhere (EPOLLHUP).
    pub client_gone: bool,
    /// Control connections waiting for the connect's outcome: (client, op).
    pub waiters: Vec<(u64, u8)>,
}

impl Conn {
    pub fn new(h: TcpHandle, phase: Phase, opts: TcpOpts) -> Conn {
        Conn {
            h,
            phase,
            opts,
            to_tcp: Stage::new(),
            to_fd: Stage::new(),
            fd_eof: false,
            fin_sent: false,
            tcp_eof: false,
            fd_shut: false,
            client_gone: false,
            waiters: Vec::new(),
        }
    }
}

pub struct Listener {
    pub h: TcpHandle,
    /// Connections handed over but not acknowledged by an accept.
    pub outstanding: usize,
    pub limit: usize,
    /// A connection whose hand-over met a full descriptor, with its
    /// record: retried first.
    pub held: Option<(OwnedFd, [u8; proto::ACCEPT_REC])>,
}

pub struct Udp {
    pub h: Option<UdpHandle>,
    /// A datagram (header included) the descriptor had no room for.
    held: Option<Vec<u8>>,
}

impl Udp {
    pub fn new() -> Udp {
        Udp {
            h: None,
            held: None,
        }
    }
}

/// What a pump found.
#[derive(Debug, Default)]
pub struct Pump {
    /// More to do: pump again soon.
    pub again: bool,
    /// The connect finished: 0 or the errno.
    pub resolved: Option<i32>,
    /// The socket is finished.
    pub finish: Option<Finish>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Close the TCP connection as a process exit would (FIN, or RST if
    /// data was left unread: the stack's close decides).
    Close,
    /// RST now.
    Abort,
    /// The connection ended with this error (already closed in the
    /// stack); the client learns it at end-of-file.
    Failed(i32),
}

/// Checks a connecting socket; true once it is open.
fn settle_connect(net: &Net, c: &mut Conn, p: &mut Pump) -> bool {
    if c.phase != Phase::Connecting {
        return c.phase == Phase::Open;
    }
    let h = c.h;
    let opts = c.opts;
    let outcome = net.shared.with_core(|core| {
        let tcp = &mut core.stack.tcp;
        if let Some(e) = tcp.take_error(h) {
            return Some(errno_of(&e));
        }
        match tcp.state(h) {
            TcpState::SynSent | TcpState::SynReceived => None,
            TcpState::Closed => Some(BsdErrno::ECONNREFUSED.code()),
            _ => {
                let _ = tcp.set_nodelay(h, opts.nodelay);
                if let Some(ka) = opts.keepalive() {
                    let _ = tcp.set_keepalive(h, Some(ka));
                }
                Some(0)
            }
        }
    });
    match outcome {
        None => false,
        Some(0) => {
            c.phase = Phase::Open;
            p.resolved = Some(0);
            true
        }
        Some(e) => {
            c.phase = Phase::Failed(Some(e));
            p.resolved = Some(e);
            false
        }
    }
}

/// Moves what can move between the client's descriptor and the TCP
/// connection.
pub fn pump_conn(net: &Net, fd: &OwnedFd, c: &mut Conn) -> Pump {
    let mut p = Pump::default();
    if !settle_connect(net, c, &mut p) {
        if c.client_gone {
            p.finish = Some(Finish::Close);
        }
        return p;
    }
    for round in 0..ROUNDS {
        let mut progress = false;
        let step = fill_from_fd(fd, c, &mut progress)
            .and_then(|()| exchange_tcp(net, c, &mut progress))
            .and_then(|()| flush_to_fd(fd, c, &mut progress));
        if let Err(f) = step {
            p.finish = Some(f);
            return p;
        }
        if !progress {
            break;
        }
        if round + 1 == ROUNDS {
            p.again = true;
        }
    }
    if c.client_gone && c.fd_eof && c.to_tcp.is_empty() {
        p.finish = Some(if !c.to_fd.is_empty() || c.opts.linger_abort {
            Finish::Abort
        } else {
            Finish::Close
        });
    }
    p
}

/// Client bytes into the fd->TCP stage, once it is empty.
fn fill_from_fd(fd: &OwnedFd, c: &mut Conn, progress: &mut bool) -> Result<(), Finish> {
    if !c.to_tcp.is_empty() || c.fd_eof {
        return Ok(());
    }
    match fdio::read(fd.as_fd(), c.to_tcp.space()) {
        Ok(0) => c.fd_eof = true,
        Ok(n) => {
            c.to_tcp.filled(n);
            *progress = true;
        }
        Err(Errno::EAGAIN) => {}
        // The client closed with data we sent left unread (unix(7)
        // sockets report that as ECONNRESET): as Linux does at process
        // exit, RST.
        Err(_) => return Err(Finish::Abort),
    }
    Ok(())
}

/// Under the lock: the stage into TCP's send buffer (then the FIN once
/// the client shut its side), TCP's received bytes into the other stage.
fn exchange_tcp(net: &Net, c: &mut Conn, progress: &mut bool) -> Result<(), Finish> {
    let h = c.h;
    let mut failed = None;
    net.shared.with_core(|core| {
        let tcp = &mut core.stack.tcp;
        if !c.to_tcp.is_empty() {
            match tcp.send(h, c.to_tcp.data()) {
                Ok(n) => {
                    c.to_tcp.consume(n);
                    *progress = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => failed = Some(errno_of(&e)),
            }
        }
        if c.fd_eof && c.to_tcp.is_empty() && !c.fin_sent && failed.is_none() {
            c.fin_sent = true;
            let _ = tcp.shutdown(h, Shutdown::Write);
        }
        if c.to_fd.is_empty() && !c.tcp_eof && failed.is_none() {
            match tcp.recv(h, c.to_fd.space()) {
                Ok(0) => c.tcp_eof = true,
                Ok(n) => {
                    c.to_fd.filled(n);
                    *progress = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => failed = Some(errno_of(&e)),
            }
        }
        if failed.is_none()
            && let Some(e) = tcp.take_error(h)
        {
            failed = Some(errno_of(&e));
        }
    });
    // EPIPE from send means the stack already closed after an error it
    // reported; either way the connection is over.
    failed.map_or(Ok(()), |e| Err(Finish::Failed(e)))
}

/// The TCP->fd stage into the client's descriptor; end-of-file after
/// TCP's FIN once it is empty.
fn flush_to_fd(fd: &OwnedFd, c: &mut Conn, progress: &mut bool) -> Result<(), Finish> {
    if !c.to_fd.is_empty() {
        match fdio::write(fd.as_fd(), c.to_fd.data()) {
            Ok(n) => {
                c.to_fd.consume(n);
                *progress = true;
            }
            Err(Errno::EAGAIN) => {}
            // The client closed: data arriving for a closed socket gets
            // RST (as Linux answers data for an orphan).
            Err(_) => return Err(Finish::Abort),
        }
    }
    if c.tcp_eof && c.to_fd.is_empty() && !c.fd_shut {
        c.fd_shut = true;
        let _ = nix::sys::socket::shutdown(
            std::os::fd::AsRawFd::as_raw_fd(fd),
            nix::sys::socket::Shutdown::Write,
        );
    }
    Ok(())
}

/// Moves datagrams both ways. `buf` is scratch space for one datagram and
/// its header. Returns whether more may be waiting, or that the client's
/// descriptor is gone.
pub fn pump_udp(net: &Net, fd: &OwnedFd, u: &mut Udp, buf: &mut [u8]) -> Result<bool, ()> {
    // The server binds every UDP socket when it creates it.
    let Some(h) = u.h else { return Ok(false) };
    let more_in = udp_from_fd(net, fd, h, buf)?;
    let more_out = udp_to_fd(net, fd, u, h, buf)?;
    Ok(more_in || more_out)
}

/// The client's datagrams (header: destination) into the stack.
fn udp_from_fd(net: &Net, fd: &OwnedFd, h: UdpHandle, buf: &mut [u8]) -> Result<bool, ()> {
    for _ in 0..DATAGRAMS {
        let n = match fdio::read(fd.as_fd(), buf) {
            // The client shut its side (a close shows as HUP).
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(Errno::EAGAIN) => return Ok(false),
            Err(_) => return Err(()),
        };
        if n < UDP_HDR {
            continue;
        }
        let mut hdr = [0u8; UDP_HDR];
        hdr.copy_from_slice(&buf[..UDP_HDR]);
        let (dst, _) = proto::parse_udp_header(&hdr);
        let payload = &buf[UDP_HDR..n];
        net.shared.with_core(|core| {
            let now = core.now();
            let stack = &mut core.stack;
            let cidr = stack.iface.config.cidr;
            let is_bcast = |ip: std::net::Ipv4Addr| {
                ip == std::net::Ipv4Addr::BROADCAST || Some(ip) == cidr.broadcast()
            };
            if let Err(e) = stack
                .udp
                .send_to(now, h, payload, dst, &mut stack.iface, is_bcast)
            {
                log::debug!("daemon: UDP send to {dst:?} failed: {e}");
            }
        });
    }
    Ok(true)
}

/// The stack's datagrams (header: source, or an errno) to the client; one
/// the descriptor has no room for is held for the next turn.
fn udp_to_fd(
    net: &Net,
    fd: &OwnedFd,
    u: &mut Udp,
    h: UdpHandle,
    buf: &mut [u8],
) -> Result<bool, ()> {
    for _ in 0..DATAGRAMS {
        if let Some(held) = &u.held {
            match fdio::send_parts(fd.as_fd(), &[held], None) {
                Ok(_) => u.held = None,
                Err(Errno::EAGAIN) | Err(Errno::ENOBUFS) => return Ok(false),
                Err(_) => return Err(()),
            }
        }
        let payload = &mut buf[UDP_HDR..];
        let got = net.shared.with_core(|core| {
            let udp = &mut core.stack.udp;
            if let Ok(Some(e)) = udp.take_error(h) {
                return Some((proto::udp_header(None, errno_of(&e) as u16), 0));
            }
            match udp.recv_from(h, payload, false) {
                Ok((n, from)) => Some((proto::udp_header(Some(from), 0), n)),
                Err(_) => None,
            }
        });
        let Some((hdr, n)) = got else {
            return Ok(false);
        };
        buf[..UDP_HDR].copy_from_slice(&hdr);
        match fdio::send_parts(fd.as_fd(), &[&buf[..UDP_HDR + n]], None) {
            Ok(_) => {}
            Err(Errno::EAGAIN) | Err(Errno::ENOBUFS) => {
                u.held = Some(buf[..UDP_HDR + n].to_vec());
                return Ok(false);
            }
            Err(_) => return Err(()),
        }
    }
    Ok(true)
}
