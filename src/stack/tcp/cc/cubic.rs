//! CUBIC congestion control (RFC 9438).
//!
//! Window arithmetic runs in f64 segments as in the RFC; cwnd is kept in
//! bytes (f64) so fractional per-ACK growth is not lost to rounding.

use std::time::Duration;

use super::{CongestionControl, MAX_CWND, initial_window, slow_start, ssthresh_floor};
use crate::stack::time::Instant;

/// RFC 9438 section 5.1 constant C (segments / s^3).
const C: f64 = 0.4;
/// RFC 9438 section 4.6 multiplicative decrease factor.
const BETA: f64 = 0.7;
/// RFC 9438 section 4.3: Reno-friendly additive increase, 3(1-b)/(1+b).
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);

#[derive(Debug, Clone)]
/// CUBIC congestion control state for one connection (RFC 9438).
pub struct Cubic {
    mss: usize,
    /// Bytes.
    cwnd: f64,
    ssthresh: usize,
    /// W_max in segments: the window before the last reduction (4.7).
    w_max: f64,
    /// K in seconds (eq. 2).
    k: f64,
    /// Start of the current congestion-avoidance stage; `None` until the
    /// first ACK in congestion avoidance.
    epoch_start: Option<Instant>,
    /// W_est in segments (4.3).
    w_est: f64,
    /// cwnd in segments before the last reduction (4.3 alpha switch).
    cwnd_prior: f64,
    initial: bool,
}

impl Cubic {
    /// A controller for a connection of MSS `mss`, in slow start with the
    /// initial window (RFC 6928).
    pub fn new(mss: usize, _now: Instant) -> Self {
        let mss = super::clamp_mss(mss);
        Cubic {
            mss,
            cwnd: initial_window(mss) as f64,
            ssthresh: usize::MAX,
            w_max: 0.0,
            k: 0.0,
            epoch_start: None,
            w_est: 0.0,
            cwnd_prior: 0.0,
            initial: true,
        }
    }

    /// W_max in segments (diagnostics and tests).
    pub fn w_max(&self) -> f64 {
        self.w_max
    }

    /// K in seconds: time from the epoch start until W_cubic reaches W_max.
    pub fn k(&self) -> f64 {
        self.k
    }

    /// RFC 9438 eq. 1: W_cubic(t) = C(t-K)^3 + W_max, in segments.
    pub fn w_cubic(&self, t: f64) -> f64 {
        C * (t - self.k).powi(3) + self.w_max
    }

    fn segments(&self) -> f64 {
        self.cwnd / self.mss as f64
    }

    /// RFC 9438 eq. 2 with cwnd_epoch; when cwnd already exceeds W_max (no
    /// loss yet, or after an RTO per 4.8) the curve starts at its plateau.
    fn compute_k(&mut self, cwnd_epoch: f64) {
        if cwnd_epoch < self.w_max {
            self.k = ((self.w_max - cwnd_epoch) / C).cbrt();
        } else {
            self.k = 0.0;
            self.w_max = cwnd_epoch;
        }
    }

    fn start_epoch(&mut self, now: Instant) {
        let cwnd_epoch = self.segments();
        self.epoch_start = Some(now);
        self.compute_k(cwnd_epoch);
        self.w_est = cwnd_epoch;
    }

    /// One ACK in congestion avoidance (RFC 9438 4.2-4.5).
    fn avoid_congestion(&mut self, now: Instant, acked: usize, rtt: Option<Duration>) {
        let epoch = *self.epoch_start.get_or_insert(now);
        let t = (now - epoch).as_secs_f64();
        let rtt = rtt.map_or(0.0, |r| r.as_secs_f64());
        let cwnd = self.segments();
        let segs_acked = acked as f64 / self.mss as f64;
        // 4.3: once W_est reaches the pre-loss window, grow as Reno does.
        let alpha = if self.w_est >= self.cwnd_prior {
            1.0
        } else {
            ALPHA
        };
        self.w_est += alpha * segs_acked / cwnd;
        let new = if self.w_cubic(t) < self.w_est {
            // 4.3 Reno-friendly region.
            self.w_est.max(cwnd)
        } else {
            // 4.4 / 4.5: concave and convex regions, target bounded 4.2.
            let target = self.w_cubic(t + rtt).clamp(cwnd, 1.5 * cwnd);
            cwnd + (target - cwnd) / cwnd * segs_acked
        };
        self.cwnd = (new * self.mss as f64).min(MAX_CWND as f64);
    }

    /// Common part of 4.6 / 4.7 / 4.8: new W_max and ssthresh.
    fn reduce(&mut self, bytes_in_flight: usize) {
        let cwnd = self.segments();
        // 4.7 fast convergence: a flow losing before its old W_max
        // releases bandwidth to newcomers.
        self.w_max = if cwnd < self.w_max {
            cwnd * (1.0 + BETA) / 2.0
        } else {
            cwnd
        };
        self.cwnd_prior = cwnd;
        let ss = (bytes_in_flight as f64 * BETA) as usize;
        self.ssthresh = ss.clamp(ssthresh_floor(self.mss), MAX_CWND);
        self.epoch_start = None;
        self.initial = false;
    }
}

impl CongestionControl for Cubic {
    fn name(&self) -> &'static str {
        "cubic"
    }

    fn cwnd(&self) -> usize {
        self.cwnd as usize
    }

    fn ssthresh(&self) -> usize {
        self.ssthresh
    }

    fn in_slow_start(&self) -> bool {
        self.cwnd() < self.ssthresh
    }

    fn on_ack(
        &mut self,
        now: Instant,
        acked: usize,
        _bytes_in_flight: usize,
        rtt: Option<Duration>,
        app_limited: bool,
    ) {
        if app_limited || acked == 0 {
            return;
        }
        self.initial = false;
        if self.in_slow_start() {
            self.cwnd = slow_start(self.cwnd(), self.ssthresh, acked, self.mss) as f64;
            return;
        }
        if self.epoch_start.is_none() {
            self.start_epoch(now);
        }
        self.avoid_congestion(now, acked, rtt);
    }

    fn on_congestion_event(&mut self, _now: Instant, bytes_in_flight: usize) {
        self.reduce(bytes_in_flight);
        self.cwnd = self.ssthresh as f64;
        // K for the coming epoch (recomputed when it starts).
        self.compute_k(self.segments());
    }

    fn on_repeated_timeout(&mut self, _now: Instant) {
        self.cwnd = self.mss as f64;
    }

    fn on_retransmission_timeout(&mut self, _now: Instant, bytes_in_flight: usize) {
        self.reduce(bytes_in_flight);
        self.cwnd = self.mss as f64;
        // 4.8: the first epoch after a timeout uses K = 0 and W_max = the
        // cwnd at its start; W_est starts there too (start_epoch).
        self.w_max = 0.0;
        self.k = 0.0;
    }

    fn on_recovery_exit(&mut self, _now: Instant) {
        if self.ssthresh != usize::MAX {
            self.cwnd = self.ssthresh as f64;
        }
        self.epoch_start = None;
    }

    /// Before any growth the initial window is recomputed for the new
    /// SMSS; afterwards cwnd keeps its bytes (at least one segment).
    fn set_mss(&mut self, mss: usize) {
        let old = self.mss as f64;
        self.mss = super::clamp_mss(mss);
        // W_max, W_est and cwnd_prior are in segments of the old size.
        let scale = old / self.mss as f64;
        self.w_max *= scale;
        self.w_est *= scale;
        self.cwnd_prior *= scale;
        if self.initial {
            self.cwnd = initial_window(self.mss) as f64;
        } else {
            self.cwnd = self.cwnd.max(self.mss as f64);
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

    /// A CUBIC flow that slow-started to 100 segments and then lost.
    fn after_loss_at_100(now: Instant) -> Cubic {
        let mut c = Cubic::new(MSS, now);
        while c.cwnd() < 100 * MSS {
            c.on_ack(now, 2 * MSS, c.cwnd(), None, false);
        }
        assert_eq!(c.cwnd(), 100 * MSS);
        c.on_congestion_event(now, 100 * MSS);
        c
    }

    /// Virtual clock: each RTT, one ACK per segment, evenly spaced. Calls
    /// `probe(t, cwnd_segments)` once per RTT.
    fn run(
        c: &mut Cubic,
        now: &mut Instant,
        rtt: Duration,
        rtts: usize,
        mut probe: impl FnMut(f64, f64),
    ) {
        let start = *now;
        for _ in 0..rtts {
            let n = (c.cwnd() / MSS).max(1);
            for _ in 0..n {
                *now += rtt / n as u32;
                c.on_ack(*now, MSS, c.cwnd(), Some(rtt), false);
            }
            probe((*now - start).as_secs_f64(), c.segments());
        }
    }

    #[test]
    fn beta_reduction_and_k() {
        let c = after_loss_at_100(Instant::ZERO);
        assert_eq!(c.ssthresh(), 70 * MSS);
        assert_eq!(c.cwnd(), 70 * MSS);
        assert_eq!(c.w_max(), 100.0);
        // K = cbrt(W_max (1 - beta) / C) = cbrt(75).
        assert!((c.k() - 75f64.cbrt()).abs() < 1e-9, "{}", c.k());
        assert!((c.k() - 4.2172).abs() < 1e-3);
    }

    #[test]
    fn window_follows_w_cubic_on_virtual_clock() {
        let mut now = Instant::from_secs(10);
        let mut c = after_loss_at_100(now);
        let reference = c.clone();
        let mut checked = 0;
        // 55 RTTs: W_est (+0.53 per RTT from 70) stays below W_cubic until
        // about 5.7 s, where the Reno-friendly region would take over.
        run(&mut c, &mut now, Duration::from_millis(100), 55, |t, w| {
            if t > 0.3 {
                let want = reference.w_cubic(t);
                assert!(
                    (w - want).abs() <= 1.0,
                    "t={t:.2}: cwnd {w:.2} vs W_cubic {want:.2}"
                );
                checked += 1;
            }
        });
        assert!(checked > 50);
        // Past K = 4.2 s the window probes beyond W_max (convex region).
        assert!(c.segments() > 100.3, "{}", c.segments());
    }

    #[test]
    fn fast_convergence_lowers_w_max() {
        let now = Instant::ZERO;
        let mut c = after_loss_at_100(now);
        // Second loss below the old W_max: W_max = 70 * (1 + 0.7) / 2.
        c.on_congestion_event(now, 70 * MSS);
        assert!((c.w_max() - 59.5).abs() < 1e-9);
        assert_eq!(c.cwnd(), 49 * MSS);
        assert!((c.k() - ((59.5 - 49.0) / 0.4f64).cbrt()).abs() < 1e-9);
    }

    #[test]
    fn reno_friendly_region_takes_over_at_small_rtt() {
        let mut now = Instant::ZERO;
        let mut c = after_loss_at_100(now);
        let reference = c.clone();
        let mut w_est = 70.0;
        run(&mut c, &mut now, Duration::from_millis(1), 200, |t, w| {
            // About alpha per RTT, 1 per RTT once past cwnd_prior (4.3).
            w_est += if w_est >= 100.0 { 1.0 } else { ALPHA };
            assert!(
                (w - w_est).abs() <= 2.0,
                "t={t:.3}: cwnd {w:.2} vs W_est {w_est:.2}"
            );
        });
        assert!(c.segments() > reference.w_cubic(0.2) + 100.0);
    }

    #[test]
    fn rto_restarts_epoch_with_k_zero() {
        let mut now = Instant::ZERO;
        let mut c = after_loss_at_100(now);
        c.on_retransmission_timeout(now, 70 * MSS);
        assert_eq!((c.cwnd(), c.ssthresh()), (MSS, 49 * MSS));
        while c.in_slow_start() {
            c.on_ack(now, 2 * MSS, c.cwnd(), None, false);
        }
        assert_eq!(c.cwnd(), 49 * MSS);
        run(&mut c, &mut now, Duration::from_millis(100), 1, |_, _| {});
        assert_eq!((c.k(), c.w_max()), (0.0, 49.0));
        assert!(c.segments() > 49.0);
    }

    #[test]
    fn app_limited_and_degenerate_inputs_do_not_panic_or_grow() {
        let now = Instant::ZERO;
        let mut c = after_loss_at_100(now);
        c.on_ack(now + Duration::from_secs(5), MSS, 0, None, true);
        assert_eq!(c.cwnd(), 70 * MSS);
        // Zero RTT, huge elapsed time, huge ACK: bounded and finite.
        c.on_ack(now, usize::MAX, usize::MAX, Some(Duration::ZERO), false);
        c.on_ack(
            Instant::from_secs(1 << 40),
            usize::MAX,
            0,
            Some(Duration::MAX),
            false,
        );
        assert!(c.cwnd() <= MAX_CWND && c.cwnd() >= 70 * MSS);
        c.on_congestion_event(now, usize::MAX);
        c.on_recovery_exit(now);
        assert!(c.cwnd() <= MAX_CWND && c.segments().is_finite());
        c.set_mss(0);
        c.on_ack(now, 1, 0, None, false);
        c.set_mss(usize::MAX);
        c.on_congestion_event(now, 0);
        assert_eq!(c.cwnd(), 2 * 65_535);
        assert!(c.segments().is_finite());
    }
}
