//! The hooked receive and send calls: end-of-file after a reset becomes
//! the error on TCP sockets, and UDP datagrams get their address header.

use std::net::SocketAddrV4;

use libc::{c_int, c_void, iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t};

use crate::proto::op;
use crate::sys::real;
use crate::table::{self, Kind};
use crate::{addr, ctl, fail_s, is_loopback, move_to_kernel, udp};

// ---- receiving

/// After a TCP receive returned end-of-file: the reason, if the
/// connection ended in an error (reset, timeout), as -1 and errno once.
fn tcp_eof(fd: c_int) -> ssize_t {
    match ctl::ask(op::EOF_CHECK, fd, 0, 0, None) {
        Err(e) if e != libc::ENETDOWN && e != libc::EPROTO => fail_s(e),
        _ => 0,
    }
}

fn one_iov(buf: *mut c_void, n: size_t) -> iovec {
    iovec {
        iov_base: buf,
        iov_len: n,
    }
}

/// # Safety
/// As read(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t {
    let kind = table::get(fd);
    if table::is_udp(kind) {
        let v = one_iov(buf, n);
        return udp::recv(
            fd,
            &v,
            1,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            None,
        );
    }
    let f = real!(read: fn(c_int, *mut c_void, size_t) -> ssize_t);
    // SAFETY: libc's read with the caller's arguments.
    let r = unsafe { f(fd, buf, n) };
    if r == 0 && n > 0 && kind == Kind::Tcp {
        return tcp_eof(fd);
    }
    r
}

/// # Safety
/// As __read_chk (a _FORTIFY_SOURCE read).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __read_chk(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    buflen: size_t,
) -> ssize_t {
    if n > buflen {
        let f = real!(__read_chk: fn(c_int, *mut c_void, size_t, size_t) -> ssize_t);
        // SAFETY: libc's own check reports the overflow.
        return unsafe { f(fd, buf, n, buflen) };
    }
    // SAFETY: same contract as read.
    unsafe { read(fd, buf, n) }
}

/// # Safety
/// As readv(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t {
    let kind = table::get(fd);
    if table::is_udp(kind) {
        return udp::recv(
            fd,
            iov,
            cnt,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            None,
        );
    }
    let f = real!(readv: fn(c_int, *const iovec, c_int) -> ssize_t);
    // SAFETY: libc's readv with the caller's arguments.
    let r = unsafe { f(fd, iov, cnt) };
    if r == 0 && kind == Kind::Tcp {
        return tcp_eof(fd);
    }
    r
}

/// # Safety
/// As recv(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t {
    // SAFETY: same contract as recvfrom without an address.
    unsafe {
        recvfrom(
            fd,
            buf,
            n,
            flags,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    }
}

/// # Safety
/// As __recv_chk.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __recv_chk(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    buflen: size_t,
    flags: c_int,
) -> ssize_t {
    if n > buflen {
        let f = real!(__recv_chk: fn(c_int, *mut c_void, size_t, size_t, c_int) -> ssize_t);
        // SAFETY: libc's own check reports the overflow.
        return unsafe { f(fd, buf, n, buflen, flags) };
    }
    // SAFETY: same contract as recv.
    unsafe { recv(fd, buf, n, flags) }
}

/// # Safety
/// As recvfrom(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    flags: c_int,
    a: *mut sockaddr,
    alen: *mut socklen_t,
) -> ssize_t {
    let kind = table::get(fd);
    if table::is_udp(kind) {
        let v = one_iov(buf, n);
        return udp::recv(fd, &v, 1, flags, a, alen, None);
    }
    let f = real!(recvfrom: fn(c_int, *mut c_void, size_t, c_int, *mut sockaddr, *mut socklen_t) -> ssize_t);
    if kind != Kind::Tcp {
        // SAFETY: libc's recvfrom with the caller's arguments.
        return unsafe { f(fd, buf, n, flags, a, alen) };
    }
    // TCP gives no address (Linux sets the length to 0).
    // SAFETY: libc's recvfrom without an address.
    let r = unsafe {
        f(
            fd,
            buf,
            n,
            flags,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if !alen.is_null() && r >= 0 {
        // SAFETY: the caller's valid length pointer.
        unsafe { *alen = 0 };
    }
    if r == 0 && n > 0 {
        return tcp_eof(fd);
    }
    r
}

/// # Safety
/// As __recvfrom_chk.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __recvfrom_chk(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    buflen: size_t,
    flags: c_int,
    a: *mut sockaddr,
    alen: *mut socklen_t,
) -> ssize_t {
    if n > buflen {
        let f = real!(__recvfrom_chk: fn(c_int, *mut c_void, size_t, size_t, c_int, *mut sockaddr, *mut socklen_t) -> ssize_t);
        // SAFETY: libc's own check reports the overflow.
        return unsafe { f(fd, buf, n, buflen, flags, a, alen) };
    }
    // SAFETY: same contract as recvfrom.
    unsafe { recvfrom(fd, buf, n, flags, a, alen) }
}

/// # Safety
/// As recvmsg(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmsg(fd: c_int, m: *mut msghdr, flags: c_int) -> ssize_t {
    let kind = table::get(fd);
    let f = real!(recvmsg: fn(c_int, *mut msghdr, c_int) -> ssize_t);
    if m.is_null() || !(kind == Kind::Tcp || table::is_udp(kind)) {
        // SAFETY: libc's recvmsg with the caller's arguments.
        return unsafe { f(fd, m, flags) };
    }
    // SAFETY: the caller's valid msghdr.
    let msg = unsafe { &mut *m };
    if table::is_udp(kind) {
        let name = msg.msg_name as *mut sockaddr;
        let mut namelen = msg.msg_namelen;
        let mut out = 0;
        let r = udp::recv(
            fd,
            msg.msg_iov,
            msg.msg_iovlen as c_int,
            flags,
            name,
            &mut namelen,
            Some(&mut out),
        );
        if r >= 0 {
            msg.msg_namelen = if name.is_null() { 0 } else { namelen };
            // No ancillary data (IP_PKTINFO and the like) from the stack.
            msg.msg_controllen = 0;
            msg.msg_flags = out;
        }
        return r;
    }
    let mut copy = *msg;
    copy.msg_name = std::ptr::null_mut();
    copy.msg_namelen = 0;
    // SAFETY: the caller's buffers, without an address.
    let r = unsafe { f(fd, &mut copy, flags) };
    msg.msg_namelen = 0;
    msg.msg_controllen = copy.msg_controllen;
    msg.msg_flags = copy.msg_flags;
    let total: usize = (0..msg.msg_iovlen)
        // SAFETY: the caller's iovec array.
        .map(|i| unsafe { (*msg.msg_iov.add(i)).iov_len })
        .sum();
    if r == 0 && total > 0 {
        return tcp_eof(fd);
    }
    r
}

// ---- sending

/// # Safety
/// As write(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t {
    if table::is_udp(table::get(fd)) {
        let v = one_iov(buf as *mut c_void, n);
        return udp::send(fd, &v, 1, 0, None);
    }
    let f = real!(write: fn(c_int, *const c_void, size_t) -> ssize_t);
    // SAFETY: libc's write with the caller's arguments.
    unsafe { f(fd, buf, n) }
}

/// # Safety
/// As writev(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t {
    if table::is_udp(table::get(fd)) {
        return udp::send(fd, iov, cnt, 0, None);
    }
    let f = real!(writev: fn(c_int, *const iovec, c_int) -> ssize_t);
    // SAFETY: libc's writev with the caller's arguments.
    unsafe { f(fd, iov, cnt) }
}

/// # Safety
/// As send(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t {
    if table::is_udp(table::get(fd)) {
        let v = one_iov(buf as *mut c_void, n);
        return udp::send(fd, &v, 1, flags, None);
    }
    let f = real!(send: fn(c_int, *const c_void, size_t, c_int) -> ssize_t);
    // SAFETY: libc's send with the caller's arguments.
    unsafe { f(fd, buf, n, flags) }
}

/// A UDP destination given with sendto/sendmsg: loopback moves a fresh
/// socket to the kernel (Ok(None): the caller uses libc); otherwise the
/// address to send to.
fn udp_dst(fd: c_int, a: *const sockaddr, alen: socklen_t) -> Result<Option<SocketAddrV4>, c_int> {
    if a.is_null() {
        return Ok(None);
    }
    let Some(d) = addr::read(a, alen)? else {
        return Err(libc::EAFNOSUPPORT);
    };
    if is_loopback(&d) {
        if table::get(fd) == Kind::UdpFresh {
            move_to_kernel(fd, libc::SOCK_DGRAM)?;
            return Ok(None);
        }
        // Bound to the stack already: it has no loopback.
        return Err(libc::ENETUNREACH);
    }
    Ok(Some(d))
}

/// # Safety
/// As sendto(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    flags: c_int,
    a: *const sockaddr,
    alen: socklen_t,
) -> ssize_t {
    let f = real!(sendto: fn(c_int, *const c_void, size_t, c_int, *const sockaddr, socklen_t) -> ssize_t);
    let kind = table::get(fd);
    if table::is_udp(kind) {
        let dst = match udp_dst(fd, a, alen) {
            Ok(d) => d,
            Err(e) => return fail_s(e),
        };
        if table::get(fd) == Kind::None {
            // SAFETY: now a kernel socket: libc's sendto.
            return unsafe { f(fd, buf, n, flags, a, alen) };
        }
        let v = one_iov(buf as *mut c_void, n);
        return udp::send(fd, &v, 1, flags, dst);
    }
    if kind == Kind::Tcp {
        // A connected TCP socket ignores the address, as Linux does.
        // SAFETY: libc's sendto without an address.
        return unsafe { f(fd, buf, n, flags, std::ptr::null(), 0) };
    }
    // SAFETY: libc's sendto with the caller's arguments.
    unsafe { f(fd, buf, n, flags, a, alen) }
}

/// # Safety
/// As sendmsg(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, m: *const msghdr, flags: c_int) -> ssize_t {
    let f = real!(sendmsg: fn(c_int, *const msghdr, c_int) -> ssize_t);
    let kind = table::get(fd);
    if m.is_null() || !(kind == Kind::Tcp || table::is_udp(kind)) {
        // SAFETY: libc's sendmsg with the caller's arguments.
        return unsafe { f(fd, m, flags) };
    }
    // SAFETY: the caller's valid msghdr.
    let msg = unsafe { *m };
    if kind == Kind::Tcp {
        let mut copy = msg;
        copy.msg_name = std::ptr::null_mut();
        copy.msg_namelen = 0;
        copy.msg_control = std::ptr::null_mut();
        copy.msg_controllen = 0;
        // SAFETY: the caller's buffers, without address or ancillary data.
        return unsafe { f(fd, &copy, flags) };
    }
    let dst = match udp_dst(fd, msg.msg_name as *const sockaddr, msg.msg_namelen) {
        Ok(d) => d,
        Err(e) => return fail_s(e),
    };
    if table::get(fd) == Kind::None {
        // SAFETY: now a kernel socket: libc's sendmsg.
        return unsafe { f(fd, m, flags) };
    }
    udp::send(fd, msg.msg_iov, msg.msg_iovlen as c_int, flags, dst)
}
