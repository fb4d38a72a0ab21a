//! sockaddr_in in and out.

use std::net::{Ipv4Addr, SocketAddrV4};

use libc::{c_int, sockaddr, sockaddr_in, socklen_t};

/// `Ok(None)` is AF_UNSPEC; anything but AF_INET/AF_UNSPEC is
/// EAFNOSUPPORT, a short address EINVAL.
pub fn read(addr: *const sockaddr, len: socklen_t) -> Result<Option<SocketAddrV4>, c_int> {
    if addr.is_null() || (len as usize) < std::mem::size_of::<libc::sa_family_t>() {
        return Err(libc::EINVAL);
    }
    // SAFETY: at least the family field is readable (checked above).
    let family = unsafe { std::ptr::read_unaligned(&(*addr).sa_family) };
    match c_int::from(family) {
        libc::AF_UNSPEC => Ok(None),
        libc::AF_INET if len as usize >= std::mem::size_of::<sockaddr_in>() => {
            // SAFETY: the caller gave `len` bytes, at least a sockaddr_in.
            let sin = unsafe { std::ptr::read_unaligned(addr as *const sockaddr_in) };
            Ok(Some(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET => Err(libc::EINVAL),
        _ => Err(libc::EAFNOSUPPORT),
    }
}

pub fn to_sin(a: SocketAddrV4) -> sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is valid.
    let mut sin: sockaddr_in = unsafe { std::mem::zeroed() };
    sin.sin_family = libc::AF_INET as libc::sa_family_t;
    sin.sin_port = a.port().to_be();
    sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    sin
}

/// Writes `a` the way the kernel does: truncated to `*len`, and `*len`
/// set to the full size. Null pointers are skipped.
pub fn write(a: SocketAddrV4, addr: *mut sockaddr, len: *mut socklen_t) {
    if addr.is_null() || len.is_null() {
        return;
    }
    let sin = to_sin(a);
    let full = std::mem::size_of::<sockaddr_in>();
    // SAFETY: `len` is the caller's valid pointer; `addr` has `*len`
    // writable bytes (the accept/getsockname contract); we copy at most
    // that many.
    unsafe {
        let room = (*len as usize).min(full);
        std::ptr::copy_nonoverlapping(
            &sin as *const sockaddr_in as *const u8,
            addr as *mut u8,
            room,
        );
        *len = full as socklen_t;
    }
}
