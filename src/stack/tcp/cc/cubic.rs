//! CUBIC congestion control (RFC 9438).

use std::time::Duration;

use super::CongestionControl;
use crate::stack::time::Instant;

/// CUBIC (RFC 9438).
#[derive(Debug, Clone)]
pub struct Cubic {
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
}

impl Cubic {
    pub fn new(mss: usize, now: Instant) -> Self {
        todo!()
    }
}

impl CongestionControl for Cubic {
    fn name(&self) -> &'static str {
        "cubic"
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
