//! Congestion control (RFC 5681, RFC 9438), one file per algorithm.

pub mod bbr;
pub mod cubic;
pub mod reno;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::seq::Seq;
use crate::stack::time::Instant;

/// RFC 6928 initial window in segments.
pub const INITIAL_WINDOW_SEGMENTS: usize = 10;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
/// Which congestion control a new connection uses (`--cc`); CUBIC by
/// default, as on Linux.
pub enum CcAlgorithm {
    /// NewReno (RFC 5681, RFC 6582): halve on loss, one segment per RTT in
    /// congestion avoidance.
    Reno,
    #[default]
    /// CUBIC (RFC 9438): Linux's default.
    Cubic,
    /// BBR v1: rate from a bandwidth and min-RTT model, not from loss.
    Bbr,
}

impl FromStr for CcAlgorithm {
    type Err = String;
    /// "reno" | "newreno" | "cubic" | "bbr" (any case); the error lists
    /// the choices.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "reno" | "newreno" => Ok(CcAlgorithm::Reno),
            "cubic" => Ok(CcAlgorithm::Cubic),
            "bbr" => Ok(CcAlgorithm::Bbr),
            _ => Err(format!(
                "unknown congestion control {s:?}: expected one of reno, newreno, cubic, bbr"
            )),
        }
    }
}

impl fmt::Display for CcAlgorithm {
    /// "reno" / "cubic" / "bbr".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CcAlgorithm::Reno => "reno",
            CcAlgorithm::Cubic => "cubic",
            CcAlgorithm::Bbr => "bbr",
        })
    }
}

/// A congestion controller: the sender tells it about ACKs, losses and
/// timeouts, and sends no more than `cwnd` bytes in flight.
pub trait CongestionControl: Send + std::fmt::Debug {
    /// The algorithm's name as `--cc` spells it (e.g. `"cubic"`).
    fn name(&self) -> &'static str;
    /// Congestion window in bytes.
    fn cwnd(&self) -> usize;
    /// Slow-start threshold in bytes (usize::MAX initially).
    fn ssthresh(&self) -> usize;
    /// Whether cwnd < ssthresh (RFC 5681 3.1).
    fn in_slow_start(&self) -> bool;
    /// New data cumulatively ACKed outside loss recovery. `bytes_in_flight`
    /// before this ACK; `rtt` the latest smoothed RTT if any. Slow start
    /// with ABC (RFC 3465, L = 2*SMSS), congestion avoidance per algorithm.
    /// Do not grow when cwnd did not limit the sender (`app_limited`: the
    /// application or the peer's window did; see `CwndUse`).
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
    /// A further RTO in the same loss episode: cwnd = 1 SMSS again (RFC
    /// 5681 3.1: on every timeout), ssthresh held (eq. 4: the segment was
    /// already retransmitted).
    fn on_repeated_timeout(&mut self, now: Instant);
    /// Leaving fast recovery (full ACK): cwnd = ssthresh (RFC 6582 / 6675).
    fn on_recovery_exit(&mut self, now: Instant);
    /// The connection's MSS changed (e.g. after the handshake); windows kept in
    /// segments follow it.
    fn set_mss(&mut self, mss: usize);
    /// Whether the controller wants `on_rate_sample` (the sender then
    /// keeps per-segment records even without RACK).
    fn wants_rate_samples(&self) -> bool {
        false
    }
    /// One delivery-rate sample per ACK that delivered data, in or out
    /// of recovery (draft-cheng-iccrg-delivery-rate-estimation).
    fn on_rate_sample(&mut self, _now: Instant, _rs: &RateSample) {}
    /// Pacing rate in bytes per second, if the controller paces.
    fn pacing_rate(&self) -> Option<u64> {
        None
    }
    /// The algorithm's phase for `ss -i` and the web page: slow start or
    /// congestion avoidance (RFC 5681 3.1) unless the algorithm says more.
    fn phase(&self) -> &'static str {
        if self.in_slow_start() {
            "slow-start"
        } else {
            "congestion-avoidance"
        }
    }
}

/// What one ACK delivered (draft-cheng-iccrg-delivery-rate-estimation
/// 3.3 rate sample, plus the connection state a model-based controller
/// needs alongside it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSample {
    /// Bytes delivered over `interval`.
    pub delivered: u64,
    /// None when shorter than min_RTT (draft 3.3: ACK compression, not a
    /// rate) or zero.
    pub interval: Option<Duration>,
    /// C.delivered when the sampled segment was sent (round counting).
    pub prior_delivered: u64,
    /// C.delivered now.
    pub total_delivered: u64,
    /// The sampled segment was sent while the application was the limit.
    pub app_limited: bool,
    /// Shortest unambiguous (never retransmitted) RTT among this ACK's
    /// deliveries.
    pub rtt: Option<Duration>,
    /// Bytes ACKed or SACKed by this ACK.
    pub acked: usize,
    /// Bytes newly marked lost since the previous sample.
    pub lost: usize,
    /// Bytes in flight (pipe) after this ACK.
    pub in_flight: usize,
    /// The sender is in loss recovery (fast or after a timeout).
    pub in_recovery: bool,
}

impl RateSample {
    /// Delivery rate in bytes per second, when the sample is valid.
    pub fn rate(&self) -> Option<u64> {
        let i = self.interval?.as_nanos();
        Some((u128::from(self.delivered) * 1_000_000_000 / i).min(u128::from(u64::MAX)) as u64)
    }
}

/// Whether the congestion window limited the sender (RFC 7661 2: a
/// window the sender does not fill is not validated; Linux
/// tcp_cwnd_validate and tcp_is_cwnd_limited): remembered for one window
/// of data, since the ACKs that would grow cwnd come one RTT after the
/// sends that filled it. A sender held back by the application or by the
/// peer's window does not grow cwnd.
#[derive(Clone, Copy, Debug, Default)]
pub struct CwndUse {
    /// Some send in the window being watched found cwnd full.
    limited: bool,
    /// The largest flight (bytes) in that window.
    max_flight: usize,
    /// SND.MAX when the window began: the watch restarts once SND.UNA
    /// reaches it.
    window_end: Option<Seq>,
}

impl CwndUse {
    /// After sending: `flight` bytes are in flight with congestion window
    /// `cwnd`; cwnd is full when one more full segment does not fit.
    pub fn on_send(&mut self, una: Seq, snd_max: Seq, flight: usize, cwnd: usize, mss: usize) {
        let limited = flight + mss > cwnd;
        let window_done = self.window_end.is_none_or(|end| una.ge(end));
        if window_done || limited || (!self.limited && flight > self.max_flight) {
            self.limited = limited;
            self.max_flight = flight;
            self.window_end = Some(snd_max);
        }
    }

    /// Whether ACKs may grow `cwnd`: cwnd limited the flight, or in slow
    /// start the flight used over half of it (cwnd may reach twice what
    /// was sent, Linux tcp_is_cwnd_limited).
    pub fn allows_growth(&self, cwnd: usize, slow_start: bool) -> bool {
        self.limited || (slow_start && cwnd < 2 * self.max_flight)
    }
}

/// Builds the controller for `algorithm`.
pub fn new_congestion_control(
    algorithm: CcAlgorithm,
    mss: usize,
    now: Instant,
) -> Box<dyn CongestionControl> {
    match algorithm {
        CcAlgorithm::Reno => Box::new(reno::Reno::new(mss, now)),
        CcAlgorithm::Cubic => Box::new(cubic::Cubic::new(mss, now)),
        CcAlgorithm::Bbr => Box::new(bbr::Bbr::new(mss, now)),
    }
}

/// Heap bytes one connection's controller takes (its boxed state).
pub fn state_bytes(algorithm: CcAlgorithm) -> usize {
    std::mem::size_of_val(&*new_congestion_control(algorithm, 1460, Instant::ZERO))
}

/// Largest congestion window either algorithm will reach: the largest
/// window TCP window scaling can express (RFC 7323 section 2.3) is 1 GiB,
/// so growing past 4 GiB buys nothing and keeps the f64 math tame.
pub(crate) const MAX_CWND: usize = u32::MAX as usize;

/// SMSS kept within what the 16-bit MSS option can announce (RFC 9293
/// section 3.2), so window arithmetic on it can never overflow.
pub(crate) fn clamp_mss(mss: usize) -> usize {
    mss.clamp(1, u16::MAX as usize)
}

/// RFC 6928 initial window: min(10*SMSS, max(2*SMSS, 14600)).
pub fn initial_window(mss: usize) -> usize {
    let mss = clamp_mss(mss);
    (INITIAL_WINDOW_SEGMENTS * mss).min((2 * mss).max(14_600))
}

/// RFC 5681 eq. 4 floor shared by both algorithms: at least 2*SMSS.
pub(crate) fn ssthresh_floor(mss: usize) -> usize {
    2 * mss
}

/// Slow start with Appropriate Byte Counting (RFC 3465 section 2.2,
/// L = 2*SMSS), never overshooting ssthresh. Returns the new cwnd.
pub(crate) fn slow_start(cwnd: usize, ssthresh: usize, acked: usize, mss: usize) -> usize {
    let inc = acked.min(2 * mss);
    cwnd.saturating_add(inc).min(ssthresh).min(MAX_CWND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        assert_eq!("reno".parse(), Ok(CcAlgorithm::Reno));
        assert_eq!("NewReno".parse(), Ok(CcAlgorithm::Reno));
        assert_eq!("cubic".parse(), Ok(CcAlgorithm::Cubic));
        assert_eq!("BBR".parse(), Ok(CcAlgorithm::Bbr));
        let err = "vegas".parse::<CcAlgorithm>().unwrap_err();
        assert!(err.contains("reno") && err.contains("bbr"), "{err}");
        assert_eq!(CcAlgorithm::Bbr.to_string(), "bbr");
        assert_eq!(CcAlgorithm::Reno.to_string(), "reno");
        assert_eq!(CcAlgorithm::default().to_string(), "cubic");
    }

    #[test]
    fn rfc6928_initial_window() {
        assert_eq!(initial_window(1460), 14_600);
        assert_eq!(initial_window(536), 5_360);
        assert_eq!(initial_window(9000), 18_000);
        assert_eq!(initial_window(0), 10);
        for alg in [CcAlgorithm::Reno, CcAlgorithm::Cubic, CcAlgorithm::Bbr] {
            let cc = new_congestion_control(alg, 1460, Instant::ZERO);
            assert_eq!(cc.name(), alg.to_string());
            assert_eq!(cc.cwnd(), 14_600);
            assert_eq!(cc.ssthresh(), usize::MAX);
            assert!(cc.in_slow_start());
        }
    }
}
