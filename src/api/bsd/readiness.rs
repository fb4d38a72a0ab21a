//! `poll(2)` over descriptors of every kind, on the API's `Poll`.

use std::time::Duration;

use super::{Errno, POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, PollFd, Socket, table};
use crate::api::poll::{Event, Source};
use crate::api::{Events, Interest, Net, Poll, TcpListener, TcpStream, Token, UdpSocket};
use crate::stack::socket::SocketId;

/// The socket whose readiness stands for a descriptor.
pub(super) enum Watched {
    Udp(UdpSocket),
    Listener(TcpListener),
    Stream(TcpStream),
}

impl Source for Watched {
    fn socket_id(&self) -> SocketId {
        match self {
            Watched::Udp(s) => s.socket_id(),
            Watched::Listener(l) => l.socket_id(),
            Watched::Stream(s) => s.socket_id(),
        }
    }
}

/// Waits until a descriptor is ready or `timeout` passes (`None` = no
/// limit, `Some(ZERO)` = just check). Sets each `revents` and returns how
/// many entries have a non-zero one. A descriptor that is not open gets
/// `POLLNVAL`; `POLLERR`/`POLLHUP` are reported whatever `events` asks,
/// as poll(2) does.
pub fn poll(net: &Net, fds: &mut [PollFd], timeout: Option<Duration>) -> Result<usize, Errno> {
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    let (watched, ready_now) = classify(net, fds);
    if watched.is_empty() {
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
    }
    let registry = Poll::new(net);
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
        p.revents = revents(e, p.events);
        n += usize::from(p.revents != 0);
    }
    Ok(n)
}

/// Every registered interest is one of POLLIN/POLLOUT that was asked for,
/// so each event gives a non-zero `revents`.
fn revents(e: &Event, asked: i16) -> i16 {
    let mut r = 0;
    if e.is_readable() {
        r |= POLLIN;
    }
    if e.is_writable() {
        r |= POLLOUT;
    }
    r &= asked;
    if e.is_error() {
        r |= POLLERR;
    }
    if e.is_hup() {
        r |= POLLHUP;
    }
    r
}

/// Answers at once for descriptors that need no waiting (invalid, unbound,
/// closed) and lists the sockets to watch. Returns the (index, socket)
/// pairs to watch and how many are ready now.
fn classify(net: &Net, fds: &mut [PollFd]) -> (Vec<(usize, Watched)>, usize) {
    // (index into fds, socket to watch)
    let mut watched: Vec<(usize, Watched)> = Vec::new();
    let mut ready_now = 0;
    {
        let mut t = table(net);
        for (i, p) in fds.iter_mut().enumerate() {
            p.revents = 0;
            let Ok(s) = t.get_mut(p.fd) else {
                p.revents = POLLNVAL;
                ready_now += 1;
                continue;
            };
            let watch = match s {
                Socket::Udp(u) => u.sock.clone().map(Watched::Udp),
                Socket::Tcp(e) => e.watch(),
            };
            match (watch, s) {
                (Some(w), _) => watched.push((i, w)),
                // Unbound: sendto would work, nothing can arrive.
                (None, Socket::Udp(_)) => {
                    p.revents = p.events & POLLOUT;
                    ready_now += usize::from(p.revents != 0);
                }
                // Neither connected nor listening: what Linux's tcp_poll
                // says of a closed socket.
                (None, Socket::Tcp(_)) => {
                    p.revents = (p.events & POLLOUT) | POLLHUP;
                    ready_now += 1;
                }
            }
        }
    }
    (watched, ready_now)
}
