//! RTT estimation and retransmission timeout (RFC 6298).

use std::time::Duration;

/// RFC 6298 estimator. Karn's rule is the caller's job: it does not sample
/// retransmitted segments unless timestamps disambiguate.
#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Option<Duration>,
    min_rtt: Option<Duration>,
    latest: Option<Duration>,
    base_rto: Duration,
    min_rto: Duration,
    max_rto: Duration,
    backoff: u32,
}

impl RttEstimator {
    /// Initial RTO 1 s per RFC 6298 2.1; callers pass min 200 ms (as Linux)
    /// and max 120 s.
    pub fn new(initial_rto: Duration, min_rto: Duration, max_rto: Duration) -> Self {
        todo!()
    }

    /// RFC 6298 2.2 / 2.3 (alpha 1/8, beta 1/4, K = 4, G = 1 ms); also
    /// resets the backoff.
    pub fn sample(&mut self, rtt: Duration) {
        todo!()
    }

    /// Current RTO including backoff, clamped to [min, max].
    pub fn rto(&self) -> Duration {
        todo!()
    }

    /// RFC 6298 5.5: double the RTO (bounded by max).
    pub fn backoff(&mut self) {
        todo!()
    }

    pub fn reset_backoff(&mut self) {
        todo!()
    }

    pub fn srtt(&self) -> Option<Duration> {
        todo!()
    }

    pub fn rttvar(&self) -> Option<Duration> {
        todo!()
    }

    pub fn min_rtt(&self) -> Option<Duration> {
        todo!()
    }

    pub fn latest(&self) -> Option<Duration> {
        todo!()
    }

    pub fn backoff_count(&self) -> u32 {
        todo!()
    }
}
