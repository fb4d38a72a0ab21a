//! Socket options. Generic SOL_SOCKET options (buffers, timeouts,
//! SO_REUSEADDR) go to the real descriptor, where they mean what they
//! say for reads and writes; TCP options that change the connection go
//! to the daemon; the rest are accepted and ignored, as the stack has
//! nothing they would change.

use libc::{c_int, c_void, socklen_t};

use crate::ctl;
use crate::proto::{op, opt};
use crate::sys::{real, set_errno};
use crate::table::{self, Kind};

fn fail(e: c_int) -> c_int {
    set_errno(e);
    -1
}

fn read_int(val: *const c_void, len: socklen_t) -> Result<c_int, c_int> {
    if val.is_null() || (len as usize) < std::mem::size_of::<c_int>() {
        return Err(libc::EINVAL);
    }
    // SAFETY: at least an int is readable (checked above).
    Ok(unsafe { std::ptr::read_unaligned(val as *const c_int) })
}

/// Writes `bytes` truncated to `*len`, setting `*len`, as the kernel does.
fn write_bytes(bytes: &[u8], val: *mut c_void, len: *mut socklen_t) -> c_int {
    if val.is_null() || len.is_null() {
        return fail(libc::EFAULT);
    }
    // SAFETY: the caller's buffer holds `*len` bytes; we copy no more.
    unsafe {
        let n = (*len as usize).min(bytes.len());
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), val as *mut u8, n);
        *len = n as socklen_t;
    }
    0
}

fn write_int(v: c_int, val: *mut c_void, len: *mut socklen_t) -> c_int {
    write_bytes(&v.to_ne_bytes(), val, len)
}

fn daemon_opt(level: c_int, name: c_int) -> Option<u32> {
    match (level, name) {
        (libc::IPPROTO_TCP, libc::TCP_NODELAY) => Some(opt::TCP_NODELAY),
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE) => Some(opt::TCP_KEEPIDLE),
        (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL) => Some(opt::TCP_KEEPINTVL),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT) => Some(opt::TCP_KEEPCNT),
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE) => Some(opt::SO_KEEPALIVE),
        _ => None,
    }
}

pub fn set(fd: c_int, level: c_int, name: c_int, val: *const c_void, len: socklen_t) -> c_int {
    let f = real!(setsockopt: fn(c_int, c_int, c_int, *const c_void, socklen_t) -> c_int);
    let kind = table::get(fd);
    if matches!(kind, Kind::None | Kind::Control) {
        // SAFETY: libc's setsockopt with the caller's arguments.
        return unsafe { f(fd, level, name, val, len) };
    }
    if level == libc::SOL_SOCKET && name == libc::SO_LINGER {
        if val.is_null() || (len as usize) < std::mem::size_of::<libc::linger>() {
            return fail(libc::EINVAL);
        }
        // SAFETY: a struct linger is readable (checked above).
        let l = unsafe { std::ptr::read_unaligned(val as *const libc::linger) };
        let abort = u32::from(l.l_onoff != 0 && l.l_linger == 0);
        if kind == Kind::Tcp
            && let Err(e) = ctl::ask(op::SETOPT, fd, opt::SO_LINGER_ABORT, abort, None)
        {
            return fail(e);
        }
        // SAFETY: also kept on the descriptor, so getsockopt reads it back.
        return unsafe { f(fd, level, name, val, len) };
    }
    if let Some(o) = daemon_opt(level, name) {
        let v = match read_int(val, len) {
            Ok(v) => v,
            Err(e) => return fail(e),
        };
        if kind == Kind::Tcp
            && let Err(e) = ctl::ask(op::SETOPT, fd, o, v as u32, None)
        {
            return fail(e);
        }
        if level == libc::SOL_SOCKET {
            // SAFETY: also kept on the descriptor for getsockopt.
            unsafe { f(fd, level, name, val, len) };
        }
        return 0;
    }
    match (level, name) {
        // unix(7) sockets refuse these; the stack has one socket per port
        // and no devices to bind to: accepted.
        (libc::SOL_SOCKET, libc::SO_REUSEPORT | libc::SO_BINDTODEVICE) => 0,
        _ => set_generic(fd, level, name, val, len),
    }
}

fn set_generic(fd: c_int, level: c_int, name: c_int, val: *const c_void, len: socklen_t) -> c_int {
    let f = real!(setsockopt: fn(c_int, c_int, c_int, *const c_void, socklen_t) -> c_int);
    match level {
        // Buffers, timeouts, SO_REUSEADDR/SO_REUSEPORT, SO_BROADCAST...:
        // the descriptor's own.
        // SAFETY: libc's setsockopt on the descriptor.
        libc::SOL_SOCKET => unsafe { f(fd, level, name, val, len) },
        // TOS, TTL, congestion control, MTU discovery...: accepted.
        libc::IPPROTO_IP | libc::IPPROTO_TCP | libc::IPPROTO_UDP => 0,
        _ => fail(libc::ENOPROTOOPT),
    }
}

pub fn get(fd: c_int, level: c_int, name: c_int, val: *mut c_void, len: *mut socklen_t) -> c_int {
    let f = real!(getsockopt: fn(c_int, c_int, c_int, *mut c_void, *mut socklen_t) -> c_int);
    let kind = table::get(fd);
    if matches!(kind, Kind::None | Kind::Control) {
        // SAFETY: libc's getsockopt with the caller's arguments.
        return unsafe { f(fd, level, name, val, len) };
    }
    let tcp = matches!(kind, Kind::Tcp | Kind::Listener);
    match (level, name) {
        (libc::SOL_SOCKET, libc::SO_ERROR) => match ctl::ask(op::SO_ERROR, fd, 0, 0, None) {
            Ok(m) => write_int(m.a as c_int, val, len),
            Err(e) => fail(e),
        },
        (libc::SOL_SOCKET, libc::SO_TYPE) => write_int(
            if tcp {
                libc::SOCK_STREAM
            } else {
                libc::SOCK_DGRAM
            },
            val,
            len,
        ),
        (libc::SOL_SOCKET, libc::SO_DOMAIN) => write_int(libc::AF_INET, val, len),
        (libc::SOL_SOCKET, libc::SO_PROTOCOL) => write_int(
            if tcp {
                libc::IPPROTO_TCP
            } else {
                libc::IPPROTO_UDP
            },
            val,
            len,
        ),
        (libc::SOL_SOCKET, libc::SO_ACCEPTCONN) => {
            write_int(c_int::from(kind == Kind::Listener), val, len)
        }
        // SAFETY: libc's getsockopt on the descriptor.
        (libc::SOL_SOCKET, _) => unsafe { f(fd, level, name, val, len) },
        (libc::IPPROTO_TCP, libc::TCP_INFO) => tcp_info(fd, val, len),
        (libc::IPPROTO_TCP, libc::TCP_MAXSEG) => write_int(1460, val, len),
        (libc::IPPROTO_TCP, libc::TCP_CONGESTION) => write_bytes(b"cubic\0", val, len),
        (libc::IPPROTO_TCP, _) => match daemon_opt(level, name) {
            Some(o) if kind == Kind::Tcp => match ctl::ask(op::GETOPT, fd, o, 0, None) {
                Ok(m) => write_int(m.a as c_int, val, len),
                Err(e) => fail(e),
            },
            _ => write_int(0, val, len),
        },
        (libc::IPPROTO_IP, libc::IP_TTL) => write_int(64, val, len),
        (libc::IPPROTO_IP | libc::IPPROTO_UDP, _) => write_int(0, val, len),
        _ => fail(libc::ENOPROTOOPT),
    }
}

/// TCP_INFO with the state filled in (the rest zero): enough for
/// programs that check the state or just want the call to work.
fn tcp_info(fd: c_int, val: *mut c_void, len: *mut socklen_t) -> c_int {
    let state = match ctl::ask(op::GETOPT, fd, opt::TCP_STATE, 0, None) {
        Ok(m) => m.a as u8,
        Err(e) => return fail(e),
    };
    // SAFETY: tcp_info is plain old data; all-zero is valid.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    info.tcpi_state = state;
    info.tcpi_snd_mss = 1460;
    info.tcpi_rcv_mss = 1460;
    // SAFETY: viewing a plain struct as its bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            &info as *const libc::tcp_info as *const u8,
            std::mem::size_of::<libc::tcp_info>(),
        )
    };
    write_bytes(bytes, val, len)
}
