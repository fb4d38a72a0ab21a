//! Delivery-rate estimation (draft-cheng-iccrg-delivery-rate-estimation)
//! on RACK's per-segment records: each transmission remembers how much
//! had been delivered and when; each ACK turns its most recently sent
//! delivered segment into one rate sample.

use std::time::Duration;

use super::{Rack, RsBuild, SentSeg};
use crate::stack::tcp::cc::RateSample;
use crate::stack::tcp::rtt::Nanos;
use crate::stack::time::Instant;

impl Rack {
    /// Draft 3.3 UpdateRateSample() for one delivered segment.
    pub(super) fn rate_deliver(&mut self, r: &SentSeg, now: Instant, rtt: Duration) {
        let len = r.len() as u64;
        self.delivered += len;
        self.delivered_time = now;
        self.rs_acked += len;
        let rtt = (!r.rtx).then_some(rtt);
        match &mut self.rs {
            // The sample follows the most recently sent delivered segment
            // (largest P.delivered; ties: later transmission).
            Some(b) if r.rate.delivered < b.prior_delivered => {
                b.rtt = Nanos::of_opt(min_opt(b.rtt.get(), rtt));
            }
            b => {
                let prev_rtt = b.and_then(|b| b.rtt.get());
                *b = Some(RsBuild {
                    prior_delivered: r.rate.delivered,
                    prior_time: r.rate.delivered_time,
                    send_elapsed: Nanos::of(r.xmit.saturating_since(r.rate.first_sent)),
                    app_limited: r.rate.app_limited,
                    rtt: Nanos::of_opt(min_opt(prev_rtt, rtt)),
                });
                self.first_sent_time = r.xmit;
            }
        }
    }

    /// Draft 3.3 GenerateRateSample() at the end of an ACK: None when it
    /// delivered nothing.
    pub fn take_rate_sample(&mut self) -> Option<RateSample> {
        let b = self.rs.take()?;
        let acked = std::mem::take(&mut self.rs_acked);
        // Losses found between samples (the RACK timer) go with the next.
        let lost = self.lost_bytes - self.lost_reported;
        self.lost_reported = self.lost_bytes;
        // Draft 3.3: the app-limited bubble ends once it is delivered.
        if self.app_limited_until != 0 && self.delivered > self.app_limited_until {
            self.app_limited_until = 0;
        }
        let ack_elapsed = self.delivered_time.saturating_since(b.prior_time);
        // The longer of the two phases: ACK compression cannot make the
        // rate exceed the send rate, nor a send burst the ACK rate.
        let interval = b.send_elapsed.dur().max(ack_elapsed);
        let valid = !interval.is_zero() && self.min_rtt.get().is_none_or(|m| interval >= m);
        let sample = RateSample {
            delivered: self.delivered - b.prior_delivered,
            interval: valid.then_some(interval),
            prior_delivered: b.prior_delivered,
            total_delivered: self.delivered,
            app_limited: b.app_limited,
            rtt: b.rtt.get(),
            acked: acked as usize,
            lost: lost as usize,
            // The caller's view of the connection.
            in_flight: 0,
            in_recovery: false,
        };
        if let Some(rate) = sample.rate() {
            self.last_rate = rate.min(super::NONE - 1);
        }
        Some(sample)
    }

    /// Draft 3.4: the application has nothing more to send while the
    /// window has room; samples until this flight is delivered say so.
    pub fn mark_app_limited(&mut self) {
        self.app_limited_until = (self.delivered + self.in_flight as u64).max(1);
    }
}

fn min_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::tcp::sack::Scoreboard;
    use crate::stack::tcp::seq::Seq;

    fn never(_: Instant) -> bool {
        false
    }

    fn us(n: u64) -> Instant {
        Instant::from_micros(n)
    }

    /// Ten 1000-byte segments sent 10 us apart, ACKed 100 us later each:
    /// the rate is 1000 bytes per 10 us = 100 MB/s, whatever the RTT.
    #[test]
    fn steady_flow_gives_the_send_rate() {
        let mut r = Rack::new();
        let mut last = None;
        // At each 10 us tick the due ACK is processed, then the next send.
        for t in 0..40u32 {
            if t >= 10 {
                let j = t - 10;
                r.on_cum_ack(Seq(j * 1000 + 1000), us(u64::from(t) * 10), &never);
                last = r.take_rate_sample();
                assert_eq!(last.map(|s| s.acked), Some(1000));
            }
            if t < 30 {
                r.on_send(
                    Seq(t * 1000),
                    Seq(t * 1000 + 1000),
                    Seq(t * 1000),
                    us(u64::from(t) * 10),
                );
            }
        }
        let s = last.unwrap();
        assert_eq!(s.total_delivered, 30_000);
        assert_eq!(s.rtt, Some(Duration::from_micros(100)));
        // A window (10 segments) delivered per RTT (100 us).
        let rate = s.delivered as f64 / s.interval.unwrap().as_secs_f64();
        assert!((rate - 1e8).abs() < 1e6, "{s:?} {rate}");
        assert!(!s.app_limited);
        // Nothing delivered: no sample.
        assert_eq!(r.take_rate_sample(), None);
    }

    #[test]
    fn sacks_count_and_losses_are_reported() {
        let mut r = Rack::new();
        for i in 0..4u32 {
            r.on_send(Seq(i * 100), Seq(i * 100 + 100), Seq(i * 100), us(0));
        }
        let mut sb = Scoreboard::new();
        sb.update(Seq(0), Seq(400), &[(Seq(200), Seq(400))]);
        r.on_sack(&[(Seq(200), Seq(400))], &sb, Seq(400), us(50), &never);
        r.commit(Seq(0), Seq(400), false);
        r.detect_loss(us(50), Duration::ZERO);
        let s = r.take_rate_sample().unwrap();
        assert_eq!((s.acked, s.lost, s.total_delivered), (200, 200, 200));
        // Sent in one burst: the interval is the ACK phase, 50 us, which
        // is not shorter than min_RTT.
        assert_eq!(s.interval, Some(Duration::from_micros(50)));
    }

    #[test]
    fn app_limited_marks_until_delivered() {
        let mut r = Rack::new();
        r.on_send(Seq(0), Seq(100), Seq(0), us(0));
        r.mark_app_limited();
        r.on_send(Seq(100), Seq(200), Seq(100), us(1));
        r.on_cum_ack(Seq(100), us(10), &never);
        assert!(!r.take_rate_sample().unwrap().app_limited);
        r.on_cum_ack(Seq(200), us(11), &never);
        assert!(r.take_rate_sample().unwrap().app_limited);
        assert_eq!(r.app_limited_until, 0);
    }
}
