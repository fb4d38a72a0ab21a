//! The one seeded fault model ([`FaultModel`]: per frame, drop,
//! duplicate, reorder, corrupt) and the injector the device uses it in
//! ([`FaultInjector`]: a reordered frame waits behind the next). The CLI
//! exposes it as `--loss/--dup/--reorder/--corrupt/--seed`; the
//! simulations (tests/tcp_sim, the TCP unit sims) take their decisions
//! from the same model and add only their own link timing (latency,
//! bandwidth, how long a reordered frame is held). A failing run is
//! replayed by reusing its seed.

use std::time::Duration;

use crate::stack::Instant;
use crate::stack::rng::Rng;

/// A reordered frame waits for the next frame to pass, but never longer
/// than this, so a quiet link does not strand it.
pub const REORDER_HOLD: Duration = Duration::from_millis(2);

/// Probabilities in `[0, 1]` per frame, and the seed for the decisions.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FaultConfig {
    /// Probability of dropping a frame.
    pub loss: f64,
    /// Probability of sending a frame twice.
    pub dup: f64,
    /// Probability of holding a frame back behind the next.
    pub reorder: f64,
    /// Probability of changing one byte of a frame.
    pub corrupt: f64,
    /// Seed of the decisions (the same seed, the same faults).
    pub seed: u64,
}

impl FaultConfig {
    /// True when any fault can happen (the device can skip the injector
    /// otherwise).
    pub fn is_active(&self) -> bool {
        self.loss > 0.0 || self.dup > 0.0 || self.reorder > 0.0 || self.corrupt > 0.0
    }

    /// Checks every probability is in `[0, 1]` (NaN is rejected too); the
    /// message names the CLI flag.
    pub fn validate(&self) -> Result<(), String> {
        for (flag, p) in [
            ("--loss", self.loss),
            ("--dup", self.dup),
            ("--reorder", self.reorder),
            ("--corrupt", self.corrupt),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{flag} must be a probability in [0, 1], got {p}"));
            }
        }
        Ok(())
    }
}

/// What the model decided for one frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fate {
    /// Dropped.
    pub lost: bool,
    /// Delivered twice.
    pub duplicated: bool,
    /// Delivered late, after frames sent after it.
    pub reordered: bool,
    /// Delivered with the byte at this index XORed with this non-zero
    /// mask (a transport checksum always catches a one-byte change).
    pub corrupt: Option<(usize, u8)>,
}

impl Fate {
    /// Applies `corrupt` to `frame` (a copy of the one decided on).
    pub fn damage(&self, frame: &mut [u8]) {
        if let Some((i, mask)) = self.corrupt
            && let Some(b) = frame.get_mut(i)
        {
            *b ^= mask;
        }
    }
}

/// The seeded fault model: one draw per fault kind per frame (a fault
/// whose probability is 0 draws nothing, so turning one on does not shift
/// the decisions of the others), in a sequence fixed by the seed.
pub struct FaultModel {
    config: FaultConfig,
    rng: Rng,
}

impl FaultModel {
    /// A model making the decisions of `config` from `config.seed`.
    pub fn new(config: FaultConfig) -> FaultModel {
        let rng = Rng::new(config.seed);
        FaultModel { config, rng }
    }

    /// The configuration in force.
    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// The fate of the next frame, of `len` bytes.
    pub fn decide(&mut self, len: usize) -> Fate {
        let c = &self.config;
        let (lost, duplicated, reordered) = (
            self.rng.chance(c.loss),
            self.rng.chance(c.dup),
            self.rng.chance(c.reorder),
        );
        let corrupt = (len > 0 && self.rng.chance(c.corrupt)).then(|| {
            let at = self.rng.range(0, len as u64) as usize;
            (at, self.rng.range(1, 256) as u8)
        });
        Fate {
            lost,
            duplicated,
            reordered,
            corrupt,
        }
    }

    /// The same seeded sequence, for a simulated link's own timing draws
    /// (how late a reordered frame arrives, the gap before a duplicate).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }
}

/// What the injector did so far. `passed` counts input frames that were
/// not dropped (each once, even if duplicated or held for reordering).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Frames not dropped.
    pub passed: u64,
    /// Frames dropped.
    pub dropped: u64,
    /// Frames sent twice.
    pub duplicated: u64,
    /// Frames held back behind a later one.
    pub reordered: u64,
    /// Frames with a flipped bit.
    pub corrupted: u64,
}

/// Applies a [`FaultConfig`] to a stream of frames. At most one frame is
/// held for reordering; its buffer and the corruption scratch buffer are
/// reused, so steady state does not allocate.
pub struct FaultInjector {
    model: FaultModel,
    /// Copy of the input when it must be corrupted (the input is borrowed).
    scratch: Vec<u8>,
    held: Vec<u8>,
    /// How many times to deliver the held frame (2 when it was also
    /// duplicated); meaningful only while `held_until` is set.
    held_copies: u8,
    held_until: Option<Instant>,
    stats: FaultStats,
}

impl FaultInjector {
    /// An injector making the decisions of `config`.
    pub fn new(config: FaultConfig) -> Self {
        FaultInjector {
            model: FaultModel::new(config),
            scratch: Vec::new(),
            held: Vec::new(),
            held_copies: 0,
            held_until: None,
            stats: FaultStats::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &FaultConfig {
        self.model.config()
    }

    /// Passes one frame through; `out` receives each frame to deliver now,
    /// in order (0, 1 or 2 copies of this one, plus a previously held frame
    /// that this one overtook).
    pub fn process(&mut self, now: Instant, frame: &[u8], out: &mut dyn FnMut(&[u8])) {
        self.flush_due(now, out);
        if !self.model.config().is_active() {
            self.stats.passed += 1;
            out(frame);
            return;
        }
        let fate = self.model.decide(frame.len());
        let reorder = fate.reordered;
        if fate.lost {
            self.stats.dropped += 1;
            return;
        }
        self.stats.passed += 1;
        let copies = if fate.duplicated { 2 } else { 1 };
        self.stats.duplicated += u64::from(fate.duplicated);
        let data: &[u8] = if fate.corrupt.is_some() {
            self.scratch.clear();
            self.scratch.extend_from_slice(frame);
            fate.damage(&mut self.scratch);
            self.stats.corrupted += 1;
            &self.scratch
        } else {
            frame
        };
        if reorder && self.held_until.is_none() {
            self.stats.reordered += 1;
            self.held.clear();
            self.held.extend_from_slice(data);
            self.held_copies = copies;
            self.held_until = Some(now + REORDER_HOLD);
            return;
        }
        for _ in 0..copies {
            out(data);
        }
        // This frame has now overtaken the held one: release it.
        self.release_held(out);
    }

    /// Releases the held frame if its hold time has run out.
    pub fn flush_due(&mut self, now: Instant, out: &mut dyn FnMut(&[u8])) {
        if self.held_until.is_some_and(|t| now >= t) {
            self.release_held(out);
        }
    }

    /// When `flush_due` next has work to do (`None` if nothing is held).
    pub fn poll_at(&self) -> Option<Instant> {
        self.held_until
    }

    /// What it did so far.
    pub fn stats(&self) -> FaultStats {
        self.stats
    }

    fn release_held(&mut self, out: &mut dyn FnMut(&[u8])) {
        if self.held_until.take().is_some() {
            for _ in 0..self.held_copies {
                out(&self.held);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(i: u32) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[..4].copy_from_slice(&i.to_be_bytes());
        f
    }

    /// Runs `n` numbered frames 1 ms apart and returns everything delivered.
    fn run(inj: &mut FaultInjector, n: u32) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        for i in 0..n {
            let now = Instant::from_millis(u64::from(i));
            inj.process(now, &frame(i), &mut |f| got.push(f.to_vec()));
        }
        got
    }

    fn cfg(loss: f64, dup: f64, reorder: f64, corrupt: f64, seed: u64) -> FaultConfig {
        FaultConfig {
            loss,
            dup,
            reorder,
            corrupt,
            seed,
        }
    }

    #[test]
    fn same_seed_same_decisions_other_seed_differs() {
        let c = cfg(0.2, 0.2, 0.2, 0.2, 42);
        let a = run(&mut FaultInjector::new(c), 500);
        let b = run(&mut FaultInjector::new(c), 500);
        let d = run(&mut FaultInjector::new(FaultConfig { seed: 43, ..c }), 500);
        assert_eq!(a, b);
        assert_ne!(a, d);
    }

    #[test]
    fn loss_rate_is_close_to_configured() {
        let mut inj = FaultInjector::new(cfg(0.3, 0.0, 0.0, 0.0, 7));
        let got = run(&mut inj, 10_000);
        let s = inj.stats();
        assert!((2700..=3300).contains(&s.dropped), "{s:?}");
        assert_eq!(s.passed + s.dropped, 10_000);
        assert_eq!(got.len() as u64, s.passed);
    }

    #[test]
    fn dup_delivers_two_identical_copies() {
        let mut inj = FaultInjector::new(cfg(0.0, 1.0, 0.0, 0.0, 1));
        let mut got = Vec::new();
        inj.process(Instant::ZERO, &frame(9), &mut |f| got.push(f.to_vec()));
        assert_eq!(got, vec![frame(9), frame(9)]);
        assert_eq!(inj.stats().duplicated, 1);
    }

    #[test]
    fn reorder_swaps_with_the_next_frame() {
        let mut inj = FaultInjector::new(cfg(0.0, 0.0, 1.0, 0.0, 1));
        let mut got = Vec::new();
        inj.process(Instant::ZERO, &frame(1), &mut |f| got.push(f.to_vec()));
        assert!(got.is_empty(), "first frame must be held");
        assert_eq!(inj.poll_at(), Some(Instant::ZERO + REORDER_HOLD));
        // Only one frame can be held, so frame 2 passes and releases frame 1.
        inj.process(Instant::from_micros(10), &frame(2), &mut |f| {
            got.push(f.to_vec())
        });
        assert_eq!(got, vec![frame(2), frame(1)]);
        assert_eq!(inj.poll_at(), None);
        assert_eq!(inj.stats().reordered, 1);
    }

    #[test]
    fn held_frame_is_released_by_flush_due_after_hold_time() {
        let mut inj = FaultInjector::new(cfg(0.0, 0.0, 1.0, 0.0, 1));
        let mut got = Vec::new();
        let t0 = Instant::from_millis(100);
        inj.process(t0, &frame(5), &mut |f| got.push(f.to_vec()));
        inj.flush_due(t0 + Duration::from_micros(1999), &mut |f| {
            got.push(f.to_vec())
        });
        assert!(got.is_empty(), "released before the hold time ran out");
        inj.flush_due(t0 + REORDER_HOLD, &mut |f| got.push(f.to_vec()));
        assert_eq!(got, vec![frame(5)]);
        assert_eq!(inj.poll_at(), None);
    }

    #[test]
    fn corrupt_changes_exactly_one_byte() {
        let mut inj = FaultInjector::new(cfg(0.0, 0.0, 0.0, 1.0, 3));
        for i in 0..200 {
            let input = frame(i);
            let mut got = Vec::new();
            inj.process(Instant::ZERO, &input, &mut |f| got.push(f.to_vec()));
            assert_eq!(got.len(), 1);
            let changed = input.iter().zip(&got[0]).filter(|(a, b)| a != b).count();
            assert_eq!(changed, 1, "frame {i}");
        }
        assert_eq!(inj.stats().corrupted, 200);
    }

    #[test]
    fn zero_config_passes_everything_unchanged() {
        let mut inj = FaultInjector::new(FaultConfig::default());
        assert!(!inj.config().is_active());
        let got = run(&mut inj, 1000);
        assert_eq!(got, (0..1000).map(frame).collect::<Vec<_>>());
        let s = inj.stats();
        assert_eq!(
            s,
            FaultStats {
                passed: 1000,
                ..FaultStats::default()
            }
        );
        assert_eq!(inj.poll_at(), None);
    }

    #[test]
    fn mixed_faults_conserve_frames() {
        // Every input frame is either dropped or delivered (1 + dup) times,
        // once the held frame is flushed at the end.
        let mut inj = FaultInjector::new(cfg(0.1, 0.1, 0.3, 0.1, 99));
        let mut got = run(&mut inj, 5000);
        inj.flush_due(Instant::from_secs(60), &mut |f| got.push(f.to_vec()));
        let s = inj.stats();
        assert_eq!(s.passed + s.dropped, 5000);
        assert_eq!(got.len() as u64, s.passed + s.duplicated);
        assert!(s.reordered > 1000 && s.corrupted > 300, "{s:?}");
    }

    #[test]
    fn validate_rejects_out_of_range_and_names_the_flag() {
        assert!(FaultConfig::default().validate().is_ok());
        assert!(cfg(1.0, 0.0, 0.5, 0.0, 0).validate().is_ok());
        let e = cfg(0.0, 1.5, 0.0, 0.0, 0).validate().unwrap_err();
        assert!(e.contains("--dup") && !e.contains('\n'), "{e}");
        let e = cfg(0.0, 0.0, 0.0, -0.1, 0).validate().unwrap_err();
        assert!(e.contains("--corrupt"), "{e}");
        assert!(
            cfg(f64::NAN, 0.0, 0.0, 0.0, 0)
                .validate()
                .unwrap_err()
                .contains("--loss")
        );
        assert!(cfg(0.0, 0.0, 0.01, 0.0, 0).is_active());
    }
}
