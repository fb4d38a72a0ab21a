//! The stack thread's loop, and the receive path it shares with leading
//! application threads (`lead.rs`): read a batch from the device without
//! the lock, process it under the lock, transmit.
//!
//! The stack thread sleeps in epoll on the device (behind the leaders, see
//! `lead.rs`), the wake-up eventfd, the stop eventfd and its timer. It
//! reads the device only when nobody else owns its receive side; it fires
//! due timers whenever it wakes.

use std::io;
use std::os::fd::AsFd;
use std::sync::MutexGuard;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::epoll::EpollEvent;

use super::lead::{RxOwner, TOKEN_WAKE};
use super::{Core, Shared, fire_wakes};
use crate::device::vnet::complete_checksum;
use crate::device::{Device, RxCsum, RxKind, RxMeta};
use crate::stack::{Instant, RxChecksum};

/// Frames read per wake-up before the lock is taken once for all of them.
pub(super) const BATCH: usize = 64;
/// Longest sleep without a deadline (a bound, not a timer anyone needs).
const MAX_SLEEP_MS: u16 = 60_000;
/// Larger than any frame the TAP can deliver at MTU 65,535.
const FRAME_BUF: usize = 65_536 + 64;

/// One batch of received frames. Only the thread that owns the device's
/// receive side (`RxOwner`) touches it, so its mutex is never contended.
pub(super) struct RxBatch {
    bufs: Vec<Vec<u8>>,
    lens: [(usize, RxMeta); BATCH],
    n: usize,
}

impl RxBatch {
    pub(super) fn new() -> RxBatch {
        RxBatch {
            bufs: Vec::new(),
            lens: [(0, RxMeta::PLAIN); BATCH],
            n: 0,
        }
    }

    /// Reads up to `limit` frames, at most BATCH (buffers are allocated
    /// on first use). A read error other than EAGAIN is fatal (returned
    /// as the reason): a vanished TAP stays readable-with-error forever.
    pub(super) fn read(&mut self, device: &dyn Device, limit: usize) -> Option<String> {
        self.n = 0;
        while self.n < limit.min(BATCH) {
            if self.bufs.len() == self.n {
                self.bufs.push(vec![0u8; FRAME_BUF]);
            }
            match device.recv_frame(&mut self.bufs[self.n]) {
                Ok(got) => {
                    self.lens[self.n] = got;
                    self.n += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Some(format!("device {} failed: {e}", device.name())),
            }
        }
        None
    }

    /// Whether the last read stopped at the batch size (more are
    /// probably waiting) rather than at EAGAIN.
    pub(super) fn full(&self) -> bool {
        self.n == BATCH
    }

    /// Whether the first frame read (and not yet processed) is a TSO
    /// super-frame: a bulk sender's, likely with more behind it.
    pub(super) fn first_is_super_frame(&self) -> bool {
        self.n > 0 && self.lens[0].1.kind == RxKind::Gso
    }

    /// Frames read and not yet processed.
    pub(super) fn pending(&self) -> usize {
        self.n
    }

    /// Feeds the frames read to the core, in the order the device gave
    /// them, counting them under `reader` (who read them).
    pub(super) fn process(&mut self, core: &mut Core, now: Instant, reader: &'static str) {
        if self.n > 0 {
            core.stack.iface.counters.add(reader, self.n as u64);
        }
        for i in 0..std::mem::take(&mut self.n) {
            let (len, meta) = self.lens[i];
            match meta.kind {
                RxKind::Plain => {}
                RxKind::Gso => core.stack.iface.counters.inc("rx.gso_frames"),
                RxKind::Dropped(why) => {
                    core.stack.iface.counters.inc(why);
                    continue;
                }
            }
            let frame = &mut self.bufs[i][..len];
            let csum = settle_checksum(meta.csum, frame, core.link.captures());
            core.receive(now, frame, csum);
        }
    }
}

pub fn spawn(shared: std::sync::Arc<Shared>) -> Result<std::thread::JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name("tapstack".into())
        .spawn(move || run(&shared))
        .map_err(|e| format!("cannot start the stack thread: {e}"))
}

fn run(shared: &Shared) {
    let device = &*shared.device;
    let mut want_write = false;
    let mut want_read = true;
    // The first pass does not sleep: it sends what the stack queued when
    // it was made (ARP announcement) and arms the timer.
    let mut more = true;
    let mut wakes = Vec::new();
    let mut trimmer = super::trim::Trimmer::new();
    let mut sleep_ms = MAX_SLEEP_MS;
    loop {
        let writable = if more {
            false
        } else {
            match sleep(shared, want_write, want_read, sleep_ms) {
                Ok(w) => w,
                Err(why) => return stop_with(shared, why),
            }
        };
        let mut core = shared.lock();
        if core.stopped.is_some() {
            return;
        }
        core.sleeping = None;
        let mut failure = None;
        more = false;
        // A leading application thread reads the device itself; reading
        // too would let two threads process frames out of order. Leased
        // (a leader returned and is expected back), the device is left
        // to it until the lease runs out.
        let now = core.now();
        if !core.stack_watches
            && core.rx_owner == RxOwner::Nobody
            && core.lease_until.is_none_or(|t| t <= now)
        {
            shared.watch_device(&mut core);
        }
        if core.rx_owner == RxOwner::Nobody && core.stack_watches {
            core.rx_owner = RxOwner::StackThread;
            drop(core);
            let mut rx = shared.rx.lock().unwrap_or_else(|e| e.into_inner());
            failure = rx.read(device, BATCH);
            core = shared.lock();
            core.stack_thread_read_done();
            let now = core.now();
            rx.process(&mut core, now, "runtime.frames_read_by_stack_thread");
            more = rx.full();
        }
        if writable {
            core.tx_blocked = false;
        }
        let now = core.now();
        core.on_timers(now);
        core.transmit(now);
        want_write = core.tx_blocked;
        want_read = core.stack_watches && core.rx_owner == RxOwner::Nobody;
        if let Some(why) = failure {
            core.halt(why);
            return;
        }
        // The timer may have fired: arm it afresh for the next deadline.
        core.rearm_timer();
        if !more {
            core.sleeping = Some(super::Sleep { want_write });
        }
        core.take_wakes(&mut wakes);
        drop(core);
        fire_wakes(&mut wakes);
        // Memory freed after a burst is returned even if the stack goes
        // idle (the timer above is the stack's deadline, not ours).
        sleep_ms = trimmer
            .tick(|| shared.lock().stack.tcp.release_idle_storage())
            .map_or(MAX_SLEEP_MS, |d| {
                d.as_millis().clamp(1, u128::from(MAX_SLEEP_MS)) as u16
            });
    }
}

/// Sleeps until a frame arrives that no leader takes, a wake-up, the
/// timer or the stop signal. Returns whether the device became writable
/// (only asked for when it pushed back).
fn sleep(
    shared: &Shared,
    want_write: bool,
    want_read: bool,
    sleep_ms: u16,
) -> Result<bool, String> {
    if want_write {
        // Rare (the device pushed back): a plain poll that also asks for
        // POLLOUT. Not exclusive, so a leader may be woken along with us;
        // and level-triggered, so it asks for frames only if it is to
        // read them (else it would spin while a leader owns them).
        let read = if want_read {
            PollFlags::POLLIN
        } else {
            PollFlags::empty()
        };
        let mut fds = [
            PollFd::new(shared.device.fd(), read | PollFlags::POLLOUT),
            PollFd::new(shared.wake.as_fd(), PollFlags::POLLIN),
            PollFd::new(shared.timer.as_fd(), PollFlags::POLLIN),
            PollFd::new(shared.halt.as_fd(), PollFlags::POLLIN),
        ];
        if let Err(e) = poll(&mut fds, PollTimeout::from(sleep_ms))
            && e != nix::errno::Errno::EINTR
        {
            return Err(format!("poll failed: {e}"));
        }
        let has = |fd: &PollFd, flag| fd.revents().is_some_and(|r| r.contains(flag));
        if has(&fds[1], PollFlags::POLLIN) {
            let _ = shared.wake.read();
        }
        return Ok(has(&fds[0], PollFlags::POLLOUT));
    }
    let mut events = [EpollEvent::empty(); 4];
    let n = match shared
        .stack_wait
        .wait(&mut events, PollTimeout::from(sleep_ms))
    {
        Ok(n) => n,
        Err(nix::errno::Errno::EINTR) => 0,
        Err(e) => return Err(format!("epoll failed: {e}")),
    };
    if events[..n].iter().any(|e| e.data() == TOKEN_WAKE) {
        let _ = shared.wake.read();
    }
    Ok(false)
}

/// What the stack need not check of a frame's checksum. A partial one
/// (the kernel built the packet) is trusted without summing it, unless a
/// capture is to show the frame: then it is completed, once, here.
fn settle_checksum(csum: RxCsum, frame: &mut [u8], capture: bool) -> RxChecksum {
    match csum {
        RxCsum::Unknown => RxChecksum::Verify,
        RxCsum::Valid => RxChecksum::Trusted,
        RxCsum::Partial { start, offset } => {
            if capture {
                complete_checksum(frame, start, offset);
            }
            RxChecksum::Trusted
        }
    }
}

fn stop_with(shared: &Shared, why: String) {
    let mut core: MutexGuard<'_, Core> = shared.lock();
    core.halt(why);
}
