//! Control requests: what each message asks of the daemon and the stack.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, OwnedFd};

use nix::sys::epoll::{EpollEvent, EpollFlags};
use nix::sys::socket::SockType;

use super::{MAX_SOCKS_PER_CLIENT, Reply, Server, Sock, err, ok};
use crate::api::bsd::Errno as E;
use crate::daemon::fdio;
use crate::daemon::proto::{self, Msg, op};
use crate::daemon::socks::{self, Conn, Kind, Listener, Phase, TcpOpts, Udp};
use crate::stack::socket::SocketId;

impl Server {
    pub(super) fn request(&mut self, cid: u64, m: Msg, fd: Option<OwnedFd>) -> Reply {
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
            op::SOCKETS..=op::PCAP => self.observe(cid, m),
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

    pub(super) fn add_sock(
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
        let mut pid = 0;
        if let Some(c) = self.clients.get_mut(&owner) {
            c.sockets += 1;
            pid = c.pid;
        }
        self.by_ino.insert(ino, id);
        self.socks.insert(
            id,
            Sock {
                owner,
                pid,
                ino,
                fd: mine,
                kind,
            },
        );
        Ok(id)
    }

    /// Starts watching a stack socket for `id`. Its events before now
    /// reached no one (a SYN-ACK can beat the registration): pump it soon.
    pub(super) fn watch(&mut self, id: u64, s: SocketId) {
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
