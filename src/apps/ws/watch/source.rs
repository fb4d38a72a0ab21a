//! What the watch reads from the stack: the socket snapshot (the stack's
//! own `SocketInfo` records, which the watch reads as they are) and a tap
//! of every frame, turned into the watch's `Frame`. This file is the only
//! one that calls the stack's observation API (`Net::sockets`,
//! `Net::tcp_connections`, `Net::frame_tap`).

use std::net::SocketAddrV4;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, SystemTime};

use crate::api::{Direction, FrameTap, Net, SocketInfo, TapFrame};

/// One frame the tap copied (fields public here and below: value records
/// handed from this file to the watch, with no invariant).
pub(crate) struct Frame {
    /// Wall-clock time, microseconds since the Unix epoch.
    pub t_us: u64,
    /// Sent by the stack (else received).
    pub out: bool,
    pub bytes: Vec<u8>,
}

/// The stack being watched, with its tap while one is open.
pub(crate) struct Source {
    net: Net,
    tap: Option<FrameTap>,
    /// Dropped by taps closed before.
    dropped_before: u64,
}

impl Source {
    pub(crate) fn new(net: &Net) -> Source {
        Source {
            net: net.clone(),
            tap: None,
            dropped_before: 0,
        }
    }

    /// Why the stack stopped, if it did.
    pub(crate) fn stopped(&self) -> bool {
        self.net.stopped().is_some()
    }

    /// Every socket now: O(sockets) under the stack's lock.
    pub(crate) fn sockets(&self) -> Vec<SocketInfo> {
        self.net.sockets()
    }

    /// The TCP connections with these (stack, peer) ends now, in order:
    /// O(pairs) under the stack's lock.
    pub(crate) fn connections(
        &self,
        pairs: &[(SocketAddrV4, SocketAddrV4)],
    ) -> Vec<Option<SocketInfo>> {
        self.net.tcp_connections(pairs)
    }

    /// Starts copying frames (with room for `capacity` queued).
    pub(crate) fn open_tap(&mut self, capacity: usize) {
        if self.tap.is_none() {
            self.tap = Some(self.net.frame_tap(capacity));
        }
    }

    /// Stops copying frames: nobody watches.
    pub(crate) fn close_tap(&mut self) {
        if let Some(tap) = self.tap.take() {
            self.dropped_before += tap.dropped();
        }
    }

    /// Frames dropped because the watch fell behind.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped_before + self.tap.as_ref().map_or(0, FrameTap::dropped)
    }

    /// Appends up to `max` frames to `out`, waiting at most `wait` for the
    /// first.
    pub(crate) fn frames(&mut self, wait: Duration, max: usize, out: &mut Vec<Frame>) {
        let Some(tap) = &self.tap else {
            std::thread::sleep(wait);
            return;
        };
        match tap.recv_timeout(wait) {
            Ok(f) => out.push(frame(f)),
            Err(RecvTimeoutError::Timeout) => return,
            Err(RecvTimeoutError::Disconnected) => {
                // The stack stopped; `stopped` says so next.
                std::thread::sleep(wait);
                return;
            }
        }
        while out.len() < max {
            match tap.try_recv() {
                Ok(f) => out.push(frame(f)),
                Err(_) => return,
            }
        }
    }
}

fn frame(f: TapFrame) -> Frame {
    Frame {
        t_us: f
            .at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64),
        out: f.dir == Direction::Out,
        bytes: f.frame,
    }
}
