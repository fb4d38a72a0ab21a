//! What the watch reads from the stack: the socket snapshot and a tap of
//! every frame, turned into the watch's own records. This file is the
//! only one that knows the stack's observation API.
//!
//! STAND-IN: until `Net::sockets` and `Net::frame_tap` are merged, the
//! snapshot is empty and no frame comes.

use std::net::SocketAddrV4;
use std::time::Duration;

use crate::api::Net;

/// One frame the tap copied.
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
    tap: Option<()>,
}

impl Source {
    pub(crate) fn new(net: &Net) -> Source {
        Source {
            net: net.clone(),
            tap: None,
        }
    }

    /// Why the stack stopped, if it did.
    pub(crate) fn stopped(&self) -> bool {
        self.net.stopped().is_some()
    }

    /// Every socket now.
    pub(crate) fn sockets(&self) -> Vec<Row> {
        Vec::new()
    }

    /// Starts copying frames (with room for `capacity` queued).
    pub(crate) fn open_tap(&mut self, _capacity: usize) {
        self.tap.get_or_insert(());
    }

    /// Stops copying frames: nobody watches.
    pub(crate) fn close_tap(&mut self) {
        self.tap = None;
    }

    /// Frames dropped because the watch fell behind.
    pub(crate) fn dropped(&self) -> u64 {
        0
    }

    /// Appends up to `max` frames to `out`, waiting at most `wait` for the
    /// first.
    pub(crate) fn frames(&mut self, wait: Duration, _max: usize, _out: &mut Vec<Frame>) {
        std::thread::sleep(wait);
    }
}
