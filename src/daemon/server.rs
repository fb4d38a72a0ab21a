//! The daemon thread: one epoll loop over the control socket, the
//! clients' control connections, the daemon's end of every socket pair and
//! the stack's event signal.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{SockFlag, SockType, accept4, getsockopt, sockopt};

use super::fdio;
use super::proto::{self, Msg, op};
use super::socks::{self, Conn, Finish, Kind, Listener, Phase, TcpOpts, Udp};
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
    sockets: usize,
    /// A reply is deferred (blocking connect): the client's next requests
    /// wait unread until it is sent.
    busy: bool,
}

struct Sock {
    owner: u64,
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
                self.listen_fd.as_raw_fd(),
                SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            ) {
                // SAFETY: accept4 returned a new descriptor we now own.
                Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return,
                Err(e @ (Errno::EMFILE | Errno::ENFILE)) => {
                    // Out of descriptors: the waiting connection would
                    // wake the level-triggered epoll forever. Free the
                    // spare, take it and close it (the client sees its
                    // connection end), keep the spare for next time.
                    log::warn!("daemon: cannot accept a client ({e}): refused");
                    self.spare = None;
                    if let Ok(fd) = accept4(self.listen_fd.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
                        // SAFETY: accept4 returned a new descriptor we own.
                        drop(unsafe { OwnedFd::from_raw_fd(fd) });
                    }
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

    fn request(&mut self, cid: u64, m: Msg, fd: Option<OwnedFd>) -> Reply {
        match m.op {
            op::HELLO => {
                let core = self.net.shared.lock();
                let cfg = &core.stack.iface.config;
                let gw = cfg.gateway.map(|g| u32::from_be_bytes(g.octets()));
                Reply::Now(
                    Msg {
                        op: op::HELLO,
                        a: u32::from(cfg.cidr.prefix_len()),
                        b: gw.unwrap_or(0),
                        addr: Some(SocketAddrV4::new(cfg.cidr.address(), 0)),
                        ..Msg::default()
                    },
                    None,
                )
            }
            op::SOCKET => self.new_socket(cid, m.a),
            o if !(op::BIND..=op::EOF_CHECK).contains(&o) => err(o, E::EINVAL.code()),
            _ => {
                let Some(fd) = fd else {
                    return err(m.op, E::EBADF.code());
                };
                let Ok(ino) = fdio::inode(fd.as_fd()) else {
                    return err(m.op, E::EBADF.code());
                };
                drop(fd);
                match self.by_ino.get(&ino).copied() {
                    Some(id) => self.socket_request(cid, id, m),
                    None => self.dead_request(ino, m),
                }
            }
        }
    }

    /// A request about a socket that has ended (or was never ours).
    fn dead_request(&mut self, ino: u64, m: Msg) -> Reply {
        match m.op {
            op::EOF_CHECK | op::SO_ERROR => {
                let e = self.graveyard.remove(&ino).unwrap_or(0);
                err(m.op, e)
            }
            op::GETPEERNAME | op::CONNECT if self.graveyard.contains_key(&ino) => {
                err(m.op, E::ENOTCONN.code())
            }
            op::GETSOCKNAME | op::GETOPT | op::SETOPT | op::GETPEERNAME => {
                err(m.op, E::ENOTCONN.code())
            }
            _ => err(m.op, E::EBADF.code()),
        }
    }

    fn new_socket(&mut self, cid: u64, kind: u32) -> Reply {
        let Some(c) = self.clients.get(&cid) else {
            return Reply::Close;
        };
        if self.socks.len() >= self.max_socks || c.sockets >= MAX_SOCKS_PER_CLIENT {
            return err(op::SOCKET, E::EMFILE.code());
        }
        let (ty, kind) = match kind {
            proto::TCP => (
                SockType::Stream,
                Kind::Fresh {
                    bound: None,
                    opts: TcpOpts::default(),
                },
            ),
            proto::UDP => (SockType::SeqPacket, Kind::Udp(Udp::new())),
            _ => return err(op::SOCKET, E::EPROTONOSUPPORT.code()),
        };
        let Ok((mine, theirs)) = fdio::pair(ty) else {
            return err(op::SOCKET, E::ENOMEM.code());
        };
        let Ok(id) = self.add_sock(cid, mine, &theirs, kind) else {
            return err(op::SOCKET, E::ENOMEM.code());
        };
        if matches!(self.socks.get(&id).map(|s| &s.kind), Some(Kind::Udp(_))) {
            // Linux binds on the first send; binding now gives every
            // datagram a source port, and bind() rebinds (see BIND).
            let _ = self.udp_bind(id, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        }
        Reply::Now(
            Msg {
                op: op::SOCKET,
                ..Msg::default()
            },
            Some(theirs),
        )
    }

    fn add_sock(
        &mut self,
        owner: u64,
        mine: OwnedFd,
        theirs: &OwnedFd,
        kind: Kind,
    ) -> nix::Result<u64> {
        let ino = fdio::inode(theirs.as_fd())?;
        let id = self.new_id();
        self.epoll.add(
            &mine,
            EpollEvent::new(
                EpollFlags::EPOLLIN
                    | EpollFlags::EPOLLOUT
                    | EpollFlags::EPOLLRDHUP
                    | EpollFlags::EPOLLET,
                id,
            ),
        )?;
        if let Some(c) = self.clients.get_mut(&owner) {
            c.sockets += 1;
        }
        self.by_ino.insert(ino, id);
        self.socks.insert(
            id,
            Sock {
                owner,
                ino,
                fd: mine,
                kind,
            },
        );
        Ok(id)
    }

    /// Starts watching a stack socket for `id`. Its events before now
    /// reached no one (a SYN-ACK can beat the registration): pump it soon.
    fn watch(&mut self, id: u64, s: SocketId) {
        self.by_stack.insert(s, id);
        self.net
            .shared
            .lock()
            .register(self.poll, s, id as usize, true, true);
        self.again.push(id);
    }

    fn udp_bind(&mut self, id: u64, local: SocketAddrV4) -> Result<(), i32> {
        let Some(Sock {
            kind: Kind::Udp(u), ..
        }) = self.socks.get_mut(&id)
        else {
            return Err(E::EINVAL.code());
        };
        let old = u.h.take();
        let r = self.net.shared.with_core(|core| {
            if let Some(h) = old {
                core.stack.udp.close(h);
                core.forget(SocketId::Udp(h.0));
            }
            core.stack.udp.bind(local)
        });
        if let Some(h) = old {
            self.by_stack.remove(&SocketId::Udp(h.0));
        }
        match r {
            Ok(h) => {
                u.h = Some(h);
                self.watch(id, SocketId::Udp(h.0));
                Ok(())
            }
            Err(e) => Err(socks::errno_of(&e)),
        }
    }

    fn socket_request(&mut self, cid: u64, id: u64, m: Msg) -> Reply {
        match m.op {
            op::BIND => self.bind(id, m),
            op::LISTEN => self.listen(id, m),
            op::CONNECT => self.connect(cid, id, m),
            op::GETSOCKNAME | op::GETPEERNAME => self.name(id, m.op),
            op::SETOPT => self.setopt(id, m),
            op::GETOPT => self.getopt(id, m),
            op::SO_ERROR => self.so_error(cid, id),
            op::EOF_CHECK => ok(op::EOF_CHECK),
            _ => err(m.op, E::EINVAL.code()),
        }
    }

    fn local_ok(&self, local: SocketAddrV4) -> bool {
        local.ip().is_unspecified() || *local.ip() == self.net.shared.lock().stack.addr()
    }

    fn bind(&mut self, id: u64, m: Msg) -> Reply {
        let local = m
            .addr
            .unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        if !self.local_ok(local) {
            return err(op::BIND, E::EADDRNOTAVAIL.code());
        }
        let net = self.net.clone();
        let Some(s) = self.socks.get_mut(&id) else {
            return err(op::BIND, E::EBADF.code());
        };
        match &mut s.kind {
            Kind::Fresh { bound, .. } => {
                if bound.is_some() {
                    return err(op::BIND, E::EINVAL.code());
                }
                match crate::api::TcpListener::probe(&net, local) {
                    Ok(a) => {
                        *bound = Some(SocketAddrV4::new(*local.ip(), a.port()));
                        ok(op::BIND)
                    }
                    Err(e) => err(op::BIND, socks::errno_of(&e)),
                }
            }
            Kind::Udp(_) => match self.udp_bind(id, local) {
                Ok(()) => ok(op::BIND),
                Err(e) => {
                    let _ = self.udp_bind(id, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
                    err(op::BIND, e)
                }
            },
            _ => err(op::BIND, E::EINVAL.code()),
        }
    }

    fn listen(&mut self, id: u64, m: Msg) -> Reply {
        let backlog = (m.a as usize).clamp(1, crate::api::bsd::SOMAXCONN as usize);
        let Some(s) = self.socks.get_mut(&id) else {
            return err(op::LISTEN, E::EBADF.code());
        };
        let (local, opts) = match &mut s.kind {
            Kind::Fresh { bound, opts } => (
                bound.unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
                *opts,
            ),
            Kind::Listener(l) => {
                // Linux lets listen() change the backlog.
                l.limit = backlog.min(128);
                return ok(op::LISTEN);
            }
            _ => return err(op::LISTEN, E::EINVAL.code()),
        };
        let h = match self.net.shared.with_core(|core| {
            let h = core.stack.tcp.listen(local, backlog)?;
            let _ = core.stack.tcp.set_nodelay(h, opts.nodelay);
            Ok::<_, std::io::Error>(h)
        }) {
            Ok(h) => h,
            Err(e) => return err(op::LISTEN, socks::errno_of(&e)),
        };
        let Ok((mine, theirs)) = fdio::pair(SockType::SeqPacket) else {
            self.net.shared.with_core(|c| c.stack.tcp.close(h));
            return err(op::LISTEN, E::ENOMEM.code());
        };
        // The listening descriptor replaces the stream one: the client
        // dup2s it over the socket's number.
        let Some(old) = self.socks.remove(&id) else {
            return err(op::LISTEN, E::EBADF.code());
        };
        self.by_ino.remove(&old.ino);
        if let Some(c) = self.clients.get_mut(&old.owner) {
            c.sockets -= 1;
        }
        let owner = old.owner;
        drop(old);
        let kind = Kind::Listener(Listener {
            h,
            outstanding: 0,
            limit: backlog.min(128),
            held: None,
        });
        match self.add_sock(owner, mine, &theirs, kind) {
            Ok(nid) => {
                self.watch(nid, SocketId::Tcp(h.0));
                Reply::Now(
                    Msg {
                        op: op::LISTEN,
                        ..Msg::default()
                    },
                    Some(theirs),
                )
            }
            Err(_) => {
                self.net.shared.with_core(|c| c.stack.tcp.close(h));
                err(op::LISTEN, E::ENOMEM.code())
            }
        }
    }

    fn routable(&self, dst: SocketAddrV4) -> bool {
        self.net
            .shared
            .lock()
            .stack
            .iface
            .route(*dst.ip())
            .is_some()
    }

    fn connect(&mut self, cid: u64, id: u64, m: Msg) -> Reply {
        let nonblock = m.a != 0;
        let routable = m.addr.map(|a| self.routable(a));
        let net = self.net.clone();
        let Some(s) = self.socks.get_mut(&id) else {
            return err(op::CONNECT, E::EBADF.code());
        };
        match &mut s.kind {
            Kind::Fresh { bound, opts } => {
                let Some(dst) = m.addr else {
                    return err(op::CONNECT, E::EAFNOSUPPORT.code());
                };
                if routable != Some(true) {
                    return err(op::CONNECT, E::ENETUNREACH.code());
                }
                let (bound, opts) = (*bound, *opts);
                let h = match net.shared.with_core(|core| {
                    let now = core.now();
                    core.stack.tcp.connect(now, bound, dst)
                }) {
                    Ok(h) => h,
                    Err(e) => return err(op::CONNECT, socks::errno_of(&e)),
                };
                let mut c = Conn::new(h, Phase::Connecting, opts);
                if !nonblock {
                    c.waiters.push((cid, op::CONNECT));
                }
                s.kind = Kind::Conn(Box::new(c));
                self.watch(id, SocketId::Tcp(h.0));
                if nonblock {
                    err(op::CONNECT, E::EINPROGRESS.code())
                } else {
                    Reply::Deferred
                }
            }
            Kind::Conn(c) => match c.phase {
                Phase::Connecting if nonblock => err(op::CONNECT, E::EALREADY.code()),
                Phase::Connecting => {
                    c.waiters.push((cid, op::CONNECT));
                    Reply::Deferred
                }
                Phase::Open => err(op::CONNECT, E::EISCONN.code()),
                Phase::Failed(e) => {
                    c.phase = Phase::Failed(None);
                    err(op::CONNECT, e.unwrap_or(E::ECONNABORTED.code()))
                }
            },
            Kind::Udp(u) => {
                let Some(dst) = m.addr else {
                    // AF_UNSPEC dissolves the association: rebind afresh
                    // on the same local address.
                    let local =
                        u.h.and_then(|h| net.shared.lock().stack.udp.local_addr(h).ok())
                            .unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
                    return match self.udp_bind(id, local) {
                        Ok(()) => ok(op::CONNECT),
                        Err(e) => err(op::CONNECT, e),
                    };
                };
                if routable != Some(true) {
                    return err(op::CONNECT, E::ENETUNREACH.code());
                }
                let Some(h) = u.h else {
                    return err(op::CONNECT, E::EINVAL.code());
                };
                match net.shared.with_core(|core| core.stack.udp.connect(h, dst)) {
                    Ok(()) => ok(op::CONNECT),
                    Err(e) => err(op::CONNECT, socks::errno_of(&e)),
                }
            }
            Kind::Listener(_) => err(op::CONNECT, E::EISCONN.code()),
        }
    }

    fn name(&mut self, id: u64, which: u8) -> Reply {
        let peer = which == op::GETPEERNAME;
        let unspec = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
        let Some(s) = self.socks.get(&id) else {
            return err(which, E::EBADF.code());
        };
        let core = self.net.shared.lock();
        let r: std::io::Result<SocketAddrV4> = match &s.kind {
            Kind::Fresh { bound, .. } if !peer => Ok(bound.unwrap_or(unspec)),
            Kind::Fresh { .. } => Err(std::io::ErrorKind::NotConnected.into()),
            Kind::Conn(c) if peer && c.phase != Phase::Open => {
                Err(std::io::ErrorKind::NotConnected.into())
            }
            Kind::Conn(c) if peer => core.stack.tcp.peer_addr(c.h),
            Kind::Conn(c) => core.stack.tcp.local_addr(c.h),
            Kind::Listener(l) if !peer => core.stack.tcp.local_addr(l.h),
            Kind::Listener(_) => Err(std::io::ErrorKind::NotConnected.into()),
            Kind::Udp(u) => match u.h {
                Some(h) if peer => core.stack.udp.peer_addr(h),
                Some(h) => core.stack.udp.local_addr(h),
                None if peer => Err(std::io::ErrorKind::NotConnected.into()),
                None => Ok(unspec),
            },
        };
        match r {
            Ok(a) => Reply::Now(
                Msg {
                    op: which,
                    addr: Some(a),
                    ..Msg::default()
                },
                None,
            ),
            Err(e) => err(which, socks::errno_of(&e)),
        }
    }

    fn setopt(&mut self, id: u64, m: Msg) -> Reply {
        let Some(s) = self.socks.get_mut(&id) else {
            return err(op::SETOPT, E::EBADF.code());
        };
        let (opts, h) = match &mut s.kind {
            Kind::Fresh { opts, .. } => (opts, None),
            Kind::Conn(c) => (&mut c.opts, (c.phase == Phase::Open).then_some(c.h)),
            // Options on UDP and listening sockets are accepted as a
            // no-op: none changes what this stack does with them.
            _ => return ok(op::SETOPT),
        };
        let v = m.b;
        match m.a {
            proto::opt::TCP_NODELAY => opts.nodelay = v != 0,
            proto::opt::SO_KEEPALIVE => opts.keepalive = v != 0,
            proto::opt::SO_LINGER_ABORT => opts.linger_abort = v != 0,
            proto::opt::TCP_KEEPIDLE => opts.keep_idle = v,
            proto::opt::TCP_KEEPINTVL => opts.keep_intvl = v,
            proto::opt::TCP_KEEPCNT => opts.keep_cnt = v,
            _ => return err(op::SETOPT, E::ENOPROTOOPT.code()),
        }
        let o = *opts;
        if let Some(h) = h {
            self.net.shared.with_core(|core| {
                let tcp = &mut core.stack.tcp;
                let _ = tcp.set_nodelay(h, o.nodelay);
                let _ = tcp.set_keepalive(h, o.keepalive());
            });
        }
        ok(op::SETOPT)
    }

    fn getopt(&mut self, id: u64, m: Msg) -> Reply {
        let Some(s) = self.socks.get(&id) else {
            return err(op::GETOPT, E::EBADF.code());
        };
        let (opts, h) = match &s.kind {
            Kind::Fresh { opts, .. } => (*opts, None),
            Kind::Conn(c) => (c.opts, Some(c.h)),
            Kind::Listener(_) if m.a == proto::opt::TCP_STATE => (TcpOpts::default(), None),
            _ => (TcpOpts::default(), None),
        };
        let v = match m.a {
            proto::opt::TCP_NODELAY => u32::from(opts.nodelay),
            proto::opt::SO_KEEPALIVE => u32::from(opts.keepalive),
            proto::opt::SO_LINGER_ABORT => u32::from(opts.linger_abort),
            proto::opt::TCP_KEEPIDLE => opts.keep_idle,
            proto::opt::TCP_KEEPINTVL => opts.keep_intvl,
            proto::opt::TCP_KEEPCNT => opts.keep_cnt,
            proto::opt::TCP_STATE => match (&s.kind, h) {
                (Kind::Listener(_), _) => 10,
                (_, Some(h)) => linux_state(self.net.shared.lock().stack.tcp.state(h)),
                _ => 7,
            },
            _ => return err(op::GETOPT, E::ENOPROTOOPT.code()),
        };
        Reply::Now(
            Msg {
                op: op::GETOPT,
                a: v,
                ..Msg::default()
            },
            None,
        )
    }

    fn so_error(&mut self, cid: u64, id: u64) -> Reply {
        let Some(s) = self.socks.get_mut(&id) else {
            return err(op::SO_ERROR, E::EBADF.code());
        };
        let e = match &mut s.kind {
            Kind::Conn(c) => match c.phase {
                // The client saw its descriptor writable (a socketpair is
                // at once): answer when the handshake has an outcome.
                Phase::Connecting => {
                    c.waiters.push((cid, op::SO_ERROR));
                    return Reply::Deferred;
                }
                Phase::Failed(e) => {
                    c.phase = Phase::Failed(None);
                    e.unwrap_or(0)
                }
                Phase::Open => {
                    let h = c.h;
                    self.net
                        .shared
                        .lock()
                        .stack
                        .tcp
                        .take_error(h)
                        .map_or(0, |e| socks::errno_of(&e))
                }
            },
            Kind::Udp(u) => match u.h {
                Some(h) => match self.net.shared.lock().stack.udp.take_error(h) {
                    Ok(Some(e)) => socks::errno_of(&e),
                    _ => 0,
                },
                None => 0,
            },
            _ => 0,
        };
        Reply::Now(
            Msg {
                op: op::SO_ERROR,
                a: e as u32,
                ..Msg::default()
            },
            None,
        )
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

/// Linux's TCP state numbers (include/net/tcp_states.h), for TCP_INFO.
fn linux_state(s: crate::stack::tcp::TcpState) -> u32 {
    use crate::stack::tcp::TcpState as S;
    match s {
        S::Established => 1,
        S::SynSent => 2,
        S::SynReceived => 3,
        S::FinWait1 => 4,
        S::FinWait2 => 5,
        S::TimeWait => 6,
        S::Closed => 7,
        S::CloseWait => 8,
        S::LastAck => 9,
        S::Listen => 10,
        S::Closing => 11,
    }
}
