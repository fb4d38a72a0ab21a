//! Devices the stack thread reads frames from and writes frames to: the
//! Linux TAP, and an in-memory link (a socketpair) for tests that need
//! real threads but no root. Plus the pcap writer and the fault injector
//! that wrap either.

pub mod fault;
pub mod hostcfg;
pub mod pair;
pub mod pcap;
pub mod tap;
pub mod vnet;

use std::io::{self, IoSlice};
use std::os::fd::BorrowedFd;

pub use vnet::{RxCsum, RxKind, RxMeta};

/// A frame-oriented, non-blocking, pollable device.
pub trait Device: Send + Sync {
    /// Reads one frame; `WouldBlock` when none is waiting.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes one frame; `WouldBlock` when the device pushes back.
    fn send(&self, frame: &[u8]) -> io::Result<usize>;
    /// The descriptor the stack thread polls for readability.
    fn fd(&self) -> BorrowedFd<'_>;
    /// Human-readable name for logs ("tap0", "pair").
    fn name(&self) -> &str;

    /// Reads one frame and says what it is (a TAP with offloads may hand
    /// over a TCP super-frame, a frame whose checksum it vouches for, or a
    /// frame to drop).
    fn recv_frame(&self, buf: &mut [u8]) -> io::Result<(usize, RxMeta)> {
        self.recv(buf).map(|n| (n, RxMeta::PLAIN))
    }

    /// True when the device takes virtio-net headers on writes
    /// ([`Device::send_vnet`]), so TCP segments may be merged into GSO
    /// super-frames.
    fn gso(&self) -> bool {
        false
    }

    /// Writes one frame given as slices, the first being a virtio-net
    /// header ([`vnet::VNET_HDR_LEN`] bytes). Only when `gso()` is true.
    fn send_vnet(&self, _parts: &[IoSlice<'_>]) -> io::Result<usize> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}
