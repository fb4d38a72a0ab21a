//! What each descriptor number is to the shim. A flat table of bytes
//! (zero pages until touched): the check on every read/write is one load.

use std::sync::atomic::{AtomicU8, Ordering};

use libc::c_int;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Not ours: libc handles it.
    None,
    /// A TCP socket (stream pair end): unbound, connecting or connected.
    Tcp,
    /// A listening TCP socket (seqpacket end carrying connections).
    Listener,
    /// A UDP socket not yet used (may still move to the kernel for
    /// loopback).
    UdpFresh,
    /// A UDP socket bound or used through the stack.
    Udp,
    /// A connected UDP socket (send/write without an address).
    UdpConnected,
    /// A control connection of ours.
    Control,
}

const SIZE: usize = 1 << 20;
static TABLE: [AtomicU8; SIZE] = [const { AtomicU8::new(0) }; SIZE];

pub fn get(fd: c_int) -> Kind {
    if fd < 0 || fd as usize >= SIZE {
        return Kind::None;
    }
    match TABLE[fd as usize].load(Ordering::Relaxed) {
        1 => Kind::Tcp,
        2 => Kind::Listener,
        3 => Kind::UdpFresh,
        4 => Kind::Udp,
        5 => Kind::UdpConnected,
        6 => Kind::Control,
        _ => Kind::None,
    }
}

pub fn set(fd: c_int, k: Kind) {
    if fd < 0 || fd as usize >= SIZE {
        return;
    }
    let v = match k {
        Kind::None => 0,
        Kind::Tcp => 1,
        Kind::Listener => 2,
        Kind::UdpFresh => 3,
        Kind::Udp => 4,
        Kind::UdpConnected => 5,
        Kind::Control => 6,
    };
    TABLE[fd as usize].store(v, Ordering::Relaxed);
}

pub fn is_udp(k: Kind) -> bool {
    matches!(k, Kind::UdpFresh | Kind::Udp | Kind::UdpConnected)
}

/// A duplicate shares the socket (never our control connection).
pub fn copy(old: c_int, new: c_int) {
    let k = get(old);
    set(new, if k == Kind::Control { Kind::None } else { k });
}
