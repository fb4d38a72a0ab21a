//! The control connection to the daemon: one per thread (a blocking
//! connect holds its connection until the handshake ends, and other
//! threads must not wait behind it), opened again in a forked child (a
//! connection shared by two processes would mix their replies).

use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use libc::c_int;

use crate::proto::{self, Msg};
use crate::sys;
use crate::table::{self, Kind};

/// What the daemon told us about the stack (for routing checks).
#[derive(Clone, Copy, Debug)]
pub struct StackInfo {
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
}

impl StackInfo {
    /// Whether the stack has a route to `dst` (on its subnet, or a
    /// gateway): an unroutable destination fails at once with ENETUNREACH.
    pub fn routable(&self, dst: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        };
        let on_link = u32::from(dst) & mask == u32::from(self.addr) & mask;
        on_link || dst == Ipv4Addr::BROADCAST || self.gateway.is_some()
    }
}

static INFO: OnceLock<StackInfo> = OnceLock::new();
static WARNED: AtomicBool = AtomicBool::new(false);

/// (pid, fd) of a thread's control connection; fd -1 = none. Closed when
/// the thread ends: a server with a thread per request would otherwise
/// keep one connection per finished thread.
struct Ctl(Cell<(c_int, c_int)>);

impl Drop for Ctl {
    fn drop(&mut self) {
        let (pid, fd) = self.0.get();
        if fd >= 0 && pid == sys::getpid() && table::get(fd) == Kind::Control {
            table::set(fd, Kind::None);
            sys::close(fd);
        }
    }
}

thread_local! {
    static CTL: Ctl = const { Ctl(Cell::new((0, -1))) };
}

fn api_path() -> String {
    std::env::var("TAPSTACK_API").unwrap_or_else(|_| proto::default_path("tap0"))
}

/// Says once, on stderr, why sockets fail.
fn warn(path: &str, e: c_int) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        let text = std::io::Error::from_raw_os_error(e);
        let line = format!(
            "tapstack-preload: cannot reach the tapstack daemon at {path}: {text} (is `tapstack up` running? set TAPSTACK_API)\n"
        );
        // SAFETY: writes a buffer we own to stderr.
        unsafe { libc::syscall(libc::SYS_write, 2, line.as_ptr(), line.len()) };
    }
}

fn open() -> Result<c_int, c_int> {
    let path = api_path();
    let fd = sys::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0)?;
    // SAFETY: sockaddr_un is plain old data; all-zero is valid.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_bytes();
    if bytes.len() >= sa.sun_path.len() {
        sys::close(fd);
        return Err(libc::ENAMETOOLONG);
    }
    for (d, s) in sa.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    if let Err(e) = sys::connect(
        fd,
        &sa as *const libc::sockaddr_un as *const libc::sockaddr,
        len as libc::socklen_t,
    ) {
        sys::close(fd);
        return Err(e);
    }
    table::set(fd, Kind::Control);
    Ok(fd)
}

/// This thread's connection, opened if needed; `true` when it is a
/// one-off (the thread's storage is already gone: a call from another
/// thread-exit destructor) that the caller closes.
fn get() -> Result<(c_int, bool), c_int> {
    let pid = sys::getpid();
    let Ok((p, fd)) = CTL.try_with(|c| c.0.get()) else {
        let fd = open().inspect_err(|&e| warn(&api_path(), e))?;
        return Ok((fd, true));
    };
    // A program may have closed or replaced our descriptor (daemons close
    // everything): the table says whether it is still ours.
    if p == pid && fd >= 0 && table::get(fd) == Kind::Control {
        return Ok((fd, false));
    }
    let fd = open().inspect_err(|&e| warn(&api_path(), e))?;
    let _ = CTL.try_with(|c| c.0.set((pid, fd)));
    if INFO.get().is_none() {
        let r = exchange(fd, Msg::request(proto::op::HELLO), -1).map(|(m, _)| m);
        if let Ok(m) = r
            && let Some(a) = m.addr
        {
            let gw = (m.b != 0).then(|| Ipv4Addr::from(m.b.to_be_bytes()));
            let _ = INFO.set(StackInfo {
                addr: *a.ip(),
                prefix: m.a.min(32) as u8,
                gateway: gw,
            });
        }
    }
    Ok((fd, false))
}

fn forget() {
    let _ = CTL.try_with(|c| {
        let c = &c.0;
        let (_, fd) = c.get();
        if fd >= 0 && table::get(fd) == Kind::Control {
            table::set(fd, Kind::None);
            sys::close(fd);
        }
        c.set((0, -1));
    });
}

pub fn info() -> Option<StackInfo> {
    INFO.get().copied()
}

/// One request and its reply: the reply and the descriptor it carried.
/// `fd` >= 0 travels with the request (SCM_RIGHTS).
fn exchange(ctl: c_int, req: Msg, fd: c_int) -> Result<(Msg, c_int), c_int> {
    let bytes = req.encode();
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut cbuf = [0u64; 8];
    // SAFETY: msghdr is plain old data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if fd >= 0 {
        put_fd(&mut msg, &mut cbuf, fd);
    }
    loop {
        match sys::sendmsg(ctl, &msg, libc::MSG_NOSIGNAL) {
            Err(libc::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(_) => break,
        }
    }
    let mut reply = [0u8; proto::MSG_LEN];
    let mut iov = libc::iovec {
        iov_base: reply.as_mut_ptr() as *mut libc::c_void,
        iov_len: reply.len(),
    };
    let mut cbuf = [0u64; 8];
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    let n = loop {
        match sys::recvmsg(ctl, &mut msg, libc::MSG_CMSG_CLOEXEC) {
            Err(libc::EINTR) => continue,
            r => break r?,
        }
    };
    let got = take_fd(&msg);
    if n == 0 {
        return Err(libc::ENETDOWN);
    }
    match Msg::decode(&reply[..n]) {
        Ok(m) if m.op == req.op => Ok((m, got)),
        _ => {
            if got >= 0 {
                sys::close(got);
            }
            Err(libc::EPROTO)
        }
    }
}

/// Attaches `fd` to `msg` as SCM_RIGHTS, in `cbuf`.
pub fn put_fd(msg: &mut libc::msghdr, cbuf: &mut [u64; 8], fd: c_int) {
    msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
    // SAFETY: CMSG_SPACE only computes a size.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<c_int>() as u32) } as usize;
    // SAFETY: msg_control points to cbuf, 64 bytes, enough for one
    // cmsghdr and an int (CMSG_SPACE(4) = 24); CMSG_FIRSTHDR is non-null.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<c_int>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut c_int, fd);
    }
}

/// The first descriptor a received message carried (others are closed),
/// or -1.
pub fn take_fd(msg: &libc::msghdr) -> c_int {
    let mut first = -1;
    // SAFETY: walks the control buffer the kernel filled, within
    // msg_controllen, with the CMSG_* macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c) as *const c_int;
                let n = ((*c).cmsg_len - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<c_int>();
                for i in 0..n {
                    let f = std::ptr::read_unaligned(data.add(i));
                    if first < 0 {
                        first = f;
                    } else {
                        sys::close(f);
                    }
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    first
}

/// Sends `req` (with socket `fd` attached if >= 0) on this thread's
/// connection. Err is an errno: the daemon's answer, or ENETDOWN/EACCES
/// when there is no daemon.
pub fn call(req: Msg, fd: c_int) -> Result<(Msg, c_int), c_int> {
    let (ctl, one_off) = get().map_err(|e| if e == libc::EACCES { e } else { libc::ENETDOWN })?;
    let r = exchange(ctl, req, fd);
    if one_off {
        table::set(ctl, Kind::None);
        sys::close(ctl);
    }
    match r {
        Ok((m, got)) if m.errno != 0 => {
            if got >= 0 {
                sys::close(got);
            }
            Err(m.errno)
        }
        Ok(r) => Ok(r),
        Err(e) => {
            // The daemon went away (or spoke nonsense): start afresh next
            // time.
            if !one_off {
                forget();
            }
            Err(if e == libc::EPROTO { e } else { libc::ENETDOWN })
        }
    }
}

/// A request about socket `fd` that carries only `a`, `b` and an address.
pub fn ask(op: u8, fd: c_int, a: u32, b: u32, addr: Option<SocketAddrV4>) -> Result<Msg, c_int> {
    let req = Msg {
        op,
        a,
        b,
        addr,
        ..Msg::default()
    };
    call(req, fd).map(|(m, got)| {
        if got >= 0 {
            sys::close(got);
        }
        m
    })
}
