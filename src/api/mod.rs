//! The application-facing API, shaped like `std::net`: `UdpSocket`,
//! `TcpListener`, `TcpStream`, a `Poll` registry for many sockets, and a
//! thin BSD-style facade (`bsd`). Every type is a cheap handle onto the
//! stack thread started by `Net`.

/// The std-shaped timeout and blocking-mode methods, the same for every
/// socket type; `$($field).+` is the path to its `SharedOptions`.
macro_rules! timeout_methods {
    ($($field:ident).+) => {
        /// Bounds each blocking read; `None` = no limit (zero is `InvalidInput`, as std).
        pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
            check_timeout(t)?;
            set_opts(&self.$($field).+, |o| o.read_timeout = t);
            Ok(())
        }

        /// Bounds each blocking write; `None` = no limit (zero is `InvalidInput`).
        pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
            check_timeout(t)?;
            set_opts(&self.$($field).+, |o| o.write_timeout = t);
            Ok(())
        }

        /// The read timeout.
        pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
            Ok(opts(&self.$($field).+).read_timeout)
        }

        /// The write timeout.
        pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
            Ok(opts(&self.$($field).+).write_timeout)
        }

        /// Non-blocking mode: calls that would wait fail with `WouldBlock`.
        pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
            set_opts(&self.$($field).+, |o| o.nonblocking = on);
            Ok(())
        }
    };
}
pub(crate) use timeout_methods;

pub mod bsd;
pub mod poll;
pub mod tcp;
pub mod udp;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::device::Device;
pub use crate::runtime::tap::{Direction, FrameTap, TapFrame};
use crate::runtime::{self, Shared, link::LinkOptions};
pub use crate::stack::info::{ListenInfo, Protocol, SocketInfo, TcpConnInfo, TcpTimers};
use crate::stack::{Counters, Stack, StackConfig};

pub use poll::{Event, Events, Interest, Poll, Token};
pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;

/// A running stack: owns the stack thread. Clone it freely; call
/// `shutdown` once to stop the thread.
///
/// On a TAP (needs root, or a TAP made for the user: see the README):
///
/// ```no_run
/// use std::sync::Arc;
/// use tapstack::device::tap::TapDevice;
/// use tapstack::runtime::link::LinkOptions;
/// use tapstack::{EthernetAddress, Ipv4Cidr, Net, StackConfig};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let tap = TapDevice::open("tap0", true)?;
/// let config = StackConfig::new(
///     EthernetAddress([0x02, 0x74, 0x61, 0x70, 0, 2]),
///     Ipv4Cidr::new([10, 0, 0, 2].into(), 24),
/// );
/// let net = Net::start(Arc::new(tap), config, &LinkOptions::default())?;
/// assert_eq!(net.addr(), std::net::Ipv4Addr::new(10, 0, 0, 2));
/// net.shutdown();
/// # Ok(()) }
/// ```
///
/// Two stacks in one process, joined by an in-memory link (no root):
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
/// assert_eq!(server.addr(), std::net::Ipv4Addr::new(10, 0, 0, 2));
/// assert!(client.stopped().is_none());
/// # client.shutdown();
/// # server.shutdown();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Net {
    pub(crate) shared: Arc<Shared>,
    /// The BSD facade's descriptor table (crate-visible for `bsd`).
    pub(crate) fds: Arc<bsd::Descriptors>,
}

impl Net {
    /// Starts a stack on `device` (a TAP, or one end of an in-memory link).
    pub fn start(
        device: Arc<dyn Device>,
        config: StackConfig,
        link: &LinkOptions,
    ) -> Result<Net, String> {
        let stack = Stack::new(config);
        let shared = runtime::start(device, stack, link)?;
        Ok(Net {
            shared,
            fds: Default::default(),
        })
    }

    /// Stops the stack thread; blocked calls return an error.
    pub fn shutdown(&self) {
        runtime::stop(&self.shared);
        self.fds.close_all();
    }

    /// Every counter of every layer, and the link's (`tap.dropped`).
    pub fn counters(&self) -> Counters {
        self.shared.lock().counters()
    }

    /// A snapshot of every TCP and UDP socket (listeners, connections,
    /// TIME-WAIT entries), ordered by id. `pid` is left `None` here: the
    /// daemon fills it in for its clients' sockets.
    pub fn sockets(&self) -> Vec<SocketInfo> {
        let core = self.shared.lock();
        core.stack.sockets(core.now())
    }

    /// Snapshots of the TCP connections with these (local, remote)
    /// 4-tuples, in the same order: `None` where there is none (TIME-WAIT
    /// entries are listed). One lock and O(pairs), where `sockets` is
    /// O(every socket): for following a few connections often.
    pub fn tcp_connections(
        &self,
        pairs: &[(SocketAddrV4, SocketAddrV4)],
    ) -> Vec<Option<SocketInfo>> {
        let core = self.shared.lock();
        let now = core.now();
        pairs
            .iter()
            .map(|&(local, remote)| core.stack.tcp.connection_info(now, local, remote))
            .collect()
    }

    /// Subscribes to a copy of every frame the link sees, both directions,
    /// with a wall-clock timestamp, queued up to `capacity` frames and
    /// `runtime::tap::MAX_TAP_BYTES` (beyond, frames are dropped for this tap
    /// and counted in `tap.dropped`).
    /// Dropping the `FrameTap` unsubscribes. Frames are as `--pcap` shows
    /// them: a GSO super-frame the kernel hands over arrives as one frame;
    /// what the stack sends arrives as the single segments it made, before
    /// the runtime merges them into super-frames (as the peer sees them once
    /// the kernel cuts them again), with complete checksums.
    pub fn frame_tap(&self, capacity: usize) -> FrameTap {
        self.shared.lock().frame_tap(capacity)
    }

    /// TCP connections neither listening, closed nor in TIME-WAIT.
    pub fn active_tcp_connections(&self) -> usize {
        self.shared.lock().stack.tcp.active_connections()
    }

    /// The stack's own IPv4 address.
    pub fn addr(&self) -> Ipv4Addr {
        self.shared.lock().stack.addr()
    }

    /// Whether the stack thread is asleep waiting for frames or its next
    /// deadline (for tests of the wake-up logic).
    #[doc(hidden)]
    pub fn stack_thread_sleeping(&self) -> bool {
        self.shared.lock().stack_thread_sleeping()
    }

    /// Whether a blocked application call is running the stack (it owns
    /// the device: see `runtime/lead.rs`), for tests of the hand-off.
    #[doc(hidden)]
    pub fn application_thread_leads(&self) -> bool {
        self.shared.lock().application_thread_leads()
    }

    /// How many blocked calls wait for the leader (for tests).
    #[doc(hidden)]
    pub fn followers(&self) -> usize {
        self.shared.lock().followers()
    }

    /// Why the stack stopped, if it did (device gone, shutdown).
    pub fn stopped(&self) -> Option<String> {
        self.shared.lock().stopped.clone()
    }
}

/// Per-socket options shared by all clones of a socket (as the socket
/// options of one kernel socket are shared by its duplicated fds).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Options {
    /// SO_RCVTIMEO; `None` = block indefinitely.
    pub read_timeout: Option<Duration>,
    /// SO_SNDTIMEO; `None` = block indefinitely.
    pub write_timeout: Option<Duration>,
    /// O_NONBLOCK.
    pub nonblocking: bool,
}

/// Inside the socket's own shared state (every clone of a socket shares
/// it already): a separate `Arc` cost an allocation per connection.
pub(crate) type SharedOptions = Mutex<Options>;

pub(crate) fn opts(o: &SharedOptions) -> Options {
    *o.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn set_opts(o: &SharedOptions, f: impl FnOnce(&mut Options)) {
    f(&mut o.lock().unwrap_or_else(|e| e.into_inner()))
}

/// std rejects a zero timeout with InvalidInput; so do we.
pub(crate) fn check_timeout(t: Option<Duration>) -> io::Result<()> {
    if t == Some(Duration::ZERO) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot set a 0 duration timeout",
        ));
    }
    Ok(())
}

/// Resolves to the first IPv4 socket address (the stack is IPv4-only).
pub fn to_v4(addr: impl ToSocketAddrs) -> io::Result<SocketAddrV4> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match a {
            SocketAddr::V4(v4) => return Ok(v4),
            SocketAddr::V6(v6) => last = Some(v6),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        match last {
            Some(v6) => format!("{v6} is IPv6; tapstack speaks IPv4 only"),
            None => "no address to use".to_string(),
        },
    ))
}
