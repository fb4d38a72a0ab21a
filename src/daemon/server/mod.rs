//! The daemon thread: one epoll loop over the control socket, the
//! clients' control connections, the daemon's end of every socket pair and
//! the stack's event signal.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{SockFlag, SockType, accept4, getsockopt, sockopt};

mod observe;
mod requests;

use super::fdio;
use super::proto::{self, Msg, op};
use super::socks::{self, Conn, Finish, Kind, Phase, TcpOpts};
use crate::api::Net;
use crate::api::bsd::Errno as E;
use crate::runtime::PollId;
use crate::stack::socket::SocketId;
use crate::stack::tcp::TcpHandle;
use crate::stack::udp::UdpHandle;

const T_LISTEN: u64 = 0;
const T_STACK: u64 = 1;
const T_STOP: u64 = 2;
const FIRST_ID: u64 = 16;
const CLIENT_BIT: u64 = 1 << 62;

/// Control connections at once; more are closed at accept (each costs
/// a descriptor and a few hundred bytes).
const MAX_CLIENTS: usize = 4096;
/// Sockets at once, all clients together (also kept below the
/// descriptor limit, see `Server::new`), and per client.
const MAX_SOCKS: usize = 16_000;
const MAX_SOCKS_PER_CLIENT: usize = 8192;
/// Requests read from one client per turn (fairness).
const REQUESTS_PER_TURN: usize = 32;
/// Ended connections whose error a client may still ask for (EOF_CHECK,
/// SO_ERROR): a bounded FIFO.
const GRAVEYARD: usize = 8192;
/// Largest UDP datagram plus its header.
const UDP_BUF: usize = 65_536 + proto::UDP_HDR;

struct Client {
    fd: OwnedFd,
    pid: i32,
    /// Who it is: live captures are for root and the daemon's own user.
    uid: u32,
    sockets: usize,
    /// A reply is deferred (blocking connect): the client's next requests
    /// wait unread until it is sent.
    busy: bool,
}

struct Sock {
    owner: u64,
    /// The owning client's process, for the socket table (`ss`).
    pid: i32,
    ino: u64,
    fd: OwnedFd,
    kind: Kind,
}

enum Reply {
    Now(Msg, Option<OwnedFd>),
    Deferred,
    /// A protocol violation: close the control connection.
    Close,
}

fn err(op: u8, e: i32) -> Reply {
    Reply::Now(
        Msg {
            op,
            errno: e,
            ..Msg::default()
        },
        None,
    )
}

fn ok(op: u8) -> Reply {
    err(op, 0)
}

pub struct Server {
    net: Net,
    epoll: Epoll,
    listen_fd: OwnedFd,
    stack_fd: Arc<EventFd>,
    poll: PollId,
    allow_others: bool,
    clients: HashMap<u64, Client>,
    socks: HashMap<u64, Sock>,
    by_ino: HashMap<u64, u64>,
    by_stack: HashMap<SocketId, u64>,
    graveyard: HashMap<u64, i32>,
    grave_order: VecDeque<u64>,
    next_id: u64,
    again: Vec<u64>,
    udp_buf: Vec<u8>,
    /// MAX_SOCKS, or fewer when the descriptor limit is lower: every
    /// socket and client costs the daemon one descriptor, and running out
    /// would leave connections on the control socket it cannot accept.
    max_socks: usize,
    /// A descriptor held in reserve for accepting (and closing) a client
    /// when the limit is reached.
    spare: Option<OwnedFd>,
    stopping: bool,
    /// Writer threads of the observation replies (`ss`, `trace`, ...).
    watchers: super::watch::Watchers,
}

impl Server {
    pub fn new(
        net: &Net,
        listen_fd: OwnedFd,
        stop_fd: Arc<EventFd>,
        allow_others: bool,
    ) -> nix::Result<Server> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let stack_fd = Arc::new(EventFd::from_flags(
            EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC,
        )?);
        epoll.add(&listen_fd, EpollEvent::new(EpollFlags::EPOLLIN, T_LISTEN))?;
        epoll.add(
            stack_fd.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, T_STACK),
        )?;
        epoll.add(
            stop_fd.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, T_STOP),
        )?;
        let poll = net.shared.lock().new_poll_notify(stack_fd.clone());
        let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(1024, |(soft, _)| soft as usize);
        let max_socks = MAX_SOCKS.min(nofile.saturating_sub(MAX_CLIENTS + 256).max(64));
        Ok(Server {
            net: net.clone(),
            epoll,
            listen_fd,
            stack_fd,
            poll,
            allow_others,
            clients: HashMap::new(),
            socks: HashMap::new(),
            by_ino: HashMap::new(),
            by_stack: HashMap::new(),
            graveyard: HashMap::new(),
            grave_order: VecDeque::new(),
            next_id: FIRST_ID,
            again: Vec::new(),
            udp_buf: vec![0u8; UDP_BUF],
            max_socks,
            spare: spare_fd(),
            stopping: false,
            watchers: Default::default(),
        })
    }

    pub fn run(mut self) {
        let mut events = vec![EpollEvent::empty(); 256];
        while !self.stopping {
            let held = self
                .socks
                .values()
                .any(|s| matches!(&s.kind, Kind::Listener(l) if l.held.is_some()));
            let timeout: u16 = if !self.again.is_empty() {
                0
            } else if held {
                10
            } else {
                1000
            };
            let n = match self.epoll.wait(&mut events, EpollTimeout::from(timeout)) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => {
                    log::error!("daemon: epoll failed: {e}");
                    break;
                }
            };
            for ev in &events[..n] {
                self.dispatch(ev.data(), ev.events());
            }
            for t in std::mem::take(&mut self.again) {
                self.dispatch(t, EpollFlags::empty());
            }
            if held {
                let ids: Vec<u64> = self
                    .socks
                    .iter()
                    .filter(|(_, s)| matches!(&s.kind, Kind::Listener(l) if l.held.is_some()))
                    .map(|(id, _)| *id)
                    .collect();
                for id in ids {
                    self.pump(id, false);
                }
            }
        }
        self.shutdown();
    }

    /// SIGTERM: every client sees its descriptors fail rather than hang.
    fn shutdown(&mut self) {
        let ids: Vec<u64> = self.socks.keys().copied().collect();
        for id in ids {
            self.remove(id, Some(Finish::Abort));
        }
        self.clients.clear();
        self.watchers.stop_all();
        self.net.shared.lock().drop_poll(self.poll);
        log::info!("daemon: stopped");
    }

    fn dispatch(&mut self, token: u64, flags: EpollFlags) {
        match token {
            T_LISTEN => self.accept_clients(),
            T_STACK => {
                let _ = self.stack_fd.read();
                let mut hints = Vec::new();
                self.net.shared.lock().take_hints(self.poll, &mut hints);
                for s in hints {
                    if let Some(&id) = self.by_stack.get(&s) {
                        self.pump(id, false);
                    }
                }
            }
            T_STOP => self.stopping = true,
            t if t & CLIENT_BIT != 0 => self.serve_client(t & !CLIENT_BIT),
            id => {
                let hup = flags.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR);
                self.pump(id, hup);
            }
        }
    }

    fn accept_clients(&mut self) {
        loop {
            let fd = match accept4(
                &self.listen_fd,
                SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            ) {
                Ok(fd) => fd,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return,
                Err(e @ (Errno::EMFILE | Errno::ENFILE)) => {
                    // Out of descriptors: the waiting connection would
                    // wake the level-triggered epoll forever. Free the
                    // spare, take it and close it (the client sees its
                    // connection end), keep the spare for next time.
                    log::warn!("daemon: cannot accept a client ({e}): refused");
                    self.spare = None;
                    // Dropping the accepted descriptor closes it.
                    drop(accept4(&self.listen_fd, SockFlag::SOCK_CLOEXEC));
                    self.spare = spare_fd();
                    return;
                }
                Err(e) => {
                    log::warn!("daemon: accept failed: {e}");
                    return;
                }
            };
            let cred = match getsockopt(&fd, sockopt::PeerCredentials) {
                Ok(c) => c,
                Err(e) => {
                    log::warn!("daemon: no peer credentials ({e}): closed");
                    continue;
                }
            };
            let (pid, uid, gid) = (cred.pid(), cred.uid(), cred.gid());
            // The socket file's mode is the first gate; without an
            // --api-group only root and our own user pass this one.
            let me = nix::unistd::geteuid().as_raw();
            if !self.allow_others && uid != 0 && uid != me {
                log::warn!("daemon: refused pid {pid} uid {uid}: not root (see --api-group)");
                continue;
            }
            if self.clients.len() >= MAX_CLIENTS {
                log::warn!("daemon: refused pid {pid}: {MAX_CLIENTS} clients already");
                continue;
            }
            let id = self.new_id();
            if self
                .epoll
                .add(
                    &fd,
                    EpollEvent::new(
                        EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET,
                        id | CLIENT_BIT,
                    ),
                )
                .is_err()
            {
                continue;
            }
            log::info!("daemon: client {id} connected: pid {pid} uid {uid} gid {gid}");
            self.clients.insert(
                id,
                Client {
                    fd,
                    pid,
                    uid,
                    sockets: 0,
                    busy: false,
                },
            );
            // Requests may already be waiting (edge-triggered).
            self.again.push(id | CLIENT_BIT);
        }
    }

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn drop_client(&mut self, cid: u64, why: &str) {
        if let Some(c) = self.clients.remove(&cid) {
            log::info!("daemon: client {cid} (pid {}) {why}", c.pid);
        }
    }

    /// Reads and answers requests until none is waiting (or the client's
    /// turn is over, or a reply is deferred).
    fn serve_client(&mut self, cid: u64) {
        for _ in 0..REQUESTS_PER_TURN {
            let Some(c) = self.clients.get(&cid) else {
                return;
            };
            if c.busy {
                return;
            }
            let mut buf = [0u8; proto::MSG_LEN + 1];
            let got = fdio::recv_with_fd(c.fd.as_fd(), &mut buf);
            let r = match got {
                Ok(r) => r,
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) => continue,
                Err(e) => return self.drop_client(cid, &format!("failed: {e}")),
            };
            if r.len == 0 && r.fd.is_none() {
                return self.drop_client(cid, "disconnected");
            }
            if r.truncated {
                return self.drop_client(cid, "sent an oversized message: closed");
            }
            let msg = match Msg::decode(&buf[..r.len]) {
                Ok(m) => m,
                Err(e) => {
                    return self
                        .drop_client(cid, &format!("sent a malformed message ({e:?}): closed"));
                }
            };
            match self.request(cid, msg, r.fd) {
                Reply::Now(m, fd) => self.reply(cid, m, fd),
                Reply::Deferred => {
                    if let Some(c) = self.clients.get_mut(&cid) {
                        c.busy = true;
                    }
                    return;
                }
                Reply::Close => {
                    return self.drop_client(cid, "broke the protocol: closed");
                }
            }
        }
        self.again.push(cid | CLIENT_BIT);
    }

    fn reply(&mut self, cid: u64, m: Msg, fd: Option<OwnedFd>) {
        let Some(c) = self.clients.get(&cid) else {
            return;
        };
        let raw = fd.as_ref().map(|f| f.as_raw_fd());
        // A reply never waits: a client that does not read its replies
        // (its receive buffer full) is closed.
        if let Err(e) = fdio::send_parts(c.fd.as_fd(), &[&m.encode()], raw) {
            self.drop_client(cid, &format!("cannot take a reply ({e}): closed"));
        }
    }

    /// A deferred reply: send it and let the client's next requests in.
    fn reply_later(&mut self, cid: u64, m: Msg) {
        if let Some(c) = self.clients.get_mut(&cid) {
            c.busy = false;
            self.reply(cid, m, None);
            self.again.push(cid | CLIENT_BIT);
        }
    }

    /// Runs the pump of socket `id`; `hup` when its client descriptor is
    /// closed everywhere.
    fn pump(&mut self, id: u64, hup: bool) {
        let net = self.net.clone();
        let Some(s) = self.socks.get_mut(&id) else {
            return;
        };
        match &mut s.kind {
            Kind::Fresh { .. } => {
                if hup {
                    self.remove(id, None);
                }
            }
            Kind::Conn(c) => {
                if hup {
                    c.client_gone = true;
                }
                let p = socks::pump_conn(&net, &s.fd, c);
                if let Some(e) = p.resolved {
                    let waiters = std::mem::take(&mut c.waiters);
                    if e != 0 && !waiters.is_empty() {
                        // Reported now: SO_ERROR is clear afterwards.
                        c.phase = Phase::Failed(None);
                    }
                    for (cid, wop) in waiters {
                        let m = match wop {
                            op::SO_ERROR => Msg {
                                op: wop,
                                a: e as u32,
                                ..Msg::default()
                            },
                            _ => Msg {
                                op: wop,
                                errno: e,
                                ..Msg::default()
                            },
                        };
                        self.reply_later(cid, m);
                    }
                }
                if let Some(f) = p.finish {
                    self.remove(id, Some(f));
                } else if p.again {
                    self.again.push(id);
                }
            }
            Kind::Listener(_) => {
                if hup {
                    self.remove(id, Some(Finish::Close));
                } else {
                    self.pump_listener(id);
                }
            }
            Kind::Udp(u) => {
                let buf = &mut self.udp_buf;
                match socks::pump_udp(&net, &s.fd, u, buf) {
                    Ok(true) => self.again.push(id),
                    Ok(false) if hup => self.remove(id, None),
                    Ok(false) => {}
                    Err(()) => self.remove(id, None),
                }
            }
        }
    }

    /// Hands accepted connections to the client while fewer than the
    /// backlog wait unaccepted.
    fn pump_listener(&mut self, id: u64) {
        let owner;
        let lh;
        {
            let Some(s) = self.socks.get_mut(&id) else {
                return;
            };
            let Kind::Listener(l) = &mut s.kind else {
                return;
            };
            owner = s.owner;
            lh = l.h;
            let mut acks = [0u8; 64];
            loop {
                match fdio::read(s.fd.as_fd(), &mut acks) {
                    Ok(0) => break,
                    Ok(n) => {
                        let k = acks[..n]
                            .iter()
                            .filter(|&&b| b == proto::ACCEPT_ACK)
                            .count();
                        l.outstanding = l.outstanding.saturating_sub(k);
                    }
                    Err(_) => break,
                }
            }
        }
        for _ in 0..256 {
            let Some(s) = self.socks.get_mut(&id) else {
                return;
            };
            let Kind::Listener(l) = &mut s.kind else {
                return;
            };
            if let Some((fd, rec)) = l.held.take() {
                match fdio::send_parts(s.fd.as_fd(), &[&rec], Some(fd.as_raw_fd())) {
                    Ok(_) => l.outstanding += 1,
                    Err(Errno::EAGAIN) | Err(Errno::ENOBUFS) => {
                        l.held = Some((fd, rec));
                        return;
                    }
                    Err(_) => return self.remove(id, Some(Finish::Close)),
                }
            }
            if l.outstanding >= l.limit || self.socks.len() >= self.max_socks {
                return;
            }
            let accepted = self.net.shared.with_core(|core| {
                let tcp = &mut core.stack.tcp;
                let (h, peer) = tcp.accept(lh).ok()?;
                let local = tcp.local_addr(h).ok()?;
                let nodelay = tcp.nodelay(lh).unwrap_or(false);
                let _ = tcp.set_nodelay(h, nodelay);
                Some((h, peer, local))
            });
            let Some((h, peer, local)) = accepted else {
                return;
            };
            let Ok((mine, theirs)) = fdio::pair(SockType::Stream) else {
                self.net.shared.with_core(|c| c.stack.tcp.abort(h));
                return;
            };
            let conn = Conn::new(h, Phase::Open, TcpOpts::default());
            let Ok(cid) = self.add_sock(owner, mine, &theirs, Kind::Conn(Box::new(conn))) else {
                self.net.shared.with_core(|c| c.stack.tcp.abort(h));
                return;
            };
            self.watch(cid, SocketId::Tcp(h.0));
            // Data may already be queued: start moving it.
            self.again.push(cid);
            if let Some(Sock {
                kind: Kind::Listener(l),
                ..
            }) = self.socks.get_mut(&id)
            {
                l.held = Some((theirs, proto::accept_record(peer, local)));
            }
        }
        self.again.push(id);
    }

    /// Forgets socket `id`, closing the daemon's end (the client sees
    /// end-of-file, EPIPE, or a closed listener).
    fn remove(&mut self, id: u64, finish: Option<Finish>) {
        let Some(s) = self.socks.remove(&id) else {
            return;
        };
        self.by_ino.remove(&s.ino);
        if let Some(c) = self.clients.get_mut(&s.owner) {
            c.sockets = c.sockets.saturating_sub(1);
        }
        let stack_id = match &s.kind {
            Kind::Conn(c) => Some(SocketId::Tcp(c.h.0)),
            Kind::Listener(l) => Some(SocketId::Tcp(l.h.0)),
            Kind::Udp(u) => u.h.map(|h| SocketId::Udp(h.0)),
            Kind::Fresh { .. } => None,
        };
        let mut waiters = Vec::new();
        let mut grave = None;
        self.net.shared.with_core(|core| match &s.kind {
            Kind::Conn(c) => {
                let h: TcpHandle = c.h;
                match (finish, c.phase) {
                    (Some(Finish::Abort), _) => core.stack.tcp.abort(h),
                    (Some(Finish::Failed(e)), _) => {
                        grave = Some(e);
                        core.stack.tcp.close(h);
                    }
                    (_, Phase::Failed(e)) => {
                        grave = e;
                        core.stack.tcp.close(h);
                    }
                    _ => core.stack.tcp.close(h),
                }
                core.forget(SocketId::Tcp(h.0));
                waiters.clone_from(&c.waiters);
            }
            Kind::Listener(l) => {
                core.stack.tcp.close(l.h);
                core.forget(SocketId::Tcp(l.h.0));
            }
            Kind::Udp(u) => {
                if let Some(h) = u.h {
                    let h: UdpHandle = h;
                    core.stack.udp.close(h);
                    core.forget(SocketId::Udp(h.0));
                }
            }
            Kind::Fresh { .. } => {}
        });
        if let Some(sid) = stack_id
            && self.by_stack.get(&sid) == Some(&id)
        {
            self.by_stack.remove(&sid);
        }
        if let Some(e) = grave {
            self.bury(s.ino, e);
        }
        for (cid, wop) in waiters {
            let e = grave.unwrap_or(E::ECONNABORTED.code());
            let m = Msg {
                op: wop,
                errno: if wop == op::SO_ERROR { 0 } else { e },
                a: if wop == op::SO_ERROR { e as u32 } else { 0 },
                ..Msg::default()
            };
            self.reply_later(cid, m);
        }
        // Closing our end (drop) removes it from epoll.
        drop(s);
    }

    fn bury(&mut self, ino: u64, e: i32) {
        if self.graveyard.insert(ino, e).is_none() {
            self.grave_order.push_back(ino);
        }
        while self.grave_order.len() > GRAVEYARD {
            if let Some(old) = self.grave_order.pop_front() {
                self.graveyard.remove(&old);
            }
        }
    }
}

fn spare_fd() -> Option<OwnedFd> {
    std::fs::File::open("/dev/null").ok().map(OwnedFd::from)
}
