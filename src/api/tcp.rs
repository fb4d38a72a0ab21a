//! `TcpListener` and `TcpStream`, mirroring `std::net`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Net, SharedOptions, check_timeout, opts, set_opts, to_v4};
use crate::runtime::{Core, WaitFor};
use crate::stack::socket::SocketId;
use crate::stack::tcp::cc::CcAlgorithm;
use crate::stack::tcp::{TcpHandle, TcpInfo, TcpLayer, TcpState};

/// Listen backlog when none is given (Linux's SOMAXCONN is 4096; 128 was
/// the classic value and is plenty for the demos).
pub const DEFAULT_BACKLOG: usize = 128;

struct Inner {
    net: Net,
    handle: TcpHandle,
    options: SharedOptions,
    /// SO_LINGER {on, 0}: drop sends RST instead of FIN.
    abort_on_drop: AtomicBool,
}

impl Inner {
    fn new(net: &Net, handle: TcpHandle) -> Arc<Inner> {
        Arc::new(Inner {
            net: net.clone(),
            handle,
            options: SharedOptions::default(),
            abort_on_drop: AtomicBool::new(false),
        })
    }

    fn id(&self) -> SocketId {
        SocketId::Tcp(self.handle.0)
    }

    /// Runs `f` on the TCP layer with this socket's handle.
    fn tcp<T>(&self, f: impl FnOnce(&mut TcpLayer, TcpHandle) -> T) -> T {
        f(&mut self.net.shared.lock().stack.tcp, self.handle)
    }

    /// A blocking (unless non-blocking mode) operation on this socket.
    fn block<T>(
        &self,
        wait: WaitFor,
        timeout: Option<Duration>,
        op: impl FnMut(&mut Core) -> io::Result<T>,
    ) -> io::Result<T> {
        self.block_with(wait, false, timeout, op)
    }

    /// As `block`; `dontwait` makes this one call non-blocking whatever
    /// the socket's mode (the BSD facade's `MSG_DONTWAIT`).
    fn block_with<T>(
        &self,
        wait: WaitFor,
        dontwait: bool,
        timeout: Option<Duration>,
        op: impl FnMut(&mut Core) -> io::Result<T>,
    ) -> io::Result<T> {
        let o = opts(&self.options);
        self.net.shared.block_on(
            self.id(),
            wait,
            !o.nonblocking && !dontwait,
            timeout,
            io::ErrorKind::WouldBlock,
            op,
        )
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let abort = self.abort_on_drop.load(Ordering::Relaxed);
        self.net.shared.with_core(|core| {
            if abort {
                core.stack.tcp.abort(self.handle);
            } else {
                core.stack.tcp.close(self.handle);
            }
            core.forget(SocketId::Tcp(self.handle.0));
        });
    }
}

/// A listening socket. It stays listening while connections are accepted;
/// dropping it resets connections not yet accepted.
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
/// use std::io::{Read, Write};
/// use tapstack::{TcpListener, TcpStream};
///
/// let listener = TcpListener::bind(&server, "0.0.0.0:7")?;
/// let mut conn = TcpStream::connect(&client, "10.0.0.2:7")?;
/// let (mut accepted, peer) = listener.accept()?;
/// assert_eq!(peer, conn.local_addr()?);
/// conn.write_all(b"ping")?;
/// let mut buf = [0u8; 4];
/// accepted.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
/// accepted.read_exact(&mut buf)?;
/// assert_eq!(&buf, b"ping");
/// # client.shutdown();
/// # server.shutdown();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TcpListener {
    inner: Arc<Inner>,
}

impl TcpListener {
    /// Listens on `addr` (`0.0.0.0` = any; port 0 = ephemeral), with
    /// Linux's default backlog.
    pub fn bind(net: &Net, addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        TcpListener::bind_with_backlog(net, addr, DEFAULT_BACKLOG)
    }

    /// As `bind`, queueing at most `backlog` connections not yet accepted.
    pub fn bind_with_backlog(
        net: &Net,
        addr: impl ToSocketAddrs,
        backlog: usize,
    ) -> io::Result<TcpListener> {
        let local = to_v4(addr)?;
        let handle = net.shared.lock().stack.tcp.listen(local, backlog.max(1))?;
        Ok(TcpListener {
            inner: Inner::new(net, handle),
        })
    }

    /// Waits for the next connection (per the blocking mode) and its peer.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        self.accept_with(None)
    }

    /// `accept` that gives up after `timeout` with `WouldBlock` (the BSD
    /// facade: Linux applies SO_RCVTIMEO to accept, see socket(7)).
    pub(crate) fn accept_with(
        &self,
        timeout: Option<Duration>,
    ) -> io::Result<(TcpStream, SocketAddr)> {
        let listener = self.inner.handle;
        let (h, peer) = self.inner.block(WaitFor::Readable, timeout, |core| {
            core.stack.tcp.accept(listener)
        })?;
        Ok((
            TcpStream {
                inner: Inner::new(&self.inner.net, h),
            },
            SocketAddr::V4(peer),
        ))
    }

    /// Checks that nothing listens on `local` and resolves port 0 to a
    /// free ephemeral port, without keeping anything. For the BSD
    /// facade's `bind`: Linux claims the port at bind time, the stack only
    /// when it listens or connects. (A listener opened and closed inside
    /// one lock of the stack: no segment can reach it.)
    pub(crate) fn probe(net: &Net, local: SocketAddrV4) -> io::Result<SocketAddrV4> {
        net.shared.with_core(|core| {
            let tcp = &mut core.stack.tcp;
            let h = tcp.listen(local, 1)?;
            let addr = tcp.local_addr(h);
            tcp.close(h);
            addr
        })
    }

    /// Accepts connections for ever (as `std::net::TcpListener::incoming`).
    pub fn incoming(&self) -> impl Iterator<Item = io::Result<TcpStream>> + '_ {
        std::iter::repeat_with(move || self.accept().map(|(s, _)| s))
    }

    /// The address listened on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.tcp(|t, h| t.local_addr(h)).map(SocketAddr::V4)
    }

    /// Non-blocking: `accept` fails with `WouldBlock` when none is queued.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        set_opts(&self.inner.options, |o| o.nonblocking = on);
        Ok(())
    }

    /// Another handle on the same listener.
    pub fn try_clone(&self) -> io::Result<TcpListener> {
        Ok(self.clone())
    }

    /// The pending error, if any, cleared by this call.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        Ok(self.inner.tcp(|t, h| t.take_error(h)))
    }

    pub(crate) fn id(&self) -> SocketId {
        self.inner.id()
    }
}

/// A TCP connection. Clones (`try_clone`) share the connection; dropping
/// the last one closes it: FIN, or RST if received data was left unread.
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
/// use std::io::{Read, Write};
/// use std::net::Shutdown;
/// use tapstack::{TcpListener, TcpStream};
///
/// let listener = TcpListener::bind(&server, "0.0.0.0:9000")?;
/// let mut conn = TcpStream::connect(&client, "10.0.0.2:9000")?;
/// conn.write_all(b"hello")?;
/// conn.shutdown(Shutdown::Write)?; // FIN: the server reads end of stream
/// let (mut accepted, _) = listener.accept()?;
/// let mut got = String::new();
/// accepted.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
/// accepted.read_to_string(&mut got)?;
/// assert_eq!(got, "hello");
/// # client.shutdown();
/// # server.shutdown();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TcpStream {
    inner: Arc<Inner>,
}

impl TcpStream {
    /// Opens a connection to `addr` and waits for the handshake.
    pub fn connect(net: &Net, addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        TcpStream::connect_inner(net, addr, None)
    }

    /// As `connect`, giving up after `timeout` (`TimedOut`).
    pub fn connect_timeout(
        net: &Net,
        addr: &SocketAddr,
        timeout: Duration,
    ) -> io::Result<TcpStream> {
        check_timeout(Some(timeout))?;
        TcpStream::connect_inner(net, addr, Some(timeout))
    }

    fn connect_inner(
        net: &Net,
        addr: impl ToSocketAddrs,
        timeout: Option<Duration>,
    ) -> io::Result<TcpStream> {
        let stream = TcpStream::connect_start(net, None, to_v4(addr)?)?;
        stream.wait_connected(true, timeout, io::ErrorKind::TimedOut)?;
        Ok(stream)
    }

    /// Sends the SYN (from `local`, or the stack's address and an
    /// ephemeral port) and returns at once, in SYN-SENT.
    pub(crate) fn connect_start(
        net: &Net,
        local: Option<SocketAddrV4>,
        remote: SocketAddrV4,
    ) -> io::Result<TcpStream> {
        let handle = net.shared.with_core(|core| {
            let now = core.now();
            core.stack.tcp.connect(now, local, remote)
        })?;
        Ok(TcpStream {
            inner: Inner::new(net, handle),
        })
    }

    /// Waits for the handshake (SYN-SENT -> ESTABLISHED) or its failure.
    /// Not `blocking`: checks once, `WouldBlock` while in progress; after
    /// `timeout`, fails with `timeout_kind`.
    pub(crate) fn wait_connected(
        &self,
        blocking: bool,
        timeout: Option<Duration>,
        timeout_kind: io::ErrorKind,
    ) -> io::Result<()> {
        let handle = self.inner.handle;
        self.inner.net.shared.block_on(
            self.inner.id(),
            WaitFor::Writable,
            blocking,
            timeout,
            timeout_kind,
            |core| {
                let tcp = &mut core.stack.tcp;
                if let Some(e) = tcp.take_error(handle) {
                    return Err(e);
                }
                match tcp.state(handle) {
                    TcpState::SynSent | TcpState::SynReceived => {
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                    TcpState::Closed => Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        "connection refused",
                    )),
                    _ => Ok(()),
                }
            },
        )
    }

    pub(crate) fn id(&self) -> SocketId {
        self.inner.id()
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.tcp(|t, h| t.peer_addr(h)).map(SocketAddr::V4)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.tcp(|t, h| t.local_addr(h)).map(SocketAddr::V4)
    }

    /// Shuts down reading, writing (FIN once queued data is out), or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let h = self.inner.handle;
        self.inner
            .net
            .shared
            .with_core(|core| core.stack.tcp.shutdown(h, how))
    }

    /// Another handle on the same connection.
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        Ok(self.clone())
    }

    /// TCP_NODELAY: send small segments at once instead of waiting (Nagle).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        let h = self.inner.handle;
        self.inner
            .net
            .shared
            .with_core(|core| core.stack.tcp.set_nodelay(h, on))
    }

    /// Whether TCP_NODELAY is on.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.inner.tcp(|t, h| t.nodelay(h))
    }

    /// Keepalive probes after `idle`, every `interval`, giving up after
    /// `probes` unanswered; `None` turns keepalive off (the default).
    pub fn set_keepalive(&self, ka: Option<(Duration, Duration, u32)>) -> io::Result<()> {
        // Through `with_core`: the new deadline must reach the stack
        // thread's timer.
        let h = self.inner.handle;
        self.inner
            .net
            .shared
            .with_core(|core| core.stack.tcp.set_keepalive(h, ka))
    }

    /// `Some(Duration::ZERO)`: dropping the stream aborts it with RST
    /// (SO_LINGER {on, 0}). `None`: graceful close (the default).
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        match linger {
            Some(d) if !d.is_zero() => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "only a zero linger (abort on close) is supported",
            )),
            l => {
                self.inner
                    .abort_on_drop
                    .store(l.is_some(), Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// The congestion control of this connection (TCP_CONGESTION).
    pub fn set_congestion_control(&self, cc: CcAlgorithm) -> io::Result<()> {
        self.inner.tcp(|t, h| t.set_congestion_control(h, cc))
    }

    /// A snapshot of the connection (state, windows, RTT, retransmits).
    pub fn info(&self) -> io::Result<TcpInfo> {
        self.inner.tcp(|t, h| t.info(h))
    }

    super::timeout_methods!(inner.options);

    /// The pending error, if any, cleared by this call.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        Ok(self.inner.tcp(|t, h| t.take_error(h)))
    }

    /// Reads without removing the data from the receive queue.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_with(buf, true, false)
    }

    fn read_inner(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_with(buf, false, false)
    }

    /// One receive (or peek); `dontwait` makes this call non-blocking
    /// whatever the stream's mode (the BSD facade's `MSG_DONTWAIT`).
    pub(crate) fn recv_with(
        &self,
        buf: &mut [u8],
        peek: bool,
        dontwait: bool,
    ) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let h = self.inner.handle;
        let t = opts(&self.inner.options).read_timeout;
        self.inner
            .block_with(WaitFor::Readable, dontwait, t, |core| {
                if peek {
                    core.stack.tcp.peek(h, buf)
                } else {
                    core.stack.tcp.recv(h, buf)
                }
            })
    }

    fn write_inner(&self, buf: &[u8]) -> io::Result<usize> {
        self.send_with(buf, false)
    }

    /// One send (as much as fits); `dontwait` as in `recv_with`.
    pub(crate) fn send_with(&self, buf: &[u8], dontwait: bool) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let h = self.inner.handle;
        let t = opts(&self.inner.options).write_timeout;
        self.inner
            .block_with(WaitFor::Writable, dontwait, t, |core| {
                core.stack.tcp.send(h, buf)
            })
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
        self.write_inner(buf)
    }
    /// Data is handed to the stack by `write`; there is nothing to flush.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_inner(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream")
            .field("local", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .finish()
    }
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpListener")
            .field("local", &self.local_addr().ok())
            .finish()
    }
}

impl super::poll::Source for TcpStream {
    fn socket_id(&self) -> SocketId {
        self.id()
    }
}

impl super::poll::Source for TcpListener {
    fn socket_id(&self) -> SocketId {
        self.id()
    }
}
