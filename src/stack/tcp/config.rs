//! Per-layer TCP configuration (defaults follow Linux where it matters).

use std::time::Duration;

pub use super::cc::CcAlgorithm;
pub use super::rmem::TcpMem;

#[derive(Clone, Debug)]
/// TCP behaviour and bounds for every connection (`StackConfig::tcp`).
pub struct TcpConfig {
    /// Receive buffer per connection (bytes).
    pub rx_buffer: usize,
    /// Receive memory of all connections together (Linux's
    /// net.ipv4.tcp_mem, in bytes): the pages of receive rings that hold
    /// data. Above `pressure` receive buffers stop growing; data needing
    /// pages beyond `high` is dropped and windows stop short of it (`rmem`).
    pub tcp_mem: TcpMem,
    /// Send buffer per connection (bytes).
    pub tx_buffer: usize,
    /// Our MSS: link MTU - 40.
    pub mss: usize,
    /// TIME-WAIT duration (2*MSL).
    pub time_wait: Duration,
    /// SYN (and SYN+ACK) retransmissions before giving up.
    pub syn_retries: u32,
    /// Data retransmissions before giving up (Linux tcp_retries2).
    pub max_retries: u32,
    /// RTO before the first RTT sample (RFC 6298 2.1: 1 s).
    pub initial_rto: Duration,
    /// Lower bound of the RTO (Linux: 200 ms; RFC 6298 2.4 says 1 s).
    pub min_rto: Duration,
    /// Upper bound of the RTO, backoff included (RFC 6298 2.5; Linux: 120 s).
    pub max_rto: Duration,
    /// Delayed-ACK timeout (RFC 9293 3.8.6.3, RFC 5681 4.2).
    pub delayed_ack: Duration,
    /// Bound of each listener's SYN queue.
    pub syn_backlog: usize,
    /// Answer SYNs past a full SYN queue with SYN cookies (RFC 4987 3.6;
    /// Linux net.ipv4.tcp_syncookies=1).
    pub syncookies: bool,
    /// Congestion control algorithm for new connections.
    pub cc: CcAlgorithm,
    /// Offer and accept SACK (RFC 2018) and recover with it (RFC 6675).
    pub sack: bool,
    /// RACK-TLP loss detection (RFC 8985) on SACK connections; off, loss
    /// is found by RFC 6675 IsLost() and DupThresh (as Linux's
    /// net.ipv4.tcp_recovery).
    pub rack: bool,
    /// Offer and accept timestamps (RFC 7323 3) for RTT samples and PAWS.
    pub timestamps: bool,
    /// Offer and accept window scaling (RFC 7323 2), needed for windows over
    /// 64 KiB.
    pub window_scaling: bool,
    /// Leave the checksum to the device: segments carry only the
    /// pseudo-header sum, as a NIC driver's CHECKSUM_PARTIAL packets do.
    /// The runtime turns it on for a TAP that takes virtio-net headers
    /// (and off while capturing), so the sum is computed once, by the
    /// kernel, or not at all for local delivery.
    pub checksum_offload: bool,
    /// Segmentation offload (TSO): consecutive full-sized segments that a
    /// connection sends in one go leave as one super-segment of up to
    /// 64 KB with their segment size on the frame, cut by the device (or
    /// by the runtime for a device that cannot). Only with
    /// `checksum_offload` (the device sums each segment).
    pub segmentation_offload: bool,
    /// (idle, interval, probes); None = off.
    pub keepalive: Option<(Duration, Duration, u32)>,
    /// Challenge ACKs per second over the whole layer (RFC 5961 section
    /// 7), beyond the per-connection limit of one per 500 ms; `u32::MAX`
    /// is no cap, Linux's default (net.ipv4.tcp_challenge_ack_limit
    /// INT_MAX since 6.0: a shared counter is an off-path side channel,
    /// CVE-2016-5696).
    pub challenge_ack_limit: u32,
    /// Some → deterministic ISN secret and ephemeral ports.
    pub seed: Option<u64>,
}

impl Default for TcpConfig {
    fn default() -> TcpConfig {
        TcpConfig {
            rx_buffer: 256 * 1024,
            tcp_mem: TcpMem::default(),
            tx_buffer: 256 * 1024,
            mss: 1460,
            time_wait: Duration::from_secs(60),
            syn_retries: 6,
            max_retries: 15,
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(120),
            delayed_ack: Duration::from_millis(40),
            syn_backlog: 256,
            syncookies: true,
            cc: CcAlgorithm::default(),
            sack: true,
            rack: true,
            timestamps: true,
            window_scaling: true,
            checksum_offload: false,
            segmentation_offload: false,
            keepalive: None,
            challenge_ack_limit: u32::MAX,
            seed: None,
        }
    }
}
