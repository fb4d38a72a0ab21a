//! The stack thread's loop: poll, read a batch, process under the lock,
//! transmit, sleep until the next deadline.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use std::time::Duration;

use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::time::TimeSpec;

use super::Shared;
use crate::device::vnet::complete_checksum;
use crate::device::{Device, RxCsum, RxKind, RxMeta};
use crate::stack::ip::RxChecksum;

/// Frames read per wake-up before the lock is taken once for all of them.
const BATCH: usize = 64;
/// Longest sleep without a deadline (a bound, not a timer anyone needs).
const MAX_SLEEP_US: u64 = 60_000_000;
/// Larger than any frame the TAP can deliver at MTU 65,535.
const FRAME_BUF: usize = 65_536 + 64;

pub fn spawn(
    shared: Arc<Shared>,
    device: Arc<dyn Device>,
) -> Result<std::thread::JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name("tapstack".into())
        .spawn(move || run(&shared, &*device))
        .map_err(|e| format!("cannot start the stack thread: {e}"))
}

fn run(shared: &Shared, device: &dyn Device) {
    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; FRAME_BUF]).collect();
    let mut lens = [(0usize, RxMeta::PLAIN); BATCH];
    let mut timeout_us: u64 = 0;
    let mut want_write = false;
    let mut wakes = Vec::new();
    let mut trimmer = super::trim::Trimmer::new();
    loop {
        let writable = match sleep(shared, device, want_write, timeout_us) {
            Ok(w) => w,
            Err(why) => return stop_with(shared, why),
        };
        let (n, failure) = read_batch(device, &mut bufs, &mut lens);
        let mut core = shared.lock();
        if core.stopped.is_some() {
            return;
        }
        core.sleeping = None;
        let now = core.now();
        for i in 0..n {
            let (len, meta) = lens[i];
            match meta.kind {
                RxKind::Plain => {}
                RxKind::Gso => core.stack.iface.counters.inc("rx.gso_frames"),
                RxKind::Dropped(why) => {
                    core.stack.iface.counters.inc(why);
                    continue;
                }
            }
            let frame = &mut bufs[i][..len];
            let csum = settle_checksum(meta.csum, frame, core.link.captures());
            core.receive(now, frame, csum);
        }
        if writable {
            core.tx_blocked = false;
        }
        core.on_timers(now);
        core.transmit(now);
        want_write = core.tx_blocked;
        if let Some(why) = failure {
            drop(core);
            stop_with(shared, why);
            return;
        }
        let until = core.poll_at();
        timeout_us = if n == BATCH {
            0 // more frames are probably waiting
        } else {
            match until {
                Some(t) => t
                    .total_micros()
                    .saturating_sub(core.now().total_micros())
                    .min(MAX_SLEEP_US),
                None => MAX_SLEEP_US,
            }
        };
        core.sleeping = Some(super::Sleep { until, want_write });
        core.take_wakes(&mut wakes);
        drop(core);
        super::fire_wakes(&mut wakes);
        if let Some(next) = trimmer.tick() {
            // Memory freed after a burst is returned even if the stack
            // goes idle (the deadline above is the stack's, not ours).
            timeout_us = timeout_us.min(next.as_micros() as u64);
        }
    }
}

/// Sleeps in ppoll on the device and the wake-up eventfd for at most
/// `timeout_us`. Returns whether the device became writable.
fn sleep(
    shared: &Shared,
    device: &dyn Device,
    want_write: bool,
    timeout_us: u64,
) -> Result<bool, String> {
    let events = if want_write {
        PollFlags::POLLIN | PollFlags::POLLOUT
    } else {
        PollFlags::POLLIN
    };
    let mut fds = [
        PollFd::new(device.fd(), events),
        PollFd::new(shared.wake.as_fd(), PollFlags::POLLIN),
    ];
    // ppoll, not poll: microsecond timeouts. RACK's reordering timer and
    // the loss probe are a fraction of a millisecond on a fast link;
    // rounding them up to whole milliseconds delayed every recovery.
    let timeout = TimeSpec::from_duration(Duration::from_micros(timeout_us));
    if let Err(e) = ppoll(&mut fds, Some(timeout), None)
        && e != nix::errno::Errno::EINTR
    {
        return Err(format!("poll failed: {e}"));
    }
    let has = |fd: &PollFd, flag| fd.revents().is_some_and(|r| r.contains(flag));
    if has(&fds[1], PollFlags::POLLIN) {
        let _ = shared.wake.read();
    }
    Ok(has(&fds[0], PollFlags::POLLOUT))
}

/// Reads up to BATCH frames without holding the lock. A read error other
/// than EAGAIN is fatal: a vanished TAP stays readable-with-error forever.
fn read_batch(
    device: &dyn Device,
    bufs: &mut [Vec<u8>],
    lens: &mut [(usize, RxMeta)],
) -> (usize, Option<String>) {
    let mut n = 0;
    while n < bufs.len() {
        match device.recv_frame(&mut bufs[n]) {
            Ok(got) => {
                lens[n] = got;
                n += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return (n, Some(format!("device {} failed: {e}", device.name())));
            }
        }
    }
    (n, None)
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
    log::error!("{why}");
    let mut core = shared.lock();
    core.stopped = Some(why);
    core.link.close_taps();
    for w in core.waiters.values() {
        w.cond.notify_all();
    }
    for p in core.polls.values() {
        p.cond.notify_all();
    }
}
