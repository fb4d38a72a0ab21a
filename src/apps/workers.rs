//! A pool of threads that each serve one job (a connection) at a time and
//! then wait for the next, so a new connection costs one wake-up instead of
//! a thread creation. Used by the kernel-side benchmark servers (the demo
//! services are event-driven now: `services.rs`).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a worker with nothing to do waits before its thread ends.
const IDLE_LIFETIME: Duration = Duration::from_secs(30);

type Handler<J> = dyn Fn(J, &mut [u8]) + Send + Sync;

/// A bounded pool of worker threads serving jobs of type `J` with one
/// handler; threads start on demand and end after `IDLE_LIFETIME` idle.
pub struct Workers<J> {
    state: Mutex<State<J>>,
    work: Condvar,
    handler: Box<Handler<J>>,
    max_busy: usize,
    buf_len: usize,
}

struct State<J> {
    queue: VecDeque<J>,
    threads: usize,
    idle: usize,
}

/// Why `submit` did not take a job.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// `max_busy` jobs are being served.
    Full,
    /// The operating system would not start a thread.
    NoThread,
}

impl<J: Send + 'static> Workers<J> {
    /// `handler(job, buf)` serves one job with a scratch buffer of
    /// `buf_len` bytes that the worker keeps between jobs.
    pub fn new(
        max_busy: usize,
        buf_len: usize,
        handler: impl Fn(J, &mut [u8]) + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Workers {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                threads: 0,
                idle: 0,
            }),
            work: Condvar::new(),
            handler: Box::new(handler),
            max_busy,
            buf_len,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<J>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands the job to an idle worker, or starts a new one. A refused job
    /// is dropped (for a connection: closed).
    pub fn submit(self: &Arc<Self>, job: J) -> Result<(), Refused> {
        let mut st = self.lock();
        if st.idle > st.queue.len() {
            st.queue.push_back(job);
            self.work.notify_one();
            return Ok(());
        }
        // Queued jobs are already promised to idle workers.
        if st.threads - st.idle + st.queue.len() >= self.max_busy {
            return Err(Refused::Full);
        }
        st.threads += 1;
        drop(st);
        let pool = self.clone();
        let spawned = thread::Builder::new()
            .name("worker".into())
            .stack_size(128 * 1024)
            .spawn(move || pool.run(job));
        if spawned.is_err() {
            self.lock().threads -= 1;
            return Err(Refused::NoThread);
        }
        Ok(())
    }

    fn run(&self, first: J) {
        let mut buf = vec![0u8; self.buf_len];
        let mut next = Some(first);
        while let Some(job) = next.take() {
            (self.handler)(job, &mut buf);
            let mut st = self.lock();
            st.idle += 1;
            let deadline = Instant::now() + IDLE_LIFETIME;
            while st.queue.is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                st = self
                    .work
                    .wait_timeout(st, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            st.idle -= 1;
            next = st.queue.pop_front();
            if next.is_none() {
                st.threads -= 1;
            }
        }
    }

    /// Threads alive (busy or idle).
    pub fn threads(&self) -> usize {
        self.lock().threads
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn reuses_an_idle_worker_and_refuses_beyond_the_limit() {
        let (done_tx, done_rx) = mpsc::channel::<u32>();
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let gate = Mutex::new(gate_rx);
        let done = Mutex::new(done_tx);
        let pool = Workers::new(2, 16, move |job: u32, buf: &mut [u8]| {
            assert_eq!(buf.len(), 16);
            if job >= 100 {
                // Blocks until the test opens the gate.
                gate.lock().unwrap().recv().unwrap();
            }
            done.lock().unwrap().send(job).unwrap();
        });
        let wait = Duration::from_secs(5);
        pool.submit(1).unwrap();
        assert_eq!(done_rx.recv_timeout(wait), Ok(1));
        // The worker that served job 1 goes idle and takes job 2: still one
        // thread.
        let wait_idle = || {
            let deadline = Instant::now() + wait;
            while pool.lock().idle == 0 {
                assert!(Instant::now() < deadline, "worker never went idle");
                thread::yield_now();
            }
        };
        wait_idle();
        pool.submit(2).unwrap();
        assert_eq!(done_rx.recv_timeout(wait), Ok(2));
        assert_eq!(pool.threads(), 1);
        wait_idle();
        // Two jobs that block fill the pool; a third is refused.
        pool.submit(100).unwrap();
        pool.submit(101).unwrap();
        assert_eq!(pool.submit(3), Err(Refused::Full));
        gate_tx.send(()).unwrap();
        gate_tx.send(()).unwrap();
        let mut got = [
            done_rx.recv_timeout(wait).unwrap(),
            done_rx.recv_timeout(wait).unwrap(),
        ];
        got.sort();
        assert_eq!(got, [100, 101]);
    }
}
