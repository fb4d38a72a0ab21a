//! RTT estimation and retransmission timeout (RFC 6298).

use std::time::Duration;

/// Clock granularity G (RFC 6298 section 2): our clock ticks in
/// microseconds, but 1 ms keeps the variance term from collapsing on
/// LAN-speed paths.
const GRANULARITY: Duration = Duration::from_millis(1);

/// A duration in nanoseconds, `u64::MAX` for none: half an
/// `Option<Duration>`, in every connection's block (issue 15). Durations
/// round-trip exactly up to 584 years; longer ones saturate.
#[derive(Debug, Clone, Copy)]
pub(super) struct Nanos(u64);

impl Nanos {
    pub(super) const NONE: Nanos = Nanos(u64::MAX);

    pub(super) fn of(d: Duration) -> Nanos {
        Nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1))
    }

    pub(super) fn get(self) -> Option<Duration> {
        (self.0 != u64::MAX).then(|| Duration::from_nanos(self.0))
    }

    /// `Some(d)` or `None`, stored.
    pub(super) fn of_opt(d: Option<Duration>) -> Nanos {
        d.map_or(Nanos::NONE, Nanos::of)
    }

    /// The duration, for fields that always hold one.
    pub(super) fn dur(self) -> Duration {
        Duration::from_nanos(self.0)
    }
}

/// RFC 6298 estimator. Karn's rule is the caller's job: it does not sample
/// retransmitted segments unless timestamps disambiguate.
#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt: Nanos,
    rttvar: Nanos,
    min_rtt: Nanos,
    latest: Nanos,
    /// RTO before backoff: the initial RTO until the first sample.
    base_rto: Nanos,
    min_rto: Nanos,
    max_rto: Nanos,
    backoff: u32,
}

impl RttEstimator {
    /// Initial RTO 1 s per RFC 6298 2.1; callers pass min 200 ms (as Linux)
    /// and max 120 s.
    pub fn new(initial_rto: Duration, min_rto: Duration, max_rto: Duration) -> Self {
        RttEstimator {
            srtt: Nanos::NONE,
            rttvar: Nanos::NONE,
            min_rtt: Nanos::NONE,
            latest: Nanos::NONE,
            base_rto: Nanos::of(initial_rto),
            min_rto: Nanos::of(min_rto),
            max_rto: Nanos::of(max_rto.max(min_rto)),
            backoff: 0,
        }
    }

    /// RFC 6298 2.2 / 2.3 (alpha 1/8, beta 1/4, K = 4, G = 1 ms); also
    /// resets the backoff.
    pub fn sample(&mut self, rtt: Duration) {
        let (srtt, rttvar) = match (self.srtt.get(), self.rttvar.get()) {
            // 2.3: RTTVAR uses the old SRTT, so update it first.
            (Some(srtt), Some(rttvar)) => {
                let err = srtt.abs_diff(rtt);
                let rttvar = (rttvar.saturating_mul(3) / 4).saturating_add(err / 4);
                let srtt = (srtt.saturating_mul(7) / 8).saturating_add(rtt / 8);
                (srtt, rttvar)
            }
            // 2.2: first measurement.
            _ => (rtt, rtt / 2),
        };
        self.srtt = Nanos::of(srtt);
        self.rttvar = Nanos::of(rttvar);
        self.base_rto = Nanos::of(srtt.saturating_add(GRANULARITY.max(rttvar.saturating_mul(4))));
        self.min_rtt = Nanos::of(self.min_rtt.get().map_or(rtt, |m| m.min(rtt)));
        self.latest = Nanos::of(rtt);
        self.backoff = 0;
    }

    /// Current RTO including backoff, clamped to [min, max].
    /// RFC 6298 2.4 rounds the RTO up to the minimum *before* 5.5 doubles
    /// it, so a 1 ms base still backs off 200, 400, 800 ms.
    pub fn rto(&self) -> Duration {
        let factor = 1u32.checked_shl(self.backoff).unwrap_or(u32::MAX);
        self.base_rto()
            .saturating_mul(factor)
            .min(self.max_rto.dur())
    }

    /// The RTO without backoff, clamped to [min, max].
    pub fn base_rto(&self) -> Duration {
        self.base_rto
            .dur()
            .clamp(self.min_rto.dur(), self.max_rto.dur())
    }

    /// RFC 6298 5.5: double the RTO (bounded by max). The count keeps
    /// rising past the bound so callers can count retries with it.
    pub fn backoff(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
    }

    /// Forgets the backoff: the RTO is `base_rto` again.
    pub fn reset_backoff(&mut self) {
        self.backoff = 0;
    }

    /// Smoothed RTT (RFC 6298 2.2/2.3); `None` before the first sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt.get()
    }

    /// RTT variation (RFC 6298 2.2/2.3); `None` before the first sample.
    pub fn rttvar(&self) -> Option<Duration> {
        self.rttvar.get()
    }

    /// Smallest RTT sampled over the connection's life.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt.get()
    }

    /// The most recent RTT sample.
    pub fn latest(&self) -> Option<Duration> {
        self.latest.get()
    }

    /// How many times the RTO has been doubled since the last reset.
    pub fn backoff_count(&self) -> u32 {
        self.backoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimator_stays_small() {
        // In every connection's block: 120 bytes with `Duration`s.
        assert!(std::mem::size_of::<RttEstimator>() <= 64);
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn linux_like() -> RttEstimator {
        RttEstimator::new(Duration::from_secs(1), ms(200), Duration::from_secs(120))
    }

    #[test]
    fn initial_rto_before_any_sample() {
        let r = linux_like();
        assert_eq!(r.rto(), Duration::from_secs(1));
        assert_eq!(
            (r.srtt(), r.rttvar(), r.latest(), r.min_rtt()),
            (None, None, None, None)
        );
    }

    #[test]
    fn first_and_subsequent_samples_by_hand() {
        let mut r = linux_like();
        // 2.2: SRTT = 100, RTTVAR = 50, RTO = 100 + 4*50 = 300.
        r.sample(ms(100));
        assert_eq!(r.srtt(), Some(ms(100)));
        assert_eq!(r.rttvar(), Some(ms(50)));
        assert_eq!(r.rto(), ms(300));
        // 2.3: RTTVAR = 3/4*50 + 1/4*|100-200| = 62.5;
        // SRTT = 7/8*100 + 1/8*200 = 112.5; RTO = 112.5 + 250 = 362.5.
        r.sample(ms(200));
        assert_eq!(r.rttvar(), Some(Duration::from_micros(62_500)));
        assert_eq!(r.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(r.rto(), Duration::from_micros(362_500));
        // RTTVAR = 3/4*62.5 + 1/4*|112.5-40| = 65; SRTT = 98.4375 + 5 = 103.4375.
        r.sample(ms(40));
        assert_eq!(r.rttvar(), Some(ms(65)));
        assert_eq!(
            r.srtt(),
            Some(Duration::from_micros(103_437) + Duration::from_nanos(500))
        );
        assert_eq!(r.min_rtt(), Some(ms(40)));
        assert_eq!(r.latest(), Some(ms(40)));
    }

    #[test]
    fn granularity_floor_on_variance_term() {
        // Identical samples drive RTTVAR to zero; G keeps RTO > SRTT.
        let mut r = RttEstimator::new(ms(1000), Duration::ZERO, ms(60_000));
        for _ in 0..200 {
            r.sample(ms(10));
        }
        assert_eq!(r.srtt(), Some(ms(10)));
        assert_eq!(r.rto(), ms(11));
    }

    #[test]
    fn min_and_max_clamp() {
        let mut r = linux_like();
        r.sample(ms(1));
        assert_eq!(r.rto(), ms(200));
        r.sample(Duration::from_secs(500));
        assert_eq!(r.rto(), Duration::from_secs(120));
        r.sample(Duration::MAX); // saturates, no panic
        assert_eq!(r.rto(), Duration::from_secs(120));
    }

    #[test]
    fn backoff_doubles_from_the_floor_not_from_a_tiny_base() {
        let mut e = RttEstimator::new(
            Duration::from_secs(1),
            Duration::from_millis(200),
            Duration::from_secs(120),
        );
        e.sample(Duration::from_micros(50));
        assert_eq!(e.rto(), Duration::from_millis(200));
        e.backoff();
        assert_eq!(e.rto(), Duration::from_millis(400));
        e.backoff();
        assert_eq!(e.rto(), Duration::from_millis(800));
    }

    #[test]
    fn backoff_doubles_and_sample_resets_it() {
        let mut r = linux_like();
        r.sample(ms(100)); // RTO 300 ms
        r.backoff();
        assert_eq!(r.rto(), ms(600));
        r.backoff();
        assert_eq!(r.rto(), ms(1200));
        assert_eq!(r.backoff_count(), 2);
        for _ in 0..100 {
            r.backoff();
        }
        assert_eq!(r.rto(), Duration::from_secs(120));
        assert_eq!(r.backoff_count(), 102);
        r.reset_backoff();
        assert_eq!(r.rto(), ms(300));
        r.backoff();
        r.sample(ms(100));
        assert_eq!(r.backoff_count(), 0);
        assert!(r.rto() < ms(600));
    }
}
