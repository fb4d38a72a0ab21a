//! `libtapstack_preload.so`: with `LD_PRELOAD`, a program's AF_INET
//! sockets live on a running tapstack daemon (`TAPSTACK_API`, default
//! `/run/tapstack/tap0.sock`); everything else goes to libc untouched.
//!
//! Each socket is a real descriptor (a Unix socketpair end the daemon
//! hands over), so read/write/poll/epoll/select/fork/dup need no help.
//! Hooked: the calls that need the daemon (socket, bind, listen, accept,
//! connect, get{sock,peer}name, {set,get}sockopt), the receive calls of a
//! TCP socket (to turn end-of-file after a reset into ECONNRESET), UDP's
//! send/receive calls (an address header per datagram), and close/dup
//! (the descriptor table). AF_INET6 sockets fail with EAFNOSUPPORT (the
//! stack is IPv4-only; programs then use IPv4); 127.0.0.0/8 stays on the
//! kernel's loopback (the socket becomes a kernel socket at its first
//! bind/connect/sendto there).

#[path = "../../src/daemon/proto.rs"]
#[allow(dead_code)]
mod proto;

mod addr;
mod ctl;
mod io;
mod opts;
mod sys;
mod table;
mod udp;

use std::net::SocketAddrV4;

use libc::{c_int, c_void, iovec, msghdr, sockaddr, socklen_t, ssize_t};

use proto::{Msg, op};
use sys::{real, set_errno};
use table::Kind;

/// Returns -1 with errno `e`.
fn fail(e: c_int) -> c_int {
    set_errno(e);
    -1
}

fn fail_s(e: c_int) -> ssize_t {
    set_errno(e);
    -1
}

/// The socket moves to the kernel (loopback traffic): a fresh kernel
/// socket takes its descriptor number, with SO_REUSEADDR carried over.
fn move_to_kernel(fd: c_int, ty: c_int) -> Result<(), c_int> {
    let new = sys::socket(libc::AF_INET, ty | libc::SOCK_CLOEXEC, 0)?;
    let mut v: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as socklen_t;
    // SAFETY: plain getsockopt/setsockopt on ints we own.
    unsafe {
        if libc::syscall(
            libc::SYS_getsockopt,
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &mut v as *mut c_int,
            &mut len as *mut socklen_t,
        ) == 0
        {
            libc::syscall(
                libc::SYS_setsockopt,
                new,
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                &v as *const c_int,
                len,
            );
        }
    }
    sys::replace(fd, new)?;
    table::set(fd, Kind::None);
    Ok(())
}

fn is_loopback(a: &SocketAddrV4) -> bool {
    a.ip().is_loopback()
}

// ---- socket, bind, listen, accept, connect

/// # Safety
/// As socket(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    let real_socket = real!(socket: fn(c_int, c_int, c_int) -> c_int);
    let base = ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    let kind = match (domain, base, protocol) {
        (libc::AF_INET, libc::SOCK_STREAM, 0 | libc::IPPROTO_TCP) => proto::TCP,
        (libc::AF_INET, libc::SOCK_DGRAM, 0 | libc::IPPROTO_UDP) => proto::UDP,
        // The stack speaks IPv4 only: programs fall back to AF_INET.
        (libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_DGRAM, _) => {
            return fail(libc::EAFNOSUPPORT);
        }
        // AF_UNIX, raw and ICMP sockets, netlink: the kernel's.
        // SAFETY: libc's socket with the caller's arguments.
        _ => return unsafe { real_socket(domain, ty, protocol) },
    };
    let (_, fd) = match ctl::call(
        Msg {
            op: op::SOCKET,
            a: kind,
            ..Msg::default()
        },
        -1,
    ) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if fd < 0 {
        return fail(libc::EPROTO);
    }
    // Received close-on-exec; the program's flags decide.
    if ty & libc::SOCK_CLOEXEC == 0 {
        let _ = sys::fcntl(fd, libc::F_SETFD, 0);
    }
    if ty & libc::SOCK_NONBLOCK != 0 {
        let _ = sys::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK as libc::c_long);
    }
    table::set(
        fd,
        if kind == proto::TCP {
            Kind::Tcp
        } else {
            Kind::UdpFresh
        },
    );
    fd
}

/// # Safety
/// As bind(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bind(fd: c_int, a: *const sockaddr, len: socklen_t) -> c_int {
    let real_bind = real!(bind: fn(c_int, *const sockaddr, socklen_t) -> c_int);
    let kind = table::get(fd);
    if !matches!(kind, Kind::Tcp | Kind::UdpFresh | Kind::Udp) {
        // SAFETY: libc's bind with the caller's arguments.
        return unsafe { real_bind(fd, a, len) };
    }
    let local = match addr::read(a, len) {
        Ok(Some(l)) => l,
        Ok(None) => return fail(libc::EAFNOSUPPORT),
        Err(e) => return fail(e),
    };
    if is_loopback(&local) {
        let ty = if kind == Kind::Tcp {
            libc::SOCK_STREAM
        } else {
            libc::SOCK_DGRAM
        };
        if let Err(e) = move_to_kernel(fd, ty) {
            return fail(e);
        }
        // SAFETY: as above, now on a kernel socket.
        return unsafe { real_bind(fd, a, len) };
    }
    match ctl::ask(op::BIND, fd, 0, 0, Some(local)) {
        Ok(_) => {
            if kind == Kind::UdpFresh {
                table::set(fd, Kind::Udp);
            }
            0
        }
        Err(e) => fail(e),
    }
}

/// # Safety
/// As listen(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    let kind = table::get(fd);
    if !matches!(kind, Kind::Tcp | Kind::Listener) {
        let real_listen = real!(listen: fn(c_int, c_int) -> c_int);
        // SAFETY: libc's listen with the caller's arguments.
        return unsafe { real_listen(fd, backlog) };
    }
    // Linux: a negative or too large backlog means SOMAXCONN.
    let backlog = if backlog < 0 { 4096 } else { backlog as u32 };
    let req = Msg {
        op: op::LISTEN,
        a: backlog,
        ..Msg::default()
    };
    match ctl::call(req, fd) {
        Ok((_, new)) if new >= 0 => {
            if let Err(e) = sys::replace(fd, new) {
                return fail(e);
            }
            table::set(fd, Kind::Listener);
            0
        }
        Ok(_) => 0,
        Err(e) => fail(e),
    }
}

/// # Safety
/// As accept4(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    a: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    if table::get(fd) != Kind::Listener {
        let real_accept4 = real!(accept4: fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int);
        // SAFETY: libc's accept4 with the caller's arguments.
        return unsafe { real_accept4(fd, a, len, flags) };
    }
    let real_recvmsg = real!(recvmsg: fn(c_int, *mut msghdr, c_int) -> ssize_t);
    loop {
        let mut rec = [0u8; proto::ACCEPT_REC];
        let mut iov = iovec {
            iov_base: rec.as_mut_ptr() as *mut c_void,
            iov_len: rec.len(),
        };
        let mut cbuf = [0u64; 8];
        // SAFETY: msghdr is plain old data; all-zero is valid.
        let mut m: msghdr = unsafe { std::mem::zeroed() };
        m.msg_iov = &mut iov;
        m.msg_iovlen = 1;
        m.msg_control = cbuf.as_mut_ptr() as *mut c_void;
        m.msg_controllen = std::mem::size_of_val(&cbuf);
        let cloexec = if flags & libc::SOCK_CLOEXEC != 0 {
            libc::MSG_CMSG_CLOEXEC
        } else {
            0
        };
        // Blocks (or not) as the listening descriptor is set: the
        // program's own O_NONBLOCK and SO_RCVTIMEO apply.
        // SAFETY: `m` points to our buffers.
        let r = unsafe { real_recvmsg(fd, &mut m, cloexec) };
        if r < 0 {
            return -1;
        }
        let new = ctl::take_fd(&m);
        if r == 0 && new < 0 {
            // The daemon closed the listener (it stopped).
            return fail(libc::EINVAL);
        }
        if new < 0 || (r as usize) < proto::ACCEPT_REC {
            if new >= 0 {
                sys::close(new);
            }
            continue;
        }
        // One byte back: the daemon counts connections waiting to be
        // accepted against the backlog.
        let ack = [proto::ACCEPT_ACK];
        // SAFETY: a one-byte send on the listening descriptor.
        unsafe {
            libc::syscall(
                libc::SYS_sendto,
                fd,
                ack.as_ptr(),
                1usize,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                std::ptr::null::<sockaddr>(),
                0,
            )
        };
        if flags & libc::SOCK_NONBLOCK != 0 {
            let _ = sys::fcntl(new, libc::F_SETFL, libc::O_NONBLOCK as libc::c_long);
        }
        let (peer, _) = proto::parse_accept_record(&rec);
        addr::write(peer, a, len);
        table::set(new, Kind::Tcp);
        return new;
    }
}

/// # Safety
/// As accept(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept(fd: c_int, a: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: same contract.
    unsafe { accept4(fd, a, len, 0) }
}

/// # Safety
/// As connect(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, a: *const sockaddr, len: socklen_t) -> c_int {
    let real_connect = real!(connect: fn(c_int, *const sockaddr, socklen_t) -> c_int);
    let kind = table::get(fd);
    if !matches!(kind, Kind::Tcp) && !table::is_udp(kind) {
        // SAFETY: libc's connect with the caller's arguments.
        return unsafe { real_connect(fd, a, len) };
    }
    let dst = match addr::read(a, len) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    if let Some(d) = dst
        && is_loopback(&d)
        && matches!(kind, Kind::Tcp | Kind::UdpFresh)
    {
        let ty = if kind == Kind::Tcp {
            libc::SOCK_STREAM
        } else {
            libc::SOCK_DGRAM
        };
        if let Err(e) = move_to_kernel(fd, ty) {
            return fail(e);
        }
        // SAFETY: as above, now on a kernel socket.
        return unsafe { real_connect(fd, a, len) };
    }
    if kind == Kind::Tcp && dst.is_none() {
        return fail(libc::EAFNOSUPPORT);
    }
    let nonblock = u32::from(sys::nonblocking(fd));
    match ctl::ask(op::CONNECT, fd, nonblock, 0, dst) {
        Ok(_) => {
            if table::is_udp(kind) {
                table::set(
                    fd,
                    if dst.is_some() {
                        Kind::UdpConnected
                    } else {
                        Kind::Udp
                    },
                );
            }
            0
        }
        Err(e) => fail(e),
    }
}

fn name_of(which: u8, fd: c_int, a: *mut sockaddr, len: *mut socklen_t) -> c_int {
    match ctl::ask(which, fd, 0, 0, None) {
        Ok(m) => {
            let at = m
                .addr
                .unwrap_or(SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0));
            addr::write(at, a, len);
            0
        }
        Err(e) => fail(e),
    }
}

/// # Safety
/// As getsockname(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getsockname(fd: c_int, a: *mut sockaddr, len: *mut socklen_t) -> c_int {
    if matches!(table::get(fd), Kind::None | Kind::Control) {
        let f = real!(getsockname: fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int);
        // SAFETY: libc's getsockname with the caller's arguments.
        return unsafe { f(fd, a, len) };
    }
    name_of(op::GETSOCKNAME, fd, a, len)
}

/// # Safety
/// As getpeername(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getpeername(fd: c_int, a: *mut sockaddr, len: *mut socklen_t) -> c_int {
    if matches!(table::get(fd), Kind::None | Kind::Control) {
        let f = real!(getpeername: fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int);
        // SAFETY: libc's getpeername with the caller's arguments.
        return unsafe { f(fd, a, len) };
    }
    name_of(op::GETPEERNAME, fd, a, len)
}

// ---- descriptors

/// # Safety
/// As shutdown(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
    match table::get(fd) {
        // A UDP socket's shutdown changes nothing on the wire; passed to
        // the seqpacket it would look like a close to the daemon.
        Kind::UdpConnected => 0,
        Kind::UdpFresh | Kind::Udp => fail(libc::ENOTCONN),
        _ => {
            let f = real!(shutdown: fn(c_int, c_int) -> c_int);
            // SAFETY: libc's shutdown with the caller's arguments.
            unsafe { f(fd, how) }
        }
    }
}

/// # Safety
/// As close(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    table::set(fd, Kind::None);
    let f = real!(close: fn(c_int) -> c_int);
    // SAFETY: libc's close.
    unsafe { f(fd) }
}

/// # Safety
/// As dup(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    let f = real!(dup: fn(c_int) -> c_int);
    // SAFETY: libc's dup.
    let r = unsafe { f(fd) };
    if r >= 0 {
        table::copy(fd, r);
    }
    r
}

/// # Safety
/// As dup2(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    let f = real!(dup2: fn(c_int, c_int) -> c_int);
    // SAFETY: libc's dup2.
    let r = unsafe { f(old, new) };
    if r >= 0 && old != new {
        table::copy(old, new);
    }
    r
}

/// # Safety
/// As dup3(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    let f = real!(dup3: fn(c_int, c_int, c_int) -> c_int);
    // SAFETY: libc's dup3.
    let r = unsafe { f(old, new, flags) };
    if r >= 0 {
        table::copy(old, new);
    }
    r
}

/// fcntl's duplicating commands (F_DUPFD, F_DUPFD_CLOEXEC: Python's
/// `os.dup`) keep the table right; everything else is libc's. fcntl is
/// variadic in C; its one optional argument is an int or a pointer, which
/// the x86-64 and AArch64 Linux calling conventions pass exactly like a
/// third fixed `unsigned long` argument.
///
/// # Safety
/// As fcntl(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int {
    let f = real!(fcntl: fn(c_int, c_int, libc::c_ulong) -> c_int);
    // SAFETY: libc's fcntl with the caller's arguments.
    let r = unsafe { f(fd, cmd, arg) };
    after_fcntl(fd, cmd, r)
}

/// # Safety
/// As fcntl(2) (the large-file name glibc programs link to).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int {
    let f = real!(fcntl64: fn(c_int, c_int, libc::c_ulong) -> c_int);
    // SAFETY: libc's fcntl64 with the caller's arguments.
    let r = unsafe { f(fd, cmd, arg) };
    after_fcntl(fd, cmd, r)
}

/// fcntl and fcntl64 share this: a duplicating command's new descriptor
/// names the same socket as `fd`.
fn after_fcntl(fd: c_int, cmd: c_int, r: c_int) -> c_int {
    if r >= 0 && matches!(cmd, libc::F_DUPFD | libc::F_DUPFD_CLOEXEC) {
        table::copy(fd, r);
    }
    r
}

// ---- options

/// # Safety
/// As setsockopt(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: socklen_t,
) -> c_int {
    opts::set(fd, level, name, val, len)
}

/// # Safety
/// As getsockopt(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    len: *mut socklen_t,
) -> c_int {
    opts::get(fd, level, name, val, len)
}
