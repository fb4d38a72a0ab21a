//! What the watch reads from the stack: the socket snapshot and a tap of
//! every frame, turned into the watch's own records. This file is the
//! only one that knows the stack's observation API (`Net::sockets`,
//! `Net::frame_tap`).

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

/// One socket of the snapshot, as the table shows it.
pub(crate) struct Row {
    pub proto: &'static str,
    pub state: &'static str,
    pub local: SocketAddrV4,
    pub remote: Option<SocketAddrV4>,
    pub recv_q: usize,
    pub send_q: usize,
    pub tcp: Option<TcpRow>,
}

/// What `ss -i` adds for a TCP connection.
pub(crate) struct TcpRow {
    pub cc: &'static str,
    /// The algorithm's phase and the loss state (Linux's ca_state).
    pub cc_phase: &'static str,
    pub ca_state: &'static str,
    pub cwnd: usize,
    pub ssthresh: Option<usize>,
    pub in_flight: usize,
    pub snd_wnd: usize,
    pub rcv_wnd: usize,
    pub srtt: Option<Duration>,
    pub rto: Duration,
    pub mss: usize,
    pub retrans: u64,
    pub iss: u32,
    pub irs: u32,
    /// (peer's shift, ours).
    pub wscale: Option<(u8, u8)>,
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

    /// Every socket now.
    pub(crate) fn sockets(&self) -> Vec<Row> {
        self.net.sockets().iter().map(row).collect()
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

fn row(s: &SocketInfo) -> Row {
    Row {
        proto: s.protocol.name(),
        state: s.state,
        local: s.local,
        remote: s.remote,
        recv_q: s.recv_q,
        send_q: s.send_q,
        tcp: s.tcp.as_ref().map(|t| TcpRow {
            cc: t.cc,
            cc_phase: t.cc_phase,
            ca_state: t.ca_state,
            cwnd: t.cwnd,
            ssthresh: t.ssthresh,
            in_flight: t.in_flight,
            snd_wnd: t.snd_wnd,
            rcv_wnd: t.rcv_wnd,
            srtt: t.srtt,
            rto: t.rto,
            mss: t.mss,
            retrans: t.retrans_segs,
            iss: t.iss,
            irs: t.irs,
            wscale: t.wscale,
        }),
    }
}
