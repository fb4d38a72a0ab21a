//! Snapshots of every socket for `tapstack ss`, the daemon's socket table
//! and the web page: plain value records, produced by methods that only
//! read the layers' state (`Stack::sockets`).
//!
//! The fields are public on purpose: these are values copied out of the
//! stack at one instant, with no invariant to protect and nothing that
//! writes back; readers (CLI, JSON writer, web page) take what they need.

use std::net::SocketAddrV4;
use std::time::Duration;

use super::socket::SocketId;

/// Transport protocol of a socket.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP (RFC 9293).
    Tcp,
    /// UDP (RFC 768).
    Udp,
}

impl Protocol {
    /// `"tcp"` / `"udp"`, as `ss` prints the Netid column.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One socket at one instant (fields public: a copied value record).
#[derive(Clone, Debug, PartialEq)]
pub struct SocketInfo {
    /// Stable for the socket's life (a TCP connection keeps it into
    /// TIME-WAIT); never reused by another socket of the same stack.
    pub id: u64,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// TCP: the RFC 9293 3.3.2 state name (`LISTEN`, `SYN-RECEIVED`,
    /// `ESTABLISHED`, `FIN-WAIT-1`, `TIME-WAIT`, ...). UDP: `UNCONN`, or
    /// `ESTAB` once connected (as `ss` says).
    pub state: &'static str,
    /// Local address and port (`0.0.0.0` for a wildcard bind).
    pub local: SocketAddrV4,
    /// Peer; `None` for a listener or an unconnected UDP socket (`*:*`).
    pub remote: Option<SocketAddrV4>,
    /// Bytes received and not yet read by the application. A listener:
    /// connections waiting in the accept queue (as Linux's `ss`).
    pub recv_q: usize,
    /// Bytes queued to send and not yet acknowledged. A listener: the
    /// accept queue's limit (backlog), as Linux's `ss`.
    pub send_q: usize,
    /// The process that owns the socket, when the daemon made it for a
    /// client (from SO_PEERCRED); `None` for in-process sockets.
    pub pid: Option<u32>,
    /// TCP connection details (not for listeners, TIME-WAIT or UDP).
    pub tcp: Option<TcpConnInfo>,
    /// Listener queues (LISTEN only).
    pub listen: Option<ListenInfo>,
    /// TIME-WAIT: time left before the entry expires.
    pub time_wait_left: Option<Duration>,
    /// The layer handle, so the daemon can match its clients' sockets.
    pub(crate) handle: Option<SocketId>,
}

/// A listener's backlog (RFC 9293 3.10.7.2 with Linux's two queues).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenInfo {
    /// Connections in SYN-RECEIVED (half-open).
    pub syn_queue: usize,
    /// Limit of the SYN queue (past it, SYN cookies).
    pub syn_queue_max: usize,
    /// Established connections not yet accepted.
    pub accept_queue: usize,
    /// Limit of the accept queue (the listen backlog).
    pub accept_queue_max: usize,
}

/// Timers a connection has pending, each as the time left.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpTimers {
    /// Retransmission timeout (RFC 6298).
    pub retransmit: Option<Duration>,
    /// Tail loss probe (RFC 8985 7).
    pub loss_probe: Option<Duration>,
    /// RACK reordering timer (RFC 8985 6.3).
    pub reorder: Option<Duration>,
    /// Delayed ACK (RFC 5681 4.2).
    pub delayed_ack: Option<Duration>,
    /// Persist / zero-window probe (RFC 9293 3.8.6.1).
    pub persist: Option<Duration>,
    /// Keepalive (RFC 9293 3.8.4).
    pub keepalive: Option<Duration>,
    /// Orphaned FIN-WAIT-2 timeout (Linux tcp_fin_timeout).
    pub fin_wait2: Option<Duration>,
}

/// What `ss -ti` shows of a TCP connection, and more.
#[derive(Clone, Debug, PartialEq)]
pub struct TcpConnInfo {
    /// Congestion control in use: `"reno"`, `"cubic"`, `"bbr"`.
    pub cc: &'static str,
    /// The algorithm's own phase: `slow-start` / `congestion-avoidance`
    /// (Reno, CUBIC), `startup` / `drain` / `probe-bw` / `probe-rtt` (BBR).
    pub cc_phase: &'static str,
    /// The sender's loss state, as Linux's ca_state: `open`, `disorder`
    /// (duplicate ACKs seen), `recovery` (fast recovery), `loss` (after an
    /// RTO).
    pub ca_state: &'static str,
    /// Congestion window, bytes.
    pub cwnd: usize,
    /// Slow-start threshold, bytes; `None` before the first loss (infinite).
    pub ssthresh: Option<usize>,
    /// Bytes in the network (RFC 6675 estimate).
    pub in_flight: usize,
    /// SND.WND: the peer's window, scaled, bytes.
    pub snd_wnd: usize,
    /// RCV.WND: the window we last advertised, bytes.
    pub rcv_wnd: usize,
    /// Smoothed RTT; `None` before the first sample.
    pub srtt: Option<Duration>,
    /// RTT variation; `None` before the first sample.
    pub rttvar: Option<Duration>,
    /// Smallest RTT seen.
    pub min_rtt: Option<Duration>,
    /// Current RTO, backoff included.
    pub rto: Duration,
    /// Consecutive RTO backoffs.
    pub backoff: u32,
    /// SMSS: the largest payload we send.
    pub mss: usize,
    /// The MSS we announced.
    pub rcv_mss: usize,
    /// (peer's shift, our shift) when window scaling was negotiated.
    pub wscale: Option<(u8, u8)>,
    /// SACK negotiated (RFC 2018).
    pub sack: bool,
    /// Timestamps negotiated (RFC 7323).
    pub timestamps: bool,
    /// Bytes sent, retransmissions included (as Linux's bytes_sent); the
    /// sequence-space part wraps at 4 GiB.
    pub bytes_sent: u64,
    /// Bytes retransmitted.
    pub bytes_retrans: u64,
    /// Bytes cumulatively acknowledged by the peer (wraps at 4 GiB).
    pub bytes_acked: u64,
    /// Bytes received in order (wraps at 4 GiB).
    pub bytes_received: u64,
    /// Segments retransmitted over the connection's life.
    pub retrans_segs: u64,
    /// Segments now marked lost (RACK / SACK scoreboard).
    pub lost: u64,
    /// Bytes the peer SACKed above SND.UNA now.
    pub sacked: usize,
    /// SACKed ranges above SND.UNA: each has a hole below it.
    pub sack_holes: usize,
    /// Latest delivery-rate sample, bytes per second (with SACK or BBR).
    pub delivery_rate: Option<u64>,
    /// Time since we last sent a segment (known with SACK or BBR).
    pub last_send: Option<Duration>,
    /// Time since we last received a segment.
    pub last_recv: Duration,
    /// Pending timers.
    pub timers: TcpTimers,
    /// Initial send sequence number (ISS): the web page shows sequence
    /// numbers relative to it.
    pub iss: u32,
    /// Initial receive sequence number (IRS).
    pub irs: u32,
    /// SND.UNA.
    pub snd_una: u32,
    /// SND.NXT.
    pub snd_nxt: u32,
    /// RCV.NXT.
    pub rcv_nxt: u32,
}
