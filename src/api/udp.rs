//! `UdpSocket`, mirroring `std::net::UdpSocket`.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use super::{Net, SharedOptions, check_timeout, opts, set_opts, to_v4};
use crate::runtime::WaitFor;
use crate::stack::socket::SocketId;
use crate::stack::udp::{UdpHandle, UdpLayer};

struct Inner {
    net: Net,
    handle: UdpHandle,
    options: SharedOptions,
}

impl Inner {
    /// Runs `f` on the UDP layer with this socket's handle.
    fn udp<T>(&self, f: impl FnOnce(&mut UdpLayer, UdpHandle) -> T) -> T {
        f(&mut self.net.shared.lock().stack.udp, self.handle)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let mut core = self.net.shared.lock();
        core.stack.udp.close(self.handle);
        core.forget(SocketId::Udp(self.handle.0));
    }
}

/// A UDP socket on the stack. Dropping the last clone closes it.
///
/// ```
/// # use std::sync::Arc;
/// # use tapstack::{device::pair, runtime::link::LinkOptions};
/// # use tapstack::{EthernetAddress, Ipv4Cidr, Net, StackConfig};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let (a, b) = pair::link()?; // two stacks on an in-memory link: no root
/// # let cfg = |ip: [u8; 4], mac| StackConfig::new(EthernetAddress([2, 0, 0, 0, 0, mac]), Ipv4Cidr::new(ip.into(), 24));
/// # let client = Net::start(Arc::new(a), cfg([10, 0, 0, 1], 1), &LinkOptions::default())?;
/// # let server = Net::start(Arc::new(b), cfg([10, 0, 0, 2], 2), &LinkOptions::default())?;
/// use tapstack::UdpSocket;
///
/// let echo = UdpSocket::bind(&server, "0.0.0.0:7")?;
/// let sock = UdpSocket::bind(&client, "0.0.0.0:0")?;
/// for s in [&echo, &sock] {
///     s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
/// }
/// sock.send_to(b"hi", "10.0.0.2:7")?;
/// let mut buf = [0u8; 1500];
/// let (n, from) = echo.recv_from(&mut buf)?;
/// assert_eq!(&buf[..n], b"hi");
/// assert_eq!(from.port(), sock.local_addr()?.port());
/// echo.send_to(&buf[..n], from)?;
/// assert_eq!(sock.recv(&mut buf)?, 2);
/// # client.shutdown();
/// # server.shutdown();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct UdpSocket {
    inner: Arc<Inner>,
}

impl UdpSocket {
    /// Binds to `addr` (`0.0.0.0:0` for any address and an ephemeral port).
    pub fn bind(net: &Net, addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        let local = to_v4(addr)?;
        let handle = net.shared.lock().stack.udp.bind(local)?;
        Ok(UdpSocket {
            inner: Arc::new(Inner {
                net: net.clone(),
                handle,
                options: SharedOptions::default(),
            }),
        })
    }

    pub(crate) fn id(&self) -> SocketId {
        SocketId::Udp(self.inner.handle.0)
    }

    /// Another handle on the same socket.
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        Ok(self.clone())
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.udp(|u, h| u.local_addr(h)).map(SocketAddr::V4)
    }

    /// The connected peer; `NotConnected` if there is none.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.udp(|u, h| u.peer_addr(h)).map(SocketAddr::V4)
    }

    /// Sets the default destination for `send` and filters what `recv`
    /// gets to datagrams from that peer.
    pub fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        let remote = to_v4(addr)?;
        self.inner.udp(|u, h| u.connect(h, remote))
    }

    fn send_inner(&self, buf: &[u8], dst: Option<SocketAddrV4>) -> io::Result<usize> {
        let h = self.inner.handle;
        self.inner.net.shared.with_core(|core| {
            let now = core.now();
            let stack = &mut core.stack;
            let cidr = stack.iface.config.cidr;
            let is_bcast = |ip: std::net::Ipv4Addr| {
                ip == std::net::Ipv4Addr::BROADCAST || Some(ip) == cidr.broadcast()
            };
            stack
                .udp
                .send_to(now, h, buf, dst, &mut stack.iface, is_bcast)
        })
    }

    /// Sends one datagram to `addr`.
    pub fn send_to(&self, buf: &[u8], addr: impl ToSocketAddrs) -> io::Result<usize> {
        self.send_inner(buf, Some(to_v4(addr)?))
    }

    /// Sends one datagram to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.send_inner(buf, None)
    }

    fn recv_inner(&self, buf: &mut [u8], peek: bool) -> io::Result<(usize, SocketAddr)> {
        self.recv_with(buf, peek, false)
    }

    /// One receive; `dontwait` makes this call non-blocking whatever the
    /// socket's mode (the BSD facade's `MSG_DONTWAIT`).
    pub(crate) fn recv_with(
        &self,
        buf: &mut [u8],
        peek: bool,
        dontwait: bool,
    ) -> io::Result<(usize, SocketAddr)> {
        let o = opts(&self.inner.options);
        let h = self.inner.handle;
        self.inner
            .net
            .shared
            .block_on(
                self.id(),
                WaitFor::Readable,
                !o.nonblocking && !dontwait,
                o.read_timeout,
                io::ErrorKind::WouldBlock,
                |core| core.stack.udp.recv_from(h, buf, peek),
            )
            .map(|(n, from)| (n, SocketAddr::V4(from)))
    }

    /// Receives one datagram (truncated to `buf`) and its sender.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.recv_inner(buf, false)
    }

    /// As `recv_from`, leaving the datagram queued.
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.recv_inner(buf, true)
    }

    /// Receives one datagram from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_inner(buf, false).map(|(n, _)| n)
    }

    /// As `recv`, leaving the datagram queued.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_inner(buf, true).map(|(n, _)| n)
    }

    super::timeout_methods!(inner.options);

    /// SO_BROADCAST: allow sending to the subnet's broadcast address.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.inner.udp(|u, h| u.set_broadcast(h, on))
    }

    /// Whether SO_BROADCAST is on.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.inner.udp(|u, h| u.broadcast(h))
    }

    /// The pending error (e.g. an ICMP port unreachable), clearing it.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.udp(|u, h| u.take_error(h))
    }
}

impl std::fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSocket")
            .field("local", &self.local_addr().ok())
            .finish()
    }
}
