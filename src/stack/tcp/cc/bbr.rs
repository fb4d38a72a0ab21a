//! BBR v1 congestion control (draft-cardwell-iccrg-bbr-congestion-control-00;
//! Cardwell et al., "BBR: Congestion-Based Congestion Control", ACM Queue
//! 2016; Linux tcp_bbr.c as the reference behaviour).
//!
//! A model, not a reaction to loss: the bottleneck bandwidth is the
//! windowed maximum of the delivery rate over 10 round trips, the
//! propagation delay the minimum RTT over 10 s, and cwnd is twice their
//! product. Loss does not cut the window: in recovery BBR only conserves
//! packets for one round trip (cwnd = in flight + delivered), then grows
//! back towards the model's target, and restores the window on exit.
//!
//! Pacing: `pacing_rate()` reports gain * bandwidth, but the runtime does
//! not pace, so the gains of the ProbeBW cycle shape nothing on the wire;
//! the flow is cwnd-limited at 2 BDP (as Linux BBR without fq pacing).

use std::time::Duration;

use super::{CongestionControl, MAX_CWND, RateSample, initial_window};
use crate::stack::tcp::rtt::Nanos;
use crate::stack::time::Instant;

/// Startup gain 2/ln 2: the smallest that doubles the delivery rate each
/// round (draft 4.3.2.1).
const HIGH_GAIN: f64 = 2.885;
/// Drain: the inverse, to empty the queue Startup built (draft 4.3.3).
const DRAIN_GAIN: f64 = 1.0 / HIGH_GAIN;
/// ProbeBW cwnd gain (draft 4.3.4): room for delayed/aggregated ACKs.
const CWND_GAIN: f64 = 2.0;
/// ProbeBW pacing gain cycle (draft 4.3.4.3): probe, drain, cruise.
const PACING_GAINS: [f64; 8] = [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
/// Max-bandwidth filter window in round trips (draft 4.1.1.5).
const BW_WINDOW_ROUNDS: u64 = 10;
/// Min-RTT filter window (draft 4.1.2.3).
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);
/// Time spent at the ProbeRTT window (draft 4.3.5).
const PROBE_RTT_DURATION: Duration = Duration::from_millis(200);
/// The ProbeRTT window and the floor of cwnd, in segments.
const MIN_CWND_SEGS: usize = 4;
/// Startup ends after this many rounds without 25% bandwidth growth.
const FULL_BW_ROUNDS: u32 = 3;
const FULL_BW_GROWTH: f64 = 1.25;
/// Quantization allowance on top of the BDP (Linux: 3 send quanta).
const ALLOWANCE_SEGS: usize = 3;
/// ACK aggregation (Linux tcp_bbr.c, since 4.20): the excess of data
/// ACKed over what the bandwidth estimate explains is tracked over this
/// many rounds (two halves) and added to the window...
const EXTRA_ACKED_ROUNDS: u32 = 5;
/// ... at most this much time's worth of the bandwidth.
const EXTRA_ACKED_MAX: Duration = Duration::from_millis(100);
/// An ACK epoch restarts beyond this many bytes (bounds the arithmetic).
const ACK_EPOCH_RESET: u64 = 1 << 20;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
/// BBR's state machine (draft section 4.3).
pub enum Mode {
    /// Doubling the sending rate each round until the bandwidth stops growing.
    Startup,
    /// Emptying the queue that Startup built.
    Drain,
    /// Steady state: cycling the pacing gain to probe for more bandwidth.
    ProbeBw,
    /// Cutting the window to `MIN_CWND_SEGS` for a while to measure the
    /// propagation RTT afresh.
    ProbeRtt,
}

/// Windowed maximum over the last `BW_WINDOW_ROUNDS` rounds: one slot
/// per round (its largest sample), so expiry is exact and the memory
/// fixed. Kept small, as every connection has one (issue 15): an unused
/// slot is (round 0, 0 bytes/s), as a zero sample changes no maximum (no
/// `Option` tag), and a slot's round is kept modulo 2^32 (a slot 2^32
/// rounds old would pass for current: no connection lives that long).
#[derive(Clone, Debug, Default)]
pub struct MaxBwFilter {
    rounds: [u32; BW_WINDOW_ROUNDS as usize],
    bws: [u64; BW_WINDOW_ROUNDS as usize],
}

impl MaxBwFilter {
    /// A `bw` sample (bytes/s) taken in round `round`.
    pub fn update(&mut self, round: u64, bw: u64) {
        let i = (round % BW_WINDOW_ROUNDS) as usize;
        if self.rounds[i] == round as u32 {
            self.bws[i] = self.bws[i].max(bw);
        } else {
            self.rounds[i] = round as u32;
            self.bws[i] = bw;
        }
    }

    /// The maximum over rounds (round - 10, round].
    pub fn get(&self, round: u64) -> u64 {
        let now = round as u32;
        self.rounds
            .iter()
            .zip(&self.bws)
            .filter(|(r, _)| now.wrapping_sub(**r) < BW_WINDOW_ROUNDS as u32)
            .map(|(_, v)| *v)
            .max()
            .unwrap_or(0)
    }
}

/// No ProbeRTT deadline yet (a sentinel: half an `Option<Instant>`).
const UNSET: Instant = Instant::NEVER;

#[derive(Clone, Debug)]
/// BBR v1 congestion control state for one connection.
pub struct Bbr {
    mss: usize,
    cwnd: usize,
    /// The window to restore after recovery or ProbeRTT.
    prior_cwnd: usize,
    mode: Mode,
    bw: MaxBwFilter,
    /// Round trips counted by delivered data (draft 4.1.1.3).
    round: u64,
    next_round_delivered: u64,
    round_start: bool,
    min_rtt: Nanos,
    min_rtt_stamp: Instant,
    /// `UNSET` until ProbeRTT's in-flight floor is reached.
    probe_rtt_done: Instant,
    probe_rtt_round_done: bool,
    full_bw: u64,
    full_bw_count: u32,
    full_bw_reached: bool,
    cycle_idx: u8,
    cycle_stamp: Instant,
    pacing_gain: f64,
    cwnd_gain: f64,
    /// Recovery as of the previous sample: transitions are what matter.
    in_recovery: bool,
    /// First round of recovery: cwnd = in flight + delivered.
    packet_conservation: bool,
    /// ACK aggregation estimate: the epoch's start and bytes ACKed since,
    /// and the largest excess in each of the two latest windows.
    ack_epoch: Instant,
    ack_epoch_acked: u64,
    extra_acked: [u64; 2],
    extra_acked_idx: u8,
    extra_acked_rounds: u32,
}

impl Bbr {
    /// A controller for a connection of MSS `mss`, starting in Startup at `now`
    /// with the initial window (RFC 6928).
    pub fn new(mss: usize, now: Instant) -> Self {
        let mss = super::clamp_mss(mss);
        Bbr {
            mss,
            cwnd: initial_window(mss),
            prior_cwnd: 0,
            mode: Mode::Startup,
            bw: MaxBwFilter::default(),
            round: 0,
            next_round_delivered: 0,
            round_start: false,
            min_rtt: Nanos::NONE,
            min_rtt_stamp: now,
            probe_rtt_done: UNSET,
            probe_rtt_round_done: false,
            full_bw: 0,
            full_bw_count: 0,
            full_bw_reached: false,
            cycle_idx: 0,
            cycle_stamp: now,
            pacing_gain: HIGH_GAIN,
            cwnd_gain: HIGH_GAIN,
            in_recovery: false,
            packet_conservation: false,
            ack_epoch: now,
            ack_epoch_acked: 0,
            extra_acked: [0; 2],
            extra_acked_idx: 0,
            extra_acked_rounds: 0,
        }
    }

    /// The current state-machine mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// BtlBw estimate in bytes per second.
    pub fn max_bw(&self) -> u64 {
        self.bw.get(self.round)
    }

    /// The min-RTT (RTprop) estimate; `None` before the first sample.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt.get()
    }

    /// gain * BDP plus the allowance (draft 4.2.3.2 BBRInflight()); the
    /// initial window until an RTT is known.
    fn inflight_target(&self, gain: f64) -> usize {
        let Some(rtt) = self.min_rtt.get() else {
            return initial_window(self.mss);
        };
        let bdp = self.max_bw() as f64 * rtt.as_secs_f64() * gain;
        (bdp as usize)
            .saturating_add(ALLOWANCE_SEGS * self.mss)
            .min(MAX_CWND)
    }

    /// Batched or delayed ACKs deliver more than bandwidth * elapsed in
    /// a burst; without pacing the sender then idles until the burst's
    /// ACKs arrive unless the window covers that excess (Linux
    /// bbr_update_ack_aggregation()).
    fn update_ack_aggregation(&mut self, now: Instant, rs: &RateSample) {
        if rs.acked == 0 || rs.interval.is_none() {
            return;
        }
        if self.round_start {
            self.extra_acked_rounds += 1;
            if self.extra_acked_rounds >= EXTRA_ACKED_ROUNDS {
                self.extra_acked_rounds = 0;
                self.extra_acked_idx ^= 1;
                self.extra_acked[usize::from(self.extra_acked_idx)] = 0;
            }
        }
        let elapsed = now.saturating_since(self.ack_epoch);
        let mut expected = (self.max_bw() as f64 * elapsed.as_secs_f64()) as u64;
        let acked = rs.acked as u64;
        if self.ack_epoch_acked <= expected || self.ack_epoch_acked + acked >= ACK_EPOCH_RESET {
            // ACKs no faster than the estimate: a new epoch starts.
            self.ack_epoch_acked = 0;
            self.ack_epoch = now;
            expected = 0;
        }
        self.ack_epoch_acked += acked;
        let extra =
            (self.ack_epoch_acked - expected.min(self.ack_epoch_acked)).min(self.cwnd as u64);
        let slot = &mut self.extra_acked[usize::from(self.extra_acked_idx)];
        *slot = (*slot).max(extra);
    }

    /// The window's allowance for ACK aggregation, once the pipe is full.
    fn aggregation_cwnd(&self) -> usize {
        if !self.full_bw_reached {
            return 0;
        }
        let cap = (self.max_bw() as f64 * EXTRA_ACKED_MAX.as_secs_f64()) as u64;
        self.extra_acked[0].max(self.extra_acked[1]).min(cap) as usize
    }

    fn save_cwnd(&mut self) {
        self.prior_cwnd = if !self.in_recovery && self.mode != Mode::ProbeRtt {
            self.cwnd
        } else {
            self.prior_cwnd.max(self.cwnd)
        };
    }

    fn update_round(&mut self, rs: &RateSample) {
        self.round_start = rs.prior_delivered >= self.next_round_delivered;
        if self.round_start {
            self.next_round_delivered = rs.total_delivered;
            self.round += 1;
            self.packet_conservation = false;
        }
    }

    /// Draft 4.1.1.5: app-limited samples count only when they raise it.
    fn update_bw(&mut self, rs: &RateSample) {
        if let Some(rate) = rs.rate()
            && (!rs.app_limited || rate >= self.max_bw())
        {
            self.bw.update(self.round, rate);
        }
    }

    /// Draft 4.3.2.2: the pipe is full after three rounds in a row grow
    /// the bandwidth by less than 25%.
    fn check_full_bw(&mut self, rs: &RateSample) {
        if self.full_bw_reached || !self.round_start || rs.app_limited {
            return;
        }
        let bw = self.max_bw();
        if bw as f64 >= self.full_bw as f64 * FULL_BW_GROWTH {
            self.full_bw = bw;
            self.full_bw_count = 0;
            return;
        }
        self.full_bw_count += 1;
        self.full_bw_reached = self.full_bw_count >= FULL_BW_ROUNDS;
    }

    fn check_drain(&mut self, now: Instant, rs: &RateSample) {
        if self.mode == Mode::Startup && self.full_bw_reached {
            self.mode = Mode::Drain;
            self.pacing_gain = DRAIN_GAIN;
            self.cwnd_gain = HIGH_GAIN;
        }
        if self.mode == Mode::Drain && rs.in_flight <= self.inflight_target(1.0) {
            self.enter_probe_bw(now);
        }
    }

    fn enter_probe_bw(&mut self, now: Instant) {
        self.mode = Mode::ProbeBw;
        self.cwnd_gain = CWND_GAIN;
        // Draft 4.3.4.4: start at a random phase other than the drain one
        // (derived from the clock: deterministic under simulation).
        const STARTS: [u8; 7] = [0, 2, 3, 4, 5, 6, 7];
        self.cycle_idx = STARTS[(now.total_micros() % 7) as usize];
        self.cycle_stamp = now;
        self.pacing_gain = PACING_GAINS[usize::from(self.cycle_idx)];
    }

    /// Draft 4.3.4.3: a phase lasts a min_RTT; probing also waits until
    /// in flight reaches its target (or loss), draining ends once in
    /// flight is down to one BDP.
    fn update_cycle(&mut self, now: Instant, rs: &RateSample) {
        if self.mode != Mode::ProbeBw {
            return;
        }
        let full = self
            .min_rtt
            .get()
            .is_some_and(|m| now.saturating_since(self.cycle_stamp) > m);
        let gain = self.pacing_gain;
        let next = if gain > 1.0 {
            full && (rs.lost > 0 || rs.in_flight >= self.inflight_target(gain))
        } else if gain < 1.0 {
            full || rs.in_flight <= self.inflight_target(1.0)
        } else {
            full
        };
        if next {
            self.cycle_idx = (self.cycle_idx + 1) % PACING_GAINS.len() as u8;
            self.cycle_stamp = now;
            self.pacing_gain = PACING_GAINS[usize::from(self.cycle_idx)];
        }
    }

    /// Draft 4.1.2.3 and 4.3.5: the min-RTT filter, and ProbeRTT when it
    /// expired without a new minimum.
    fn update_min_rtt(&mut self, now: Instant, rs: &RateSample) {
        let expired = now.saturating_since(self.min_rtt_stamp) > MIN_RTT_WINDOW;
        if let Some(rtt) = rs.rtt
            && (self.min_rtt.get().is_none_or(|m| rtt < m) || expired)
        {
            self.min_rtt = Nanos::of(rtt);
            self.min_rtt_stamp = now;
        }
        if expired && self.mode != Mode::ProbeRtt {
            self.save_cwnd();
            self.mode = Mode::ProbeRtt;
            self.pacing_gain = 1.0;
            self.cwnd_gain = 1.0;
            self.probe_rtt_done = UNSET;
        }
        if self.mode != Mode::ProbeRtt {
            return;
        }
        match (self.probe_rtt_done != UNSET).then_some(self.probe_rtt_done) {
            None if rs.in_flight <= MIN_CWND_SEGS * self.mss => {
                self.probe_rtt_done = now + PROBE_RTT_DURATION;
                self.probe_rtt_round_done = false;
                self.next_round_delivered = rs.total_delivered;
            }
            None => {}
            Some(done) => {
                self.probe_rtt_round_done |= self.round_start;
                if self.probe_rtt_round_done && now >= done {
                    self.min_rtt_stamp = now;
                    self.cwnd = self.cwnd.max(self.prior_cwnd);
                    if self.full_bw_reached {
                        self.enter_probe_bw(now);
                    } else {
                        self.mode = Mode::Startup;
                        self.pacing_gain = HIGH_GAIN;
                        self.cwnd_gain = HIGH_GAIN;
                    }
                }
            }
        }
    }

    /// Draft 4.2.3: losses leave the network; the first round of recovery
    /// conserves packets; otherwise grow by what was delivered towards
    /// cwnd_gain * BDP.
    fn set_cwnd(&mut self, rs: &RateSample) {
        let floor = MIN_CWND_SEGS * self.mss;
        if rs.lost > 0 {
            self.cwnd = self.cwnd.saturating_sub(rs.lost).max(self.mss);
        }
        if rs.in_recovery && !self.in_recovery {
            // Entering recovery: one round of packet conservation, the
            // round starting now.
            self.packet_conservation = true;
            self.next_round_delivered = rs.total_delivered;
            self.cwnd = rs.in_flight + rs.acked;
        } else if !rs.in_recovery && self.in_recovery {
            self.cwnd = self.cwnd.max(self.prior_cwnd);
            self.packet_conservation = false;
        }
        self.in_recovery = rs.in_recovery;
        if self.packet_conservation {
            self.cwnd = self.cwnd.max(rs.in_flight + rs.acked);
        } else {
            let target = self
                .inflight_target(self.cwnd_gain)
                .saturating_add(self.aggregation_cwnd());
            if self.full_bw_reached {
                self.cwnd = (self.cwnd + rs.acked).min(target);
            } else if self.cwnd < target || rs.total_delivered < initial_window(self.mss) as u64 {
                self.cwnd += rs.acked;
            }
        }
        self.cwnd = self.cwnd.max(floor).min(MAX_CWND);
        if self.mode == Mode::ProbeRtt {
            self.cwnd = self.cwnd.min(floor);
        }
    }
}

impl CongestionControl for Bbr {
    fn name(&self) -> &'static str {
        "bbr"
    }

    /// The state machine's mode (draft section 4.3).
    fn phase(&self) -> &'static str {
        match self.mode {
            Mode::Startup => "startup",
            Mode::Drain => "drain",
            Mode::ProbeBw => "probe-bw",
            Mode::ProbeRtt => "probe-rtt",
        }
    }

    fn cwnd(&self) -> usize {
        self.cwnd
    }

    /// BBR keeps no slow-start threshold.
    fn ssthresh(&self) -> usize {
        usize::MAX
    }

    fn in_slow_start(&self) -> bool {
        self.mode == Mode::Startup
    }

    /// Everything happens per rate sample.
    fn on_ack(&mut self, _: Instant, _: usize, _: usize, _: Option<Duration>, _: bool) {}

    /// No multiplicative decrease: remember the window for the end of
    /// recovery (the conservation itself starts with the next sample).
    fn on_congestion_event(&mut self, _now: Instant, _bytes_in_flight: usize) {
        self.save_cwnd();
    }

    /// Each further expiry: one segment again (the prior window stays
    /// saved from the first).
    fn on_repeated_timeout(&mut self, _now: Instant) {
        self.cwnd = self.mss;
    }

    /// As Linux after an RTO: one segment, growth by delivery from there
    /// (packet conservation, then towards the target), the prior window
    /// restored when recovery ends; the timeout also ends a round.
    fn on_retransmission_timeout(&mut self, _now: Instant, _bytes_in_flight: usize) {
        self.save_cwnd();
        self.cwnd = self.mss;
        self.full_bw = 0;
    }

    /// Handled by the `in_recovery` transition of the next sample.
    fn on_recovery_exit(&mut self, _now: Instant) {}

    fn set_mss(&mut self, mss: usize) {
        let mss = super::clamp_mss(mss);
        if self.round == 0 {
            self.cwnd = initial_window(mss);
        }
        self.mss = mss;
    }

    fn wants_rate_samples(&self) -> bool {
        true
    }

    /// Draft 4.1 / Linux bbr_main(): update the model, then the window.
    fn on_rate_sample(&mut self, now: Instant, rs: &RateSample) {
        self.update_round(rs);
        self.update_bw(rs);
        self.update_ack_aggregation(now, rs);
        self.update_cycle(now, rs);
        self.check_full_bw(rs);
        self.check_drain(now, rs);
        self.update_min_rtt(now, rs);
        self.set_cwnd(rs);
    }

    fn pacing_rate(&self) -> Option<u64> {
        let bw = self.max_bw();
        (bw > 0).then_some((bw as f64 * self.pacing_gain) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;

    /// A sample that starts a new round: `bw` bytes/s over one 100 us RTT.
    fn round(b: &mut Bbr, now: Instant, bw: u64, rtt_us: u64, in_flight: usize) {
        let rtt = Duration::from_micros(rtt_us);
        let delivered = bw * rtt_us / 1_000_000;
        let prior = b.next_round_delivered;
        let rs = RateSample {
            delivered,
            interval: Some(rtt),
            prior_delivered: prior,
            total_delivered: prior + delivered,
            app_limited: false,
            rtt: Some(rtt),
            acked: MSS,
            lost: 0,
            in_flight,
            in_recovery: false,
        };
        b.on_rate_sample(now, &rs);
    }

    #[test]
    fn max_filter_forgets_after_ten_rounds() {
        let mut f = MaxBwFilter::default();
        f.update(5, 100);
        f.update(5, 70);
        for r in 6..=20 {
            f.update(r, 50);
            let want = if r < 15 { 100 } else { 50 };
            assert_eq!(f.get(r), want, "round {r}");
        }
        f.update(21, 80);
        assert_eq!(f.get(21), 80);
        assert_eq!(f.get(31), 0);
    }

    #[test]
    fn startup_exits_after_three_flat_rounds_then_drains() {
        let mut b = Bbr::new(MSS, Instant::ZERO);
        let mut t = 0;
        let mut bw = 10_000_000u64;
        // Doubling every round: stays in Startup.
        for _ in 0..6 {
            t += 100;
            round(&mut b, Instant::from_micros(t), bw, 100, 10 * MSS);
            bw *= 2;
            assert_eq!(b.mode(), Mode::Startup);
        }
        // Growth under 25% of the last full_bw: Startup ends on the third
        // such round.
        let flat = bw / 2;
        for i in 1..=3 {
            t += 100;
            round(
                &mut b,
                Instant::from_micros(t),
                flat + flat / 20 * i,
                100,
                1000 * MSS,
            );
            let want = if i < 3 { Mode::Startup } else { Mode::Drain };
            assert_eq!(b.mode(), want, "flat round {i}");
        }
        assert!(!b.in_slow_start());
        // Drain ends once in flight is down to one BDP.
        t += 100;
        round(&mut b, Instant::from_micros(t), flat, 100, 2 * MSS);
        assert_eq!(b.mode(), Mode::ProbeBw);
        let bdp = b.max_bw() as f64 * 100e-6;
        let target = (2.0 * bdp) as usize + ALLOWANCE_SEGS * MSS;
        assert_eq!(b.inflight_target(b.cwnd_gain), target);
    }

    /// ACKs arriving in bursts (the stack sends in batches, the peer
    /// ACKs them together) widen the window beyond 2 BDP by the excess.
    #[test]
    fn ack_bursts_add_to_the_window() {
        let mut b = Bbr::new(MSS, Instant::ZERO);
        let mut t = 0;
        // 100 MB/s over 100 us: BDP 10 segments; flat from the start.
        for _ in 0..8 {
            t += 100;
            round(&mut b, Instant::from_micros(t), 100_000_000, 100, 2 * MSS);
        }
        assert_eq!(b.mode(), Mode::ProbeBw);
        let plain = b.inflight_target(CWND_GAIN);
        let before = b.aggregation_cwnd();
        assert!(before <= 2 * MSS, "{before}");
        // 40 segments ACKed within 1 us, where the estimate explains 0.1.
        t += 100;
        for i in 0..4 {
            let rs = RateSample {
                delivered: 10 * MSS as u64,
                interval: Some(Duration::from_micros(100)),
                prior_delivered: 0,
                total_delivered: b.next_round_delivered + 1,
                app_limited: false,
                rtt: Some(Duration::from_micros(100)),
                acked: 10 * MSS,
                lost: 0,
                in_flight: 2 * MSS,
                in_recovery: false,
            };
            b.on_rate_sample(Instant::from_micros(t) + Duration::from_nanos(i * 250), &rs);
        }
        let extra = b.aggregation_cwnd();
        assert!(extra >= before + 38 * MSS, "{extra}");
        assert!(b.cwnd() > plain + 30 * MSS, "{} vs {plain}", b.cwnd());
    }

    #[test]
    fn probe_rtt_after_ten_seconds_without_a_new_min() {
        let mut b = Bbr::new(MSS, Instant::ZERO);
        round(&mut b, Instant::from_micros(100), 10_000_000, 100, 10 * MSS);
        assert_eq!(b.min_rtt(), Some(Duration::from_micros(100)));
        // Longer RTTs for 10 s: the minimum holds, no ProbeRTT.
        let mut t = Duration::from_micros(100);
        while t < Duration::from_secs(10) {
            t += Duration::from_millis(50);
            round(&mut b, Instant::ZERO + t, 10_000_000, 150, 40 * MSS);
            assert_eq!(b.min_rtt(), Some(Duration::from_micros(100)));
            assert_ne!(b.mode(), Mode::ProbeRtt);
        }
        let cwnd_before = b.cwnd();
        assert!(cwnd_before > 4 * MSS);
        t += Duration::from_millis(50);
        round(&mut b, Instant::ZERO + t, 10_000_000, 150, 40 * MSS);
        assert_eq!(b.mode(), Mode::ProbeRtt);
        // The expired filter takes the new sample.
        assert_eq!(b.min_rtt(), Some(Duration::from_micros(150)));
        assert_eq!(b.cwnd(), 4 * MSS);
        // In flight down to 4 segments: 200 ms and a round, then back.
        t += Duration::from_millis(1);
        round(&mut b, Instant::ZERO + t, 10_000_000, 150, 4 * MSS);
        assert_eq!(b.mode(), Mode::ProbeRtt);
        t += Duration::from_millis(100);
        round(&mut b, Instant::ZERO + t, 10_000_000, 150, 4 * MSS);
        assert_eq!(b.mode(), Mode::ProbeRtt);
        t += Duration::from_millis(101);
        round(&mut b, Instant::ZERO + t, 10_000_000, 150, 4 * MSS);
        assert_ne!(b.mode(), Mode::ProbeRtt);
        assert!(b.cwnd() >= cwnd_before, "{} < {cwnd_before}", b.cwnd());
    }

    #[test]
    fn loss_recovery_conserves_then_restores() {
        let mut b = Bbr::new(MSS, Instant::ZERO);
        for i in 1..=20 {
            round(
                &mut b,
                Instant::from_micros(i * 100),
                100_000_000,
                100,
                30 * MSS,
            );
        }
        let before = b.cwnd();
        b.on_congestion_event(Instant::from_micros(2100), 30 * MSS);
        // No multiplicative decrease.
        assert_eq!(b.cwnd(), before);
        let mut rs = RateSample {
            delivered: MSS as u64,
            interval: None,
            prior_delivered: 0,
            total_delivered: b.next_round_delivered + 1,
            app_limited: false,
            rtt: None,
            acked: MSS,
            lost: 2 * MSS,
            in_flight: before - 3 * MSS,
            in_recovery: true,
        };
        b.on_rate_sample(Instant::from_micros(2150), &rs);
        assert_eq!(b.cwnd(), before - 2 * MSS);
        rs.in_recovery = false;
        rs.lost = 0;
        b.on_rate_sample(Instant::from_micros(2200), &rs);
        assert!(b.cwnd() >= before);
    }
}
