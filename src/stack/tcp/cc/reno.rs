//! NewReno congestion control (RFC 5681, RFC 6582, ABC per RFC 3465).

use std::time::Duration;

use super::{CongestionControl, MAX_CWND, initial_window, slow_start, ssthresh_floor};
use crate::stack::time::Instant;

/// NewReno: Reno window arithmetic; NewReno's partial-ACK handling lives
/// in the engine's recovery logic.
#[derive(Debug, Clone)]
pub struct Reno {
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    /// RFC 3465 section 2.1 byte counter for congestion avoidance.
    bytes_acked: usize,
    /// Still at the initial window: `set_mss` may recompute it.
    initial: bool,
}

impl Reno {
    /// A controller for a connection of MSS `mss`, in slow start with the
    /// initial window (RFC 6928).
    pub fn new(mss: usize, _now: Instant) -> Self {
        let mss = super::clamp_mss(mss);
        Reno {
            mss,
            cwnd: initial_window(mss),
            ssthresh: usize::MAX,
            bytes_acked: 0,
            initial: true,
        }
    }
}

impl CongestionControl for Reno {
    fn name(&self) -> &'static str {
        "reno"
    }

    fn cwnd(&self) -> usize {
        self.cwnd
    }

    fn ssthresh(&self) -> usize {
        self.ssthresh
    }

    fn in_slow_start(&self) -> bool {
        self.cwnd < self.ssthresh
    }

    fn on_ack(
        &mut self,
        _now: Instant,
        acked: usize,
        _bytes_in_flight: usize,
        _rtt: Option<Duration>,
        app_limited: bool,
    ) {
        // RFC 7661 spirit: an unused window has not been validated.
        if app_limited || acked == 0 {
            return;
        }
        self.initial = false;
        if self.in_slow_start() {
            self.cwnd = slow_start(self.cwnd, self.ssthresh, acked, self.mss);
            return;
        }
        // RFC 3465 2.1 / RFC 5681 3.1: one SMSS per cwnd of ACKed bytes.
        self.bytes_acked = self.bytes_acked.saturating_add(acked);
        if self.bytes_acked >= self.cwnd {
            self.bytes_acked = (self.bytes_acked - self.cwnd).min(self.cwnd);
            self.cwnd = (self.cwnd + self.mss).min(MAX_CWND);
        }
    }

    fn on_congestion_event(&mut self, _now: Instant, bytes_in_flight: usize) {
        // RFC 5681 eq. 4; cwnd = ssthresh as RFC 6675 recovery starts.
        self.ssthresh = (bytes_in_flight / 2).clamp(ssthresh_floor(self.mss), MAX_CWND);
        self.cwnd = self.ssthresh;
        self.bytes_acked = 0;
        self.initial = false;
    }

    fn on_repeated_timeout(&mut self, _now: Instant) {
        self.cwnd = self.mss;
    }

    fn on_retransmission_timeout(&mut self, now: Instant, bytes_in_flight: usize) {
        self.on_congestion_event(now, bytes_in_flight);
        // RFC 5681 3.1: loss window of one segment.
        self.cwnd = self.mss;
    }

    fn on_recovery_exit(&mut self, _now: Instant) {
        // RFC 6582 3.2 step 3 option 2; no-op if never reduced.
        if self.ssthresh != usize::MAX {
            self.cwnd = self.ssthresh;
        }
        self.bytes_acked = 0;
    }

    /// Before any growth the initial window is recomputed for the new
    /// SMSS; afterwards cwnd keeps its bytes (at least one segment).
    fn set_mss(&mut self, mss: usize) {
        self.mss = super::clamp_mss(mss);
        if self.initial {
            self.cwnd = initial_window(self.mss);
        } else {
            self.cwnd = self.cwnd.max(self.mss);
            if self.ssthresh != usize::MAX {
                self.ssthresh = self.ssthresh.max(ssthresh_floor(self.mss));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;
    const T0: Instant = Instant::ZERO;

    fn ack(r: &mut Reno, acked: usize) {
        r.on_ack(T0, acked, r.cwnd, Some(Duration::from_millis(50)), false);
    }

    #[test]
    fn slow_start_with_abc_limit() {
        let mut r = Reno::new(MSS, T0);
        assert_eq!(r.cwnd(), 10 * MSS);
        ack(&mut r, 10 * MSS); // one stretch ACK: at most L = 2*SMSS
        assert_eq!(r.cwnd(), 12 * MSS);
        ack(&mut r, 500);
        assert_eq!(r.cwnd(), 12 * MSS + 500);
        r.on_ack(T0, 2 * MSS, r.cwnd, None, true); // app-limited
        assert_eq!(r.cwnd(), 12 * MSS + 500);
        assert!(r.in_slow_start());
    }

    #[test]
    fn congestion_avoidance_one_smss_per_rtt() {
        let mut r = Reno::new(MSS, T0);
        r.on_congestion_event(T0, 40 * MSS);
        assert_eq!((r.cwnd(), r.ssthresh()), (20 * MSS, 20 * MSS));
        assert!(!r.in_slow_start());
        for rtt in 0..5 {
            let start = r.cwnd();
            for _ in 0..start / MSS {
                ack(&mut r, MSS);
            }
            assert_eq!(r.cwnd(), start + MSS, "rtt {rtt}");
        }
    }

    #[test]
    fn slow_start_stops_at_ssthresh() {
        let mut r = Reno::new(MSS, T0);
        r.on_congestion_event(T0, 24 * MSS); // ssthresh 12 segments
        r.on_retransmission_timeout(T0, 24 * MSS);
        assert_eq!(r.cwnd(), MSS);
        for _ in 0..10 {
            ack(&mut r, 2 * MSS);
        }
        assert_eq!(r.cwnd(), 12 * MSS);
        assert!(!r.in_slow_start());
    }

    #[test]
    fn halving_on_congestion_event_and_floor() {
        let mut r = Reno::new(MSS, T0);
        r.on_congestion_event(T0, 30 * MSS);
        assert_eq!((r.ssthresh(), r.cwnd()), (15 * MSS, 15 * MSS));
        r.on_congestion_event(T0, 3 * MSS);
        assert_eq!((r.ssthresh(), r.cwnd()), (2 * MSS, 2 * MSS));
        r.on_retransmission_timeout(T0, 100 * MSS);
        assert_eq!((r.ssthresh(), r.cwnd()), (50 * MSS, MSS));
        r.on_recovery_exit(T0);
        assert_eq!(r.cwnd(), 50 * MSS);
        r.on_congestion_event(T0, usize::MAX); // bogus flight: bounded
        assert_eq!(r.cwnd(), MAX_CWND);
    }

    #[test]
    fn set_mss_recomputes_untouched_initial_window() {
        let mut r = Reno::new(536, T0);
        r.set_mss(1460);
        assert_eq!(r.cwnd(), 14_600);
        ack(&mut r, 1460);
        r.set_mss(9000);
        assert_eq!(r.cwnd(), 16_060);
        r.set_mss(0); // clamped, no panic
        ack(&mut r, usize::MAX);
        assert!(r.cwnd() > 16_060);
    }
}
