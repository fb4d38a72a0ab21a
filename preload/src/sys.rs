//! Raw system calls and the real libc functions behind our hooks.
//!
//! Inside this library a call to `libc::socket` would bind to our own
//! exported `socket` (we are preloaded): internal operations use raw
//! system calls, and hooks reach the real function with
//! `dlsym(RTLD_NEXT)`.

use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{c_char, c_int, c_long};

/// The next definition of `name` (NUL-terminated) after this library:
/// libc's. Resolved once and cached in `cache`.
pub fn next_symbol(cache: &AtomicUsize, name: &[u8]) -> usize {
    let p = cache.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: `name` is NUL-terminated (every caller passes a literal
    // ending in \0); dlsym only reads it.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr() as *const c_char) } as usize;
    if p == 0 {
        // Without libc's own function nothing can work: say so and stop.
        let msg = b"tapstack-preload: libc symbol missing\n";
        // SAFETY: writes a static buffer to stderr.
        unsafe { libc::syscall(libc::SYS_write, 2, msg.as_ptr(), msg.len()) };
        // SAFETY: ends the process; no state to keep consistent.
        unsafe { libc::abort() };
    }
    cache.store(p, Ordering::Relaxed);
    p
}

/// `real!(name: fn(args) -> ret)` is libc's `name`.
macro_rules! real {
    ($name:ident : fn($($t:ty),*) -> $r:ty) => {{
        static CACHE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let p = $crate::sys::next_symbol(&CACHE, concat!(stringify!($name), "\0").as_bytes());
        // SAFETY: `p` is libc's definition of this very function, whose C
        // signature the macro's caller spells out.
        unsafe { std::mem::transmute::<usize, unsafe extern "C" fn($($t),*) -> $r>(p) }
    }};
}
pub(crate) use real;

pub fn errno() -> c_int {
    // SAFETY: errno is thread-local storage that libc always provides.
    unsafe { *libc::__errno_location() }
}

pub fn set_errno(e: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = e };
}

/// A raw syscall's result: the value, or the errno.
fn check(r: c_long) -> Result<c_int, c_int> {
    if r < 0 { Err(errno()) } else { Ok(r as c_int) }
}

pub fn close(fd: c_int) {
    // SAFETY: closes a descriptor this library owns.
    unsafe { libc::syscall(libc::SYS_close, fd) };
}

pub fn fcntl(fd: c_int, cmd: c_int, arg: c_long) -> Result<c_int, c_int> {
    // SAFETY: F_GETFL/F_SETFL/F_GETFD/F_SETFD take an integer argument.
    check(unsafe { libc::syscall(libc::SYS_fcntl, fd, cmd, arg) })
}

pub fn dup3(old: c_int, new: c_int, flags: c_int) -> Result<c_int, c_int> {
    // SAFETY: plain descriptor numbers.
    check(unsafe { libc::syscall(libc::SYS_dup3, old, new, flags) })
}

pub fn socket(domain: c_int, ty: c_int, proto: c_int) -> Result<c_int, c_int> {
    // SAFETY: plain integers.
    check(unsafe { libc::syscall(libc::SYS_socket, domain, ty, proto) })
}

pub fn connect(fd: c_int, addr: *const libc::sockaddr, len: libc::socklen_t) -> Result<(), c_int> {
    loop {
        // SAFETY: `addr` points to `len` readable bytes (callers build it).
        match check(unsafe { libc::syscall(libc::SYS_connect, fd, addr, len) }) {
            Err(libc::EINTR) => continue,
            r => return r.map(|_| ()),
        }
    }
}

pub fn sendmsg(fd: c_int, msg: &libc::msghdr, flags: c_int) -> Result<usize, c_int> {
    // SAFETY: `msg` and everything it points to is valid for the call.
    check(unsafe { libc::syscall(libc::SYS_sendmsg, fd, msg as *const libc::msghdr, flags) })
        .map(|n| n as usize)
}

pub fn recvmsg(fd: c_int, msg: &mut libc::msghdr, flags: c_int) -> Result<usize, c_int> {
    // SAFETY: `msg` and its buffers are valid and writable for the call.
    check(unsafe { libc::syscall(libc::SYS_recvmsg, fd, msg as *mut libc::msghdr, flags) })
        .map(|n| n as usize)
}

pub fn getpid() -> c_int {
    // SAFETY: no arguments.
    unsafe { libc::syscall(libc::SYS_getpid) as c_int }
}

/// The descriptor's file status flags have O_NONBLOCK.
pub fn nonblocking(fd: c_int) -> bool {
    fcntl(fd, libc::F_GETFL, 0).is_ok_and(|f| f & libc::O_NONBLOCK != 0)
}

/// Puts `new` at number `fd` (closing what was there), keeping `fd`'s
/// close-on-exec and non-blocking flags: a socket changing shape keeps
/// the descriptor number and modes the program knows.
pub fn replace(fd: c_int, new: c_int) -> Result<(), c_int> {
    let status = fcntl(fd, libc::F_GETFL, 0)?;
    let cloexec = fcntl(fd, libc::F_GETFD, 0)? & libc::FD_CLOEXEC != 0;
    let r = dup3(new, fd, if cloexec { libc::O_CLOEXEC } else { 0 });
    close(new);
    r?;
    fcntl(fd, libc::F_SETFL, (status & libc::O_NONBLOCK) as c_long)?;
    Ok(())
}
