//! Readiness for many sockets at once, in the shape of `mio`: register
//! sockets with a `Token` and an `Interest`, then `poll` waits (with one
//! timeout) until some are ready. Level-triggered: a socket stays
//! reported while it is ready.
//!
//! The stack records which sockets had events; `poll` checks only those
//! (and those it last reported), so a registry of thousands of idle
//! sockets costs nothing per call. A blocked `poll` may run the stack
//! itself while it waits (`runtime/lead.rs`).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::Net;
use crate::runtime::PollId;
use crate::stack::socket::{Readiness, SocketId};

/// Names a registered socket in the events `Poll::poll` returns.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub usize);

/// What a registration waits for: readable, writable or both.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Interest {
    readable: bool,
    writable: bool,
}

impl Interest {
    /// Data (or a connection, or end of stream) to read.
    pub const READABLE: Interest = Interest {
        readable: true,
        writable: false,
    };
    /// Room to send.
    pub const WRITABLE: Interest = Interest {
        readable: false,
        writable: true,
    };
    /// Readable or writable.
    pub const BOTH: Interest = Interest {
        readable: true,
        writable: true,
    };
}

impl std::ops::BitOr for Interest {
    type Output = Interest;
    fn bitor(self, o: Interest) -> Interest {
        Interest {
            readable: self.readable || o.readable,
            writable: self.writable || o.writable,
        }
    }
}

/// One ready socket, as `Poll::poll` reports it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Event {
    token: Token,
    readiness: Readiness,
}

impl Event {
    /// The token the socket was registered with.
    pub fn token(&self) -> Token {
        self.token
    }
    /// A read would not block.
    pub fn is_readable(&self) -> bool {
        self.readiness.readable
    }
    /// A write would not block.
    pub fn is_writable(&self) -> bool {
        self.readiness.writable
    }
    /// The socket has a pending error (`take_error` returns it).
    pub fn is_error(&self) -> bool {
        self.readiness.error
    }
    /// The peer closed its side, or the connection is gone.
    pub fn is_hup(&self) -> bool {
        self.readiness.hup
    }
}

/// The events one `Poll::poll` call filled in.
#[derive(Debug, Default)]
pub struct Events {
    list: Vec<Event>,
    capacity: usize,
}

impl Events {
    /// Room for at most `capacity` events per call (at least 1).
    pub fn with_capacity(capacity: usize) -> Events {
        Events {
            list: Vec::with_capacity(capacity),
            capacity: capacity.max(1),
        }
    }
    /// The events, in no particular order.
    pub fn iter(&self) -> std::slice::Iter<'_, Event> {
        self.list.iter()
    }
    /// Whether no socket was ready.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
    /// How many sockets were ready.
    pub fn len(&self) -> usize {
        self.list.len()
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = &'a Event;
    type IntoIter = std::slice::Iter<'a, Event>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

/// Something that can be registered: every socket type of the API.
pub trait Source {
    /// The stack's id of the socket (crate-internal).
    fn socket_id(&self) -> SocketId;
}

impl Source for super::UdpSocket {
    fn socket_id(&self) -> SocketId {
        self.id()
    }
}

/// Waits on many sockets of one `Net` at once, like `epoll`/`mio::Poll`
/// (level-triggered).
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
/// use tapstack::api::{Events, Interest, Poll, Token};
///
/// let sock = UdpSocket::bind(&server, "0.0.0.0:7")?;
/// let poll = Poll::new(&server);
/// poll.register(&sock, Token(1), Interest::READABLE)?;
/// UdpSocket::bind(&client, "0.0.0.0:0")?.send_to(b"x", "10.0.0.2:7")?;
/// let mut events = Events::with_capacity(8);
/// poll.poll(&mut events, Some(std::time::Duration::from_secs(10)))?;
/// assert_eq!(events.iter().next().map(|e| e.token()), Some(Token(1)));
/// # client.shutdown();
/// # server.shutdown();
/// # Ok(()) }
/// ```
pub struct Poll {
    net: Net,
    id: PollId,
}

impl Poll {
    /// A registry on `net`; it is removed when dropped.
    pub fn new(net: &Net) -> Poll {
        let id = net.shared.lock().new_poll();
        Poll {
            net: net.clone(),
            id,
        }
    }

    /// Starts watching `src` for `interest`; its events carry `token`.
    pub fn register(&self, src: &impl Source, token: Token, interest: Interest) -> io::Result<()> {
        let mut core = self.net.shared.lock();
        let id = src.socket_id();
        core.register(self.id, id, token.0, interest.readable, interest.writable);
        Ok(())
    }

    /// Changes the token or interest of a registered socket.
    pub fn reregister(
        &self,
        src: &impl Source,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        self.register(src, token, interest)
    }

    /// Stops watching `src`.
    pub fn deregister(&self, src: &impl Source) -> io::Result<()> {
        self.net.shared.lock().deregister(self.id, src.socket_id());
        Ok(())
    }

    /// Waits until at least one registered socket is ready (or `timeout`
    /// passes; `Some(ZERO)` only checks). Returns the number of events.
    pub fn poll(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        events.list.clear();
        let cap = events.capacity.max(1);
        let shared = &self.net.shared;
        let core = shared.lock();
        // On the core's clock (runtime/clock.rs), like every deadline there.
        let deadline = timeout.map(|t| core.now() + t);
        let cond: Arc<std::sync::Condvar> = match core.polls.get(&self.id) {
            Some(p) => p.cond.clone(),
            None => return Err(io::Error::other("poll registry is gone")),
        };
        let list = &mut events.list;
        // Blocked, this call may run the stack itself (see runtime/lead.rs).
        let r = shared.run_blocking(core, &cond, None, deadline, |core| {
            collect(core, self.id, list, cap);
            (!list.is_empty()).then_some(Ok(list.len()))
        });
        r.unwrap_or(Ok(0))
    }
}

/// Checks the hinted sockets; ready ones are reported and kept as hints.
fn collect(core: &mut crate::runtime::Core, poll: PollId, out: &mut Vec<Event>, cap: usize) {
    let Some(state) = core.polls.get_mut(&poll) else {
        return;
    };
    let hints: Vec<SocketId> = state.hints.drain().collect();
    let mut keep = Vec::new();
    for id in hints {
        let Some(&(token, read, write)) = core.polls.get(&poll).and_then(|s| s.registered.get(&id))
        else {
            continue;
        };
        let r = core.readiness(id);
        let hit = (read && (r.readable || r.hup)) || (write && r.writable) || r.error;
        if hit {
            keep.push(id);
            if out.len() < cap {
                out.push(Event {
                    token: super::poll::Token(token),
                    readiness: r,
                });
            }
        }
    }
    if let Some(state) = core.polls.get_mut(&poll) {
        state.hints.extend(keep);
    }
}

impl Drop for Poll {
    fn drop(&mut self) {
        self.net.shared.lock().drop_poll(self.id);
    }
}
