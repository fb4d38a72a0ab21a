//! The few Unix socket operations the daemon needs, on `OwnedFd`s:
//! socketpairs, messages with one descriptor attached (SCM_RIGHTS), the
//! socket's inode (the identity of a client's descriptor).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};

/// A connected pair: (daemon's end, non-blocking; client's end, blocking
/// like a fresh socket). Both close-on-exec.
pub fn pair(ty: SockType) -> nix::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = socketpair(AddressFamily::Unix, ty, None, SockFlag::SOCK_CLOEXEC)?;
    set_nonblocking(&a)?;
    Ok((a, b))
}

pub fn set_nonblocking(fd: &impl AsFd) -> nix::Result<()> {
    let fl = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// The inode of a socket: what identifies a client's socket across
/// processes, whichever descriptor number it has there.
pub fn inode(fd: BorrowedFd<'_>) -> nix::Result<u64> {
    Ok(nix::sys::stat::fstat(fd)?.st_ino)
}

/// Sends `parts` as one message (one packet on SEQPACKET), with `fd`
/// attached if given. Never blocks, never raises SIGPIPE.
pub fn send_parts(sock: BorrowedFd<'_>, parts: &[&[u8]], fd: Option<RawFd>) -> nix::Result<usize> {
    send_flags(sock, parts, fd, MsgFlags::MSG_DONTWAIT)
}

/// As `send_parts`, waiting as the descriptor's mode says (the client
/// library's blocking control connection).
pub fn send_blocking(
    sock: BorrowedFd<'_>,
    parts: &[&[u8]],
    fd: Option<RawFd>,
) -> nix::Result<usize> {
    send_flags(sock, parts, fd, MsgFlags::empty())
}

fn send_flags(
    sock: BorrowedFd<'_>,
    parts: &[&[u8]],
    fd: Option<RawFd>,
    flags: MsgFlags,
) -> nix::Result<usize> {
    let iov: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
    let fds;
    let cmsgs: &[ControlMessage<'_>] = match fd {
        Some(f) => {
            fds = [f];
            &[ControlMessage::ScmRights(&fds)]
        }
        None => &[],
    };
    sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        cmsgs,
        flags | MsgFlags::MSG_NOSIGNAL,
        None,
    )
}

/// One message received without blocking: its length, whether it was cut
/// short (longer than `buf`), and the first descriptor attached (any
/// others are closed).
pub struct Received {
    pub len: usize,
    pub truncated: bool,
    pub fd: Option<OwnedFd>,
}

pub fn recv_with_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> nix::Result<Received> {
    recv_flags(sock, buf, MsgFlags::MSG_DONTWAIT)
}

/// As `recv_with_fd`, waiting as the descriptor's mode says.
pub fn recv_blocking(sock: BorrowedFd<'_>, buf: &mut [u8]) -> nix::Result<Received> {
    recv_flags(sock, buf, MsgFlags::empty())
}

fn recv_flags(sock: BorrowedFd<'_>, buf: &mut [u8], flags: MsgFlags) -> nix::Result<Received> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 2]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        flags | MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut first = None;
    let truncated = msg
        .flags
        .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
    for c in msg.cmsgs().map_err(|_| Errno::EINVAL)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for f in fds {
                // SAFETY: the kernel just installed `f` in this process for
                // us (SCM_RIGHTS); nothing else owns it.
                let owned = unsafe { OwnedFd::from_raw_fd(f) };
                if first.is_none() {
                    first = Some(owned);
                }
            }
        }
    }
    Ok(Received {
        len: msg.bytes,
        truncated,
        fd: first,
    })
}

/// Reads without blocking; `Ok(0)` is end-of-file.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> nix::Result<usize> {
    loop {
        match nix::unistd::read(fd, buf) {
            Err(Errno::EINTR) => continue,
            r => return r,
        }
    }
}

/// Writes without blocking and without SIGPIPE.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> nix::Result<usize> {
    loop {
        match nix::sys::socket::send(
            fd.as_raw_fd(),
            buf,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        ) {
            Err(Errno::EINTR) => continue,
            r => return r,
        }
    }
}
