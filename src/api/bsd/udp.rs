//! SOCK_DGRAM descriptors on top of `UdpSocket`: a descriptor is bound
//! lazily (by `bind`, `connect` or the first `sendto`), so the options set
//! before that are kept here and applied when the socket appears.

use std::net::SocketAddrV4;
use std::time::Duration;

use super::{Errno, SockOpt, any_port, check_local, timeout_opt, v4};
use crate::api::{Net, UdpSocket};

/// Options set on a descriptor, kept so they survive the lazy bind.
#[derive(Copy, Clone, Debug, Default)]
struct UdpOpts {
    rcvtimeo: Option<Duration>,
    sndtimeo: Option<Duration>,
    nonblocking: bool,
    broadcast: bool,
}

pub(super) struct UdpEntry {
    pub(super) net: Net,
    /// None until bound (explicitly or by connect/sendto).
    pub(super) sock: Option<UdpSocket>,
    opts: UdpOpts,
}

fn apply(s: &UdpSocket, o: &UdpOpts) -> Result<(), Errno> {
    s.set_read_timeout(o.rcvtimeo)?;
    s.set_write_timeout(o.sndtimeo)?;
    s.set_nonblocking(o.nonblocking)?;
    s.set_broadcast(o.broadcast)?;
    Ok(())
}

impl UdpEntry {
    pub(super) fn new(net: &Net) -> UdpEntry {
        UdpEntry {
            net: net.clone(),
            sock: None,
            opts: UdpOpts::default(),
        }
    }

    /// Binds the socket if it is not yet, to `local` (port 0 = ephemeral),
    /// applying the options set so far.
    pub(super) fn ensure_bound(&mut self, local: SocketAddrV4) -> Result<&UdpSocket, Errno> {
        if self.sock.is_none() {
            check_local(&self.net, local)?;
            let s = UdpSocket::bind(&self.net, local)?;
            apply(&s, &self.opts)?;
            self.sock = Some(s);
        }
        Ok(self.sock.as_ref().expect("bound above"))
    }

    /// A socket that is already bound fails with EINVAL, as on Linux.
    pub(super) fn bind(&mut self, addr: SocketAddrV4) -> Result<(), Errno> {
        if self.sock.is_some() {
            return Err(Errno::EINVAL);
        }
        self.ensure_bound(addr).map(|_| ())
    }

    pub(super) fn connect(&mut self, addr: SocketAddrV4) -> Result<(), Errno> {
        Ok(self.ensure_bound(any_port())?.connect(addr)?)
    }

    /// The socket `send` uses: it must have a peer.
    pub(super) fn connected(&self) -> Result<UdpSocket, Errno> {
        match &self.sock {
            Some(s) if s.peer_addr().is_ok() => Ok(s.clone()),
            _ => Err(Errno::EDESTADDRREQ),
        }
    }

    /// The socket to receive on, or the error for an unbound one.
    pub(super) fn receiver(&self, dontwait: bool) -> Result<UdpSocket, Errno> {
        match &self.sock {
            Some(s) => Ok(s.clone()),
            None if self.opts.nonblocking || dontwait => Err(Errno::EAGAIN),
            // Nothing can ever arrive: see the module comment of `bsd`.
            None => Err(Errno::EINVAL),
        }
    }

    /// Linux accepts the socket-level TCP options (SO_LINGER, SO_KEEPALIVE)
    /// on a datagram socket, where they do nothing, and refuses the
    /// IPPROTO_TCP ones with ENOPROTOOPT.
    pub(super) fn setsockopt(&mut self, opt: SockOpt) -> Result<(), Errno> {
        match opt {
            SockOpt::RcvTimeo(d) => self.opts.rcvtimeo = timeout_opt(d),
            SockOpt::SndTimeo(d) => self.opts.sndtimeo = timeout_opt(d),
            SockOpt::NonBlocking(on) => self.opts.nonblocking = on,
            SockOpt::Broadcast(on) => self.opts.broadcast = on,
            SockOpt::Linger(_) | SockOpt::KeepAlive(_) => {}
            SockOpt::NoDelay(_)
            | SockOpt::KeepIdle(_)
            | SockOpt::KeepIntvl(_)
            | SockOpt::KeepCnt(_) => return Err(Errno::ENOPROTOOPT),
        }
        if let Some(s) = &self.sock {
            apply(s, &self.opts)?;
        }
        Ok(())
    }

    /// `0.0.0.0:0` while unbound; a connected socket bound to the wildcard
    /// reports the source address it uses, as Linux does.
    pub(super) fn sockname(&self) -> Result<SocketAddrV4, Errno> {
        match &self.sock {
            None => Ok(any_port()),
            Some(s) => {
                let local = v4(s.local_addr()?)?;
                if local.ip().is_unspecified() && s.peer_addr().is_ok() {
                    Ok(SocketAddrV4::new(self.net.addr(), local.port()))
                } else {
                    Ok(local)
                }
            }
        }
    }

    pub(super) fn peername(&self) -> Result<SocketAddrV4, Errno> {
        match &self.sock {
            None => Err(Errno::ENOTCONN),
            Some(s) => v4(s.peer_addr()?),
        }
    }
}
