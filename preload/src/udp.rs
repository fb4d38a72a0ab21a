//! Datagram I/O on a UDP socket's seqpacket end: every datagram carries
//! the 8-byte address header (proto::UDP_HDR) the program never sees.

use std::net::SocketAddrV4;

use libc::{c_int, iovec, msghdr, sockaddr, socklen_t, ssize_t};

use crate::proto::{self, UDP_HDR};
use crate::sys::{self, real, set_errno};
use crate::table::{self, Kind};

/// Largest UDP payload in one IPv4 datagram.
const MAX_DATAGRAM: usize = 65_507;

/// Gathers the header and the caller's buffers into one iovec list.
fn iovs(hdr: &mut [u8; UDP_HDR], iov: *const iovec, cnt: c_int) -> Result<Vec<iovec>, c_int> {
    if !(0..=libc::UIO_MAXIOV).contains(&cnt) || (cnt > 0 && iov.is_null()) {
        return Err(libc::EINVAL);
    }
    let mut v = Vec::with_capacity(cnt as usize + 1);
    v.push(iovec {
        iov_base: hdr.as_mut_ptr() as *mut libc::c_void,
        iov_len: UDP_HDR,
    });
    for i in 0..cnt as usize {
        // SAFETY: the caller's iovec array has `cnt` entries.
        v.push(unsafe { *iov.add(i) });
    }
    Ok(v)
}

/// Receives one datagram into the caller's buffers; fills the source
/// address; `out_flags` gets msg_flags (MSG_TRUNC).
pub fn recv(
    fd: c_int,
    iov: *const iovec,
    cnt: c_int,
    flags: c_int,
    name: *mut sockaddr,
    namelen: *mut socklen_t,
    out_flags: Option<&mut c_int>,
) -> ssize_t {
    let mut hdr = [0u8; UDP_HDR];
    let mut v = match iovs(&mut hdr, iov, cnt) {
        Ok(v) => v,
        Err(e) => {
            set_errno(e);
            return -1;
        }
    };
    let real_recvmsg = real!(recvmsg: fn(c_int, *mut msghdr, c_int) -> ssize_t);
    let keep = libc::MSG_DONTWAIT | libc::MSG_PEEK | libc::MSG_TRUNC;
    loop {
        // SAFETY: msghdr is plain old data; all-zero is valid.
        let mut m: msghdr = unsafe { std::mem::zeroed() };
        m.msg_iov = v.as_mut_ptr();
        m.msg_iovlen = v.len();
        // SAFETY: `m` points to our header and the caller's buffers.
        let r = unsafe { real_recvmsg(fd, &mut m, flags & keep) };
        if r < 0 {
            return -1;
        }
        if r == 0 {
            // The daemon closed its end (it stopped).
            set_errno(libc::ENOTCONN);
            return -1;
        }
        if (r as usize) < UDP_HDR {
            continue;
        }
        let (from, errno) = proto::parse_udp_header(&hdr);
        if errno != 0 {
            // An ICMP error for this socket (ECONNREFUSED), as Linux
            // reports it on the next receive.
            set_errno(c_int::from(errno));
            return -1;
        }
        if let Some(a) = from {
            crate::addr::write(a, name, namelen);
        }
        if let Some(f) = out_flags {
            *f = m.msg_flags;
        }
        return r - UDP_HDR as ssize_t;
    }
}

/// Sends one datagram to `dst` (None: the connected peer).
pub fn send(
    fd: c_int,
    iov: *const iovec,
    cnt: c_int,
    flags: c_int,
    dst: Option<SocketAddrV4>,
) -> ssize_t {
    let kind = table::get(fd);
    if dst.is_none() && kind != Kind::UdpConnected {
        set_errno(libc::EDESTADDRREQ);
        return -1;
    }
    if let Some(d) = dst
        && let Some(info) = crate::ctl::info()
        && !info.routable(*d.ip())
    {
        set_errno(libc::ENETUNREACH);
        return -1;
    }
    let mut hdr = proto::udp_header(dst, 0);
    let v = match iovs(&mut hdr, iov, cnt) {
        Ok(v) => v,
        Err(e) => {
            set_errno(e);
            return -1;
        }
    };
    let total: usize = v[1..].iter().map(|i| i.iov_len).sum();
    if total > MAX_DATAGRAM {
        set_errno(libc::EMSGSIZE);
        return -1;
    }
    // SAFETY: msghdr is plain old data; all-zero is valid.
    let mut m: msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = v.as_ptr() as *mut iovec;
    m.msg_iovlen = v.len();
    let real_sendmsg = real!(sendmsg: fn(c_int, *const msghdr, c_int) -> ssize_t);
    let keep = libc::MSG_DONTWAIT;
    // SAFETY: `m` points to our header and the caller's buffers.
    let r = unsafe { real_sendmsg(fd, &m, (flags & keep) | libc::MSG_NOSIGNAL) };
    if r < 0 {
        if sys::errno() == libc::EPIPE {
            set_errno(libc::ENOTCONN);
        }
        return -1;
    }
    if kind == Kind::UdpFresh {
        table::set(fd, Kind::Udp);
    }
    r - UDP_HDR as ssize_t
}
