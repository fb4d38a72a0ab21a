//! An in-memory Ethernet link between two stacks in one process: a
//! SOCK_SEQPACKET socketpair keeps frame boundaries and gives each end a
//! real pollable descriptor, so the runtime treats it exactly like a TAP.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockType, recv, send, setsockopt, socketpair, sockopt,
};

use super::Device;

/// One end of an in-memory Ethernet link (see `link`): a `Device` like a
/// TAP, for tests and for stacks talking to each other in one process.
pub struct PairDevice {
    fd: OwnedFd,
    name: String,
}

/// Creates both ends of a link.
pub fn link() -> io::Result<(PairDevice, PairDevice)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
    )?;
    for fd in [&a, &b] {
        // Room for bursts of a full TCP window without spurious drops.
        setsockopt(fd, sockopt::SndBuf, &(4 << 20))?;
        setsockopt(fd, sockopt::RcvBuf, &(4 << 20))?;
    }
    Ok((
        PairDevice {
            fd: a,
            name: "pair-a".into(),
        },
        PairDevice {
            fd: b,
            name: "pair-b".into(),
        },
    ))
}

impl Device for PairDevice {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let n = recv(self.fd.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT)?;
        if n == 0 {
            // The other end is gone: report it as a hard error.
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "link closed"));
        }
        Ok(n)
    }

    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        Ok(send(self.fd.as_raw_fd(), frame, MsgFlags::MSG_DONTWAIT)?)
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn name(&self) -> &str {
        &self.name
    }
}
