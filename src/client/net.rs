//! The socket types of the client library.

use std::io::{self, IoSliceMut, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::sys::socket::{MsgFlags, recvmsg, send};

use super::{Api, stream_of};
use crate::api::to_v4;
use crate::daemon::proto::{self, UDP_HDR, op};

fn addr_of(m: &proto::Msg) -> io::Result<SocketAddr> {
    m.addr
        .map(SocketAddr::V4)
        .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
}

/// A TCP connection on the stack: a stream descriptor.
pub struct TcpStream {
    api: Api,
    s: UnixStream,
}

impl TcpStream {
    /// Opens a TCP connection to `addr` through the daemon; blocks until the
    /// handshake completes or fails (`ECONNREFUSED`, `ETIMEDOUT`, ...).
    pub fn connect(api: &Api, addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let dst = to_v4(addr)?;
        let s = stream_of(api.socket(proto::TCP)?);
        api.ask(op::CONNECT, &s, 0, Some(dst))?;
        Ok(TcpStream {
            api: api.clone(),
            s,
        })
    }

    /// The remote address of the connection.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        addr_of(&self.api.ask(op::GETPEERNAME, &self.s, 0, None)?)
    }

    /// The local address of the connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        addr_of(&self.api.ask(op::GETSOCKNAME, &self.s, 0, None)?)
    }

    /// `Shutdown::Write` sends a FIN once the queued bytes are out.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.s.shutdown(how)
    }

    /// Turns Nagle's algorithm (RFC 896) off (`true`) or on, like `TCP_NODELAY`.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        let req = proto::Msg {
            op: op::SETOPT,
            a: proto::opt::TCP_NODELAY,
            b: u32::from(on),
            ..proto::Msg::default()
        };
        self.api.call(req, Some(self.s.as_raw_fd())).map(|_| ())
    }

    /// Sets `O_NONBLOCK` on the local end of the socketpair, as on a kernel socket.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.s.set_nonblocking(on)
    }

    /// Read timeout on the local socketpair end (`None` = block forever).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.s.set_read_timeout(t)
    }

    /// Write timeout on the local socketpair end (`None` = block forever).
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.s.set_write_timeout(t)
    }

    /// The pending socket error (`SO_ERROR`), cleared by reading it.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        let m = self.api.ask(op::SO_ERROR, &self.s, 0, None)?;
        Ok((m.a != 0).then(|| io::Error::from_raw_os_error(m.a as i32)))
    }

    /// Another handle to the same connection (the descriptor is `dup`ed).
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        Ok(TcpStream {
            api: self.api.clone(),
            s: self.s.try_clone()?,
        })
    }

    /// End-of-file after a reset or timeout is that error, once.
    fn eof(&self) -> io::Result<usize> {
        match self.api.ask(op::EOF_CHECK, &self.s, 0, None) {
            Err(e) if e.raw_os_error().is_some() => Err(e),
            _ => Ok(0),
        }
    }

    fn read_inner(&self, buf: &mut [u8]) -> io::Result<usize> {
        match (&self.s).read(buf)? {
            0 if !buf.is_empty() => self.eof(),
            n => Ok(n),
        }
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_inner(buf)
    }
}

impl Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_inner(buf)
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&self.s).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&self.s).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A listening socket: a descriptor readable while connections wait.
pub struct TcpListener {
    api: Api,
    fd: OwnedFd,
}

impl TcpListener {
    /// Listens on `addr` with a backlog of 128 connections.
    pub fn bind(api: &Api, addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        TcpListener::bind_with_backlog(api, addr, 128)
    }

    /// Listens on `addr`; at most `backlog` established connections wait
    /// unaccepted before new SYNs are dropped.
    pub fn bind_with_backlog(
        api: &Api,
        addr: impl ToSocketAddrs,
        backlog: u32,
    ) -> io::Result<TcpListener> {
        let local = to_v4(addr)?;
        let s = api.socket(proto::TCP)?;
        api.ask(op::BIND, &s, 0, Some(local))?;
        let req = proto::Msg {
            op: op::LISTEN,
            a: backlog,
            ..proto::Msg::default()
        };
        let (_, fd) = api.call(req, Some(s.as_raw_fd()))?;
        let fd = fd.ok_or_else(|| io::Error::other("the daemon sent no listening descriptor"))?;
        Ok(TcpListener {
            api: api.clone(),
            fd,
        })
    }

    /// Waits for the next connection; returns it and the peer's address.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        loop {
            let mut rec = [0u8; proto::ACCEPT_REC];
            let got = loop {
                match crate::daemon::recv_blocking(self.fd.as_fd(), &mut rec) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    r => break r?,
                }
            };
            let Some(fd) = got.fd else {
                if got.len == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::NotConnected,
                        "the tapstack daemon closed the listener",
                    ));
                }
                continue;
            };
            if got.len != proto::ACCEPT_REC {
                continue;
            }
            // One byte back: the daemon counts unaccepted connections.
            let _ = send(
                self.fd.as_raw_fd(),
                &[proto::ACCEPT_ACK],
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            );
            let (peer, _) = proto::parse_accept_record(&rec);
            let s = TcpStream {
                api: self.api.clone(),
                s: stream_of(fd),
            };
            return Ok((s, SocketAddr::V4(peer)));
        }
    }

    /// The address the listener is bound to (with the real port if bound to 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        addr_of(&self.api.ask(op::GETSOCKNAME, &self.fd, 0, None)?)
    }

    /// Makes `accept` return `WouldBlock` instead of waiting (`on` = true).
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        crate::daemon::set_blocking_mode(&self.fd, on)
    }

    /// An endless iterator of `accept`ed streams (peer addresses dropped).
    pub fn incoming(&self) -> impl Iterator<Item = io::Result<TcpStream>> + '_ {
        std::iter::repeat_with(move || self.accept().map(|(s, _)| s))
    }
}

/// A UDP socket: a seqpacket descriptor whose packets carry an address
/// header.
pub struct UdpSocket {
    api: Api,
    fd: OwnedFd,
}

impl UdpSocket {
    /// Opens a UDP socket bound to `addr` (port 0 = an ephemeral port).
    pub fn bind(api: &Api, addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        let local = to_v4(addr)?;
        let fd = api.socket(proto::UDP)?;
        api.ask(op::BIND, &fd, 0, Some(local))?;
        Ok(UdpSocket {
            api: api.clone(),
            fd,
        })
    }

    /// Sets the default destination for `send`/`recv` and filters received
    /// datagrams to that peer; an all-zero `addr` dissolves the association.
    pub fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        let dst = to_v4(addr)?;
        self.api
            .ask(op::CONNECT, &self.fd, 0, Some(dst))
            .map(|_| ())
    }

    fn send_inner(&self, buf: &[u8], dst: Option<SocketAddrV4>) -> io::Result<usize> {
        let hdr = proto::udp_header(dst, 0);
        let iov = [io::IoSlice::new(&hdr), io::IoSlice::new(buf)];
        let n = nix::sys::socket::sendmsg::<()>(
            self.fd.as_raw_fd(),
            &iov,
            &[],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        Ok(n.saturating_sub(UDP_HDR))
    }

    /// Sends one datagram of `buf` to `addr`; returns the bytes sent.
    pub fn send_to(&self, buf: &[u8], addr: impl ToSocketAddrs) -> io::Result<usize> {
        self.send_inner(buf, Some(to_v4(addr)?))
    }

    /// To the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.send_inner(buf, None)
    }

    /// Receives one datagram into `buf` (the excess of a longer one is
    /// dropped, as on Linux); returns its length and sender.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let mut hdr = [0u8; UDP_HDR];
            let mut iov = [IoSliceMut::new(&mut hdr), IoSliceMut::new(buf)];
            let msg = recvmsg::<()>(self.fd.as_raw_fd(), &mut iov, None, MsgFlags::empty())?;
            let n = msg.bytes;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the tapstack daemon closed the socket",
                ));
            }
            if n < UDP_HDR {
                continue;
            }
            let (from, errno) = proto::parse_udp_header(&hdr);
            if errno != 0 {
                return Err(io::Error::from_raw_os_error(i32::from(errno)));
            }
            let from = from.unwrap_or(SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0));
            return Ok((n - UDP_HDR, SocketAddr::V4(from)));
        }
    }

    /// Receives one datagram from the connected peer; returns its length.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_from(buf).map(|(n, _)| n)
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        addr_of(&self.api.ask(op::GETSOCKNAME, &self.fd, 0, None)?)
    }

    /// The connected peer (`ENOTCONN` if not connected).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        addr_of(&self.api.ask(op::GETPEERNAME, &self.fd, 0, None)?)
    }

    /// Makes receives return `WouldBlock` instead of waiting (`on` = true).
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        crate::daemon::set_blocking_mode(&self.fd, on)
    }

    /// Receive timeout (`None` = block forever); a timed-out receive fails
    /// with `WouldBlock`, as `SO_RCVTIMEO` does.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        let tv = nix::sys::time::TimeVal::from(libc_timeval(t));
        nix::sys::socket::setsockopt(&self.fd, nix::sys::socket::sockopt::ReceiveTimeout, &tv)?;
        Ok(())
    }
}

fn libc_timeval(t: Option<Duration>) -> nix::libc::timeval {
    let t = t.unwrap_or(Duration::ZERO);
    nix::libc::timeval {
        tv_sec: t.as_secs() as nix::libc::time_t,
        tv_usec: t.subsec_micros() as nix::libc::suseconds_t,
    }
}

macro_rules! fd_traits {
    ($t:ty, $($f:ident).+) => {
        impl AsRawFd for $t {
            fn as_raw_fd(&self) -> RawFd {
                self.$($f).+.as_raw_fd()
            }
        }
        impl AsFd for $t {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.$($f).+.as_fd()
            }
        }
    };
}

fd_traits!(TcpStream, s);
fd_traits!(TcpListener, fd);
fd_traits!(UdpSocket, fd);
