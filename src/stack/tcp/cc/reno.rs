//! NewReno congestion control (RFC 5681, RFC 6582, ABC per RFC 3465).

use std::time::Duration;

use super::CongestionControl;
use crate::stack::time::Instant;

/// NewReno: Reno window arithmetic; NewReno's partial-ACK handling lives
/// in the engine's recovery logic.
#[derive(Debug, Clone)]
pub struct Reno {
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
}

impl Reno {
    pub fn new(mss: usize, now: Instant) -> Self {
        todo!()
    }
}

impl CongestionControl for Reno {
    fn name(&self) -> &'static str {
        "reno"
    }
    fn cwnd(&self) -> usize {
        todo!()
    }
    fn ssthresh(&self) -> usize {
        todo!()
    }
    fn in_slow_start(&self) -> bool {
        todo!()
    }
    fn on_ack(
        &mut self,
        now: Instant,
        acked: usize,
        bytes_in_flight: usize,
        rtt: Option<Duration>,
        app_limited: bool,
    ) {
        todo!()
    }
    fn on_congestion_event(&mut self, now: Instant, bytes_in_flight: usize) {
        todo!()
    }
    fn on_retransmission_timeout(&mut self, now: Instant, bytes_in_flight: usize) {
        todo!()
    }
    fn on_recovery_exit(&mut self, now: Instant) {
        todo!()
    }
    fn set_mss(&mut self, mss: usize) {
        todo!()
    }
}
