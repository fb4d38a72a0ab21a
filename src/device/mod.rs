//! Devices the stack thread reads frames from and writes frames to: the
//! Linux TAP, and an in-memory link (a socketpair) for tests that need
//! real threads but no root. Plus the pcap writer and the fault injector
//! that wrap either.

pub mod fault;
pub mod hostcfg;
pub mod pair;
pub mod pcap;
pub mod tap;

use std::io;
use std::os::fd::BorrowedFd;

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
}
