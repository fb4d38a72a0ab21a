//! The simulation loop, stall detection, seed sweeps.

use super::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Peer {
    Ours,
    Smoltcp,
}

#[derive(Clone, Debug)]
pub(crate) struct Run {
    pub(crate) seed: u64,
    pub(crate) link: LinkConfig,
    pub(crate) peer: Peer,
    /// TCP configuration of our endpoint(s).
    pub(crate) tcp: TcpConfig,
    pub(crate) len: usize,
    /// Whether B (rather than A) opens the connection.
    pub(crate) b_connects: bool,
    /// Progress lines on stderr (for replays).
    pub(crate) verbose: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) seed: u64,
    /// Bytes A and B retransmitted (ours only; 0 for smoltcp).
    pub(crate) rtx: (u64, u64),
    pub(crate) elapsed: Duration,
    /// Longest virtual time between two deliveries of stream data while
    /// either direction was incomplete (from the first byte delivered).
    pub(crate) max_gap: Duration,
    pub(crate) iterations: u64,
    pub(crate) ab: LinkStats,
    pub(crate) ba: LinkStats,
}

/// TIME-WAIT of RFC 9293's 2*MSL (4 min): it has to outlast the peer's
/// FIN retransmissions (smoltcp's back off to 60 s apart), or a lost last
/// ACK gets the retransmitted FIN a RST. TIME-WAIT does not count as an
/// active connection, so it costs no virtual time.
pub(crate) fn sim_tcp() -> TcpConfig {
    TcpConfig {
        time_wait: Duration::from_secs(240),
        ..TcpConfig::default()
    }
}

impl Run {
    pub(crate) fn new(seed: u64, link: LinkConfig, peer: Peer) -> Run {
        Run {
            seed,
            link,
            peer,
            tcp: sim_tcp(),
            len: LEN,
            b_connects: seed % 2 == 1,
            verbose: false,
        }
    }

    /// Runs the simulation to completion; Err says why it failed, with
    /// the state of both ends and the last frames.
    pub(crate) fn run(&self, progress: &Progress) -> Result<Outcome, String> {
        let mut w = World::new(self);
        let limit = Instant::ZERO + TIME_LIMIT;
        let mut iterations = 0u64;
        // (bytes delivered both ways, when that last changed)
        let mut delivered: (usize, Option<Instant>) = (0, None);
        let mut max_gap = Duration::ZERO;
        loop {
            iterations += 1;
            w.report(progress, iterations);
            // 1. The link delivers what is due.
            w.deliver(progress, self.verbose);
            // 2. Endpoints process it, applications react, endpoints send.
            if let Err(e) = w.react() {
                return Err(self.failure(&e, &mut w, progress));
            }
            let total = w.app_a.got + w.app_b.got;
            if total != delivered.0 {
                if let Some(t) = delivered.1 {
                    max_gap = max_gap.max(w.now.saturating_since(t));
                }
                delivered = (total, (total < 2 * self.len).then_some(w.now));
            }
            if w.done() {
                break;
            }
            // 3. Jump to the next deadline (at least 1 us on, so a deadline
            // that stays in the past cannot spin at one instant).
            let Some(next) = w.next_deadline() else {
                let why = "deadlock: no deadline and nothing in flight";
                return Err(self.failure(why, &mut w, progress));
            };
            w.now = next.max(w.now + Duration::from_micros(1));
            if self.verbose && iterations.is_multiple_of(200_000) {
                w.print_progress(iterations);
            }
            if w.now > limit || iterations > ITER_LIMIT {
                let why = format!("no completion after {iterations} iterations");
                return Err(self.failure(&why, &mut w, progress));
            }
        }
        let want_a = App::expected_hash(&w.app_b.out, self.len);
        let want_b = App::expected_hash(&w.app_a.out, self.len);
        if w.app_a.hash != want_a || w.app_b.hash != want_b {
            return Err(format!("seed {}: stream hashes differ", self.seed));
        }
        Ok(Outcome {
            seed: self.seed,
            rtx: (w.a.retransmitted_bytes(), w.b.retransmitted_bytes()),
            elapsed: w.now.saturating_since(Instant::ZERO),
            max_gap,
            iterations,
            ab: w.ab.stats,
            ba: w.ba.stats,
        })
    }

    /// A failure report: the run, both ends' applications and connection
    /// states, and the last frames on the link.
    fn failure(&self, why: &str, w: &mut World, progress: &Progress) -> String {
        let (app_a, app_b) = (&w.app_a, &w.app_b);
        format!(
            "seed {} ({:?} peer, {:?}, b_connects={}): {why} at t={:.3}s\n  \
             A tapstack: sent {} got {} eof {} closed {} {}\n  \
             B {}: sent {} got {} eof {} closed {} {}\n  last frames:\n    {}",
            self.seed,
            self.peer,
            self.link,
            self.b_connects,
            w.now.total_micros() as f64 / 1e6,
            app_a.sent,
            app_a.got,
            app_a.eof,
            app_a.closed,
            w.a.state(),
            w.b.name(),
            app_b.sent,
            app_b.got,
            app_b.eof,
            app_b.closed,
            w.b.state(),
            progress
                .history
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .describe()
        )
    }
}

/// Everything one run moves: both ends, their applications, the link's
/// two directions and the virtual clock.
struct World {
    a: Ours,
    b: Box<dyn Endpoint>,
    ab: Dir,
    ba: Dir,
    app_a: App,
    app_b: App,
    buf: Vec<u8>,
    now: Instant,
}

impl World {
    /// The two ends of `run`, one listening and the other connecting.
    fn new(run: &Run) -> World {
        let seed = run.seed;
        let mut a = Ours::new(A_IP, A_MAC, seed.wrapping_mul(3) + 1, run.tcp.clone());
        let mut b: Box<dyn Endpoint> = match run.peer {
            Peer::Ours => Box::new(Ours::new(
                B_IP,
                B_MAC,
                seed.wrapping_mul(3) + 2,
                run.tcp.clone(),
            )),
            Peer::Smoltcp => Box::new(Smol::new(B_IP, B_MAC, seed.wrapping_mul(3) + 2)),
        };
        let now = Instant::ZERO;
        let local_port = 40_000 + (seed % 20_000) as u16;
        if run.b_connects {
            a.listen(now);
            b.connect(now, A_IP, local_port);
        } else {
            b.listen(now);
            a.connect(now, B_IP, local_port);
        }
        World {
            a,
            b,
            ab: Dir::new(run.link, seed ^ 0xab00_0000_0000_00ab),
            ba: Dir::new(run.link, seed ^ 0xba00_0000_0000_00ba),
            app_a: App::new(seed ^ 0xa, seed ^ 0xb, run.len),
            app_b: App::new(seed ^ 0xb, seed ^ 0xa, run.len),
            buf: vec![0u8; 64 * 1024],
            now,
        }
    }

    /// Publishes where the run is, for the stall watchdog.
    fn report(&self, progress: &Progress, iterations: u64) {
        progress.iterations.store(iterations, Ordering::Relaxed);
        progress
            .now_micros
            .store(self.now.total_micros(), Ordering::Relaxed);
        progress.got[0].store(self.app_a.got as u64, Ordering::Relaxed);
        progress.got[1].store(self.app_b.got as u64, Ordering::Relaxed);
    }

    /// Hands each end the frames the link has due for it, recording them.
    fn deliver(&mut self, progress: &Progress, verbose: bool) {
        let now = self.now;
        let record = |dir, f: &[u8]| {
            let mut h = progress.history.lock().unwrap();
            h.push(now, dir, f, verbose);
        };
        while let Some(i) = self.ab.pop_due(now) {
            let f = self.ab.frames[i].as_ref().unwrap();
            record("A>B", f);
            self.b.receive(now, f);
            self.ab.release(i);
        }
        while let Some(i) = self.ba.pop_due(now) {
            let f = self.ba.frames[i].as_ref().unwrap();
            record("B>A", f);
            self.a.receive(now, f);
            self.ba.release(i);
        }
    }

    /// Both ends process what arrived, the applications read and write,
    /// the ends send what that made.
    fn react(&mut self) -> Result<(), String> {
        self.pump();
        self.app_a.run(&mut self.a, &mut self.buf, "A")?;
        self.app_b.run(self.b.as_mut(), &mut self.buf, "B")?;
        self.pump();
        Ok(())
    }

    fn pump(&mut self) {
        let now = self.now;
        let (ab, ba) = (&mut self.ab, &mut self.ba);
        self.a.pump(now, &mut |f| ab.send(now, f));
        self.b.pump(now, &mut |f| ba.send(now, f));
    }

    /// Both applications closed and both connections gone.
    fn done(&mut self) -> bool {
        self.app_a.closed && self.app_b.closed && self.a.finished() && self.b.finished()
    }

    /// The earliest of the link's and the ends' deadlines.
    fn next_deadline(&mut self) -> Option<Instant> {
        let now = self.now;
        [
            self.ab.next_at(),
            self.ba.next_at(),
            self.a.poll_at(now),
            self.b.poll_at(now),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn print_progress(&mut self, iterations: u64) {
        eprintln!(
            "t={:.3}s it={iterations} A sent {} got {} | B sent {} got {} | A {}",
            self.now.total_micros() as f64 / 1e6,
            self.app_a.sent,
            self.app_a.got,
            self.app_b.sent,
            self.app_b.got,
            self.a.state()
        );
    }
}

/// The last frames delivered, raw (described only when a run fails), shared
/// with the watchdog so a run stuck inside the stack can still be reported.
#[derive(Default)]
pub(crate) struct History {
    pub(crate) frames: VecDeque<(Instant, &'static str, Vec<u8>)>,
    pub(crate) spare: Vec<Vec<u8>>,
}

impl History {
    pub(crate) fn push(&mut self, now: Instant, dir: &'static str, frame: &[u8], print: bool) {
        if print {
            eprintln!(
                "{:>10}us {dir} {}",
                now.total_micros(),
                describe_frame(frame)
            );
        }
        if self.frames.len() == HISTORY
            && let Some((_, _, buf)) = self.frames.pop_front()
        {
            self.spare.push(buf);
        }
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(frame);
        self.frames.push_back((now, dir, buf));
    }

    pub(crate) fn describe(&self) -> String {
        self.frames
            .iter()
            .map(|(t, dir, f)| format!("{:>10}us {dir} {}", t.total_micros(), describe_frame(f)))
            .collect::<Vec<_>>()
            .join("\n    ")
    }
}

/// What the watchdog sees of a run in progress.
#[derive(Default)]
pub(crate) struct Progress {
    pub(crate) iterations: AtomicU64,
    pub(crate) now_micros: AtomicU64,
    /// Bytes received by A and B so far.
    pub(crate) got: [AtomicU64; 2],
    pub(crate) history: Mutex<History>,
}

/// Wall-clock time a run may go without finishing one loop iteration
/// before the watchdog declares it stuck inside a stack call.
pub(crate) const STALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Run {
    /// Runs on a separate thread under a watchdog: a run that stops
    /// making progress inside a stack call (an endless loop) fails with
    /// its seed, virtual time and last frames instead of hanging the suite.
    /// The stuck thread is left behind (it cannot be stopped).
    pub(crate) fn run_watched(&self) -> Result<Outcome, String> {
        let progress = Arc::new(Progress::default());
        let (tx, rx) = mpsc::channel();
        let run = self.clone();
        let p = progress.clone();
        std::thread::Builder::new()
            .name(format!("sim seed {}", self.seed))
            .spawn(move || {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run.run(&p)))
                    .unwrap_or_else(|e| {
                        let msg = e
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        let h = p.history.lock().unwrap_or_else(|e| e.into_inner());
                        Err(format!(
                            "seed {}: panic: {msg}\n  last frames:\n    {}",
                            run.seed,
                            h.describe()
                        ))
                    });
                let _ = tx.send(r);
            })
            .unwrap();
        let mut last = (u64::MAX, std::time::Instant::now());
        loop {
            match rx.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(r) => return r,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(format!("seed {}: run thread vanished", self.seed));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            let it = progress.iterations.load(Ordering::Relaxed);
            if it != last.0 {
                last = (it, std::time::Instant::now());
            } else if last.1.elapsed() > STALL_LIMIT {
                let h = progress.history.lock().unwrap_or_else(|e| e.into_inner());
                return Err(format!(
                    "seed {} ({:?} peer, {:?}, b_connects={}): STUCK inside a stack call \
                     (no loop iteration for {STALL_LIMIT:?} wall time) at iteration {it}, \
                     t={:.6}s; A got {} B got {} bytes\n  last frames:\n    {}",
                    self.seed,
                    self.peer,
                    self.link,
                    self.b_connects,
                    progress.now_micros.load(Ordering::Relaxed) as f64 / 1e6,
                    progress.got[0].load(Ordering::Relaxed),
                    progress.got[1].load(Ordering::Relaxed),
                    h.describe()
                ));
            }
        }
    }
}

/// Runs every seed, collects all failures, and fails listing them.
pub(crate) fn sweep(
    name: &str,
    seeds: std::ops::Range<u64>,
    make: impl Fn(u64) -> Run,
) -> Vec<Outcome> {
    let mut failures = Vec::new();
    let mut outcomes = Vec::new();
    let (mut vt, mut iters, mut dropped, mut frames, mut frags) = (Duration::ZERO, 0, 0, 0, 0);
    for seed in seeds {
        let r = make(seed).run_watched();
        let stuck = matches!(&r, Err(e) if e.contains("STUCK"));
        match r {
            Ok(o) => {
                vt += o.elapsed;
                iters += o.iterations;
                dropped += o.ab.dropped + o.ba.dropped;
                frames += o.ab.sent + o.ba.sent;
                frags += o.ab.fragments + o.ba.fragments;
                outcomes.push(o);
            }
            Err(e) => failures.push(e),
        }
        if stuck {
            // Its thread still spins; do not pile more on the CPU.
            failures.push(format!("{name}: sweep stopped after seed {seed}"));
            break;
        }
    }
    eprintln!(
        "{name}: {} runs ok, {} failed; virtual time {:.1}s, {iters} iterations, \
         {frames} frames, {dropped} dropped, {frags} IP fragments",
        outcomes.len(),
        failures.len(),
        vt.as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{name}: {} failures:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    outcomes
}

pub(crate) const SEEDS: std::ops::Range<u64> = 1..51;
pub(crate) const HEAVY_SEEDS: std::ops::Range<u64> = 1..11;

pub(crate) fn loss(p: f64) -> LinkConfig {
    // Duplication and reordering come with any loss, as in the issue.
    if p == 0.0 {
        LinkConfig::faults(0.0, 0.0, 0.0)
    } else {
        LinkConfig::faults(p, 0.01, 0.02)
    }
}
