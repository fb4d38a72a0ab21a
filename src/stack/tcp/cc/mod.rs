//! Congestion control (RFC 5681, RFC 9438), one file per algorithm.

pub mod cubic;
pub mod reno;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::stack::time::Instant;

/// RFC 6928 initial window in segments.
pub const INITIAL_WINDOW_SEGMENTS: usize = 10;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum CcAlgorithm {
    Reno,
    #[default]
    Cubic,
}

impl FromStr for CcAlgorithm {
    type Err = String;
    /// "reno" | "newreno" | "cubic"; the error lists the choices.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        todo!()
    }
}

impl fmt::Display for CcAlgorithm {
    /// "reno" / "cubic".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!()
    }
}

pub trait CongestionControl: Send + std::fmt::Debug {
    fn name(&self) -> &'static str;
    /// Congestion window in bytes.
    fn cwnd(&self) -> usize;
    /// Slow-start threshold in bytes (usize::MAX initially).
    fn ssthresh(&self) -> usize;
    fn in_slow_start(&self) -> bool;
    /// New data cumulatively ACKed outside loss recovery. `bytes_in_flight`
    /// before this ACK; `rtt` the latest smoothed RTT if any. Slow start
    /// with ABC (RFC 3465, L = 2*SMSS), congestion avoidance per algorithm.
    /// Do not grow when the sender was application-limited (`app_limited`).
    fn on_ack(
        &mut self,
        now: Instant,
        acked: usize,
        bytes_in_flight: usize,
        rtt: Option<Duration>,
        app_limited: bool,
    );
    /// Loss detected by dupacks/SACK (entering fast recovery): set ssthresh
    /// (Reno: max(flight/2, 2*SMSS), RFC 5681 eq. 4; CUBIC: beta 0.7 with
    /// fast convergence, RFC 9438 4.6/4.7) and cwnd = ssthresh.
    fn on_congestion_event(&mut self, now: Instant, bytes_in_flight: usize);
    /// RTO fired: ssthresh as on a congestion event (once per loss episode
    /// is the caller's concern), cwnd = 1 SMSS (RFC 5681 3.1 loss window).
    fn on_retransmission_timeout(&mut self, now: Instant, bytes_in_flight: usize);
    /// Leaving fast recovery (full ACK): cwnd = ssthresh (RFC 6582 / 6675).
    fn on_recovery_exit(&mut self, now: Instant);
    fn set_mss(&mut self, mss: usize);
}

/// Builds the controller for `algorithm`.
pub fn new_congestion_control(
    algorithm: CcAlgorithm,
    mss: usize,
    now: Instant,
) -> Box<dyn CongestionControl> {
    todo!()
}
