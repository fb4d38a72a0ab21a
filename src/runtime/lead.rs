//! Leader/follower over the device: a blocked call runs the stack itself.
//!
//! Handing every request from the stack thread to the application thread
//! costs two context switches per request on the server (the stack thread
//! wakes for the frame, then wakes the application). Instead, a blocked
//! call (a read, accept, connect, write or `Poll::poll`) that finds the
//! device's receive side free *leads*: it sleeps on the device itself,
//! reads the frames, processes them under the core lock, fires due timers,
//! and returns as soon as its own operation can proceed. Wake-ups it
//! causes for other sockets are signalled as usual. One thread at a time
//! owns the receive side (`RxOwner`), so frames are processed in the order
//! the device delivered them; other blocked calls are *followers* and
//! wait on their socket's condition. When the leader returns it hands the
//! device on: to a follower, which it wakes, or else to the stack thread,
//! after a 1 ms lease in which the returning thread, if it blocks again
//! (a server answering and waiting for the next request), reads the
//! next frames itself (`lease_device`).
//!
//! Chosen over receive processing on the socket owner's thread because a
//! frame's socket is only known once the frame has been parsed, and one
//! `Poll` thread (the demo services, the daemon's clients) owns many
//! sockets: whoever reads the device must be able to process any frame.
//!
//! The stack thread never has to be woken for the hand-off. Both it and
//! the leaders sleep in epoll sets that hold the device with
//! `EPOLLEXCLUSIVE`, the leaders' set registered first: the kernel wakes
//! the first exclusive waiter in that order that is actually asleep. So a
//! frame wakes the leader if one is waiting and the stack thread only
//! when none is. Timers are the stack thread's: it sleeps on a timerfd
//! that any thread moves earlier when it creates an earlier deadline (a
//! system call, no context switch), and it fires timers even while a
//! leader owns the device. Nothing spins unless `busy_poll` is set.
//!
//! Receive coalescing (as a NIC's rx-usecs, or NAPI's gro_flush_timeout):
//! while a bulk sender's TSO super-frames keep coming, the leader does
//! not sleep on the device between passes but for `COALESCE` on a timer,
//! then reads what came meanwhile in one pass (ACKing each frame as it
//! goes). A sleeping reader costs the sender a cross-CPU wake-up per
//! frame, which on this kind of VM made the sender's CPU, not ours, the
//! limit of a bulk transfer into the stack (a third of its time per 64
//! KB). The first pass that finds no super-frame ends it; requests
//! (plain frames) never start it.

use std::io;
use std::os::fd::AsFd;
use std::sync::{Arc, Condvar, MutexGuard};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::EventFd;
use nix::sys::timerfd::TimerFd;

use super::thread::{BATCH, RxBatch};
use super::{Core, Shared, WAKES, WaitFor, fire_wakes, stopped_error, unlock_and_wake};
use crate::device::Device;
use crate::stack::Instant;
use crate::stack::socket::SocketId;

/// Who reads the device now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RxOwner {
    /// Free: the next blocked call leads, or the stack thread reads.
    Nobody,
    /// The stack thread, between reading a batch and processing it.
    StackThread,
    /// A blocked application call (`Lead`).
    Leader,
}

/// The application thread that owns the device.
pub(super) struct Lead {
    /// The condition its call would wait on as a follower: an event that
    /// signals it must wake the leader out of epoll instead (`kick`).
    pub(super) cond: Arc<Condvar>,
    /// Asleep (or about to be) in epoll, outside the lock.
    pub(super) waiting: bool,
    /// Data, a connection or an error for its socket(s) came since it
    /// last slept: its call may proceed, so it stops reading the device
    /// (`lead_once`). A bare FIN does not count (`stops_reading`).
    pub(super) news: bool,
}

/// How long a returning leader's thread keeps the device (see
/// `lease_device`): also the longest a frame waits when it does not
/// come back.
const LEASE_US: u64 = 1_000;

/// How long a leader sleeps between passes while super-frames keep
/// coming (see the module doc): about one 64 KB super-frame's time at
/// 10 Gbit/s, and the most a frame behind a bulk stream waits.
const COALESCE: Duration = Duration::from_micros(50);

pub(super) const TOKEN_DEVICE: u64 = 0;
const TOKEN_KICK: u64 = 1;
const TOKEN_HALT: u64 = 2;
pub(super) const TOKEN_WAKE: u64 = 3;
const TOKEN_TIMER: u64 = 4;

/// The two epoll sets, leaders' first (see the module doc): the leaders'
/// holds the device, the kick and the stop signal; the stack thread's
/// holds the device (edge-triggered: it must not spin while a leader
/// owns the frames), its wake-up, the timer and the stop signal.
pub(super) fn wait_sets(
    device: &dyn Device,
    kick: &EventFd,
    halt: &EventFd,
    wake: &EventFd,
    timer: &TimerFd,
) -> Result<(Epoll, Epoll), String> {
    let err = |e: nix::errno::Errno| format!("cannot set up epoll: {e}");
    let lead = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(err)?;
    let stack = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(err)?;
    let inx = EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE;
    let ev = |flags, token| EpollEvent::new(flags, token);
    lead.add(device.fd(), ev(inx, TOKEN_DEVICE)).map_err(err)?;
    lead.add(kick.as_fd(), ev(EpollFlags::EPOLLIN, TOKEN_KICK))
        .map_err(err)?;
    lead.add(halt.as_fd(), ev(EpollFlags::EPOLLIN, TOKEN_HALT))
        .map_err(err)?;
    stack
        .add(device.fd(), ev(inx | EpollFlags::EPOLLET, TOKEN_DEVICE))
        .map_err(err)?;
    for (fd, token) in [
        (wake.as_fd(), TOKEN_WAKE),
        (timer.as_fd(), TOKEN_TIMER),
        (halt.as_fd(), TOKEN_HALT),
    ] {
        stack.add(fd, ev(EpollFlags::EPOLLIN, token)).map_err(err)?;
    }
    Ok((lead, stack))
}

/// What a blocked call counts itself as while it waits (for `notify`'s
/// filter), if anything.
pub(crate) type Counted = Option<(SocketId, WaitFor)>;

impl Shared {
    /// Runs `op` until it returns `Some`, waiting on `cond` between tries
    /// (as a leader or a follower). `None` once `deadline` (on the core's
    /// clock) has passed.
    pub(crate) fn run_blocking<'a, T>(
        &'a self,
        mut core: MutexGuard<'a, Core>,
        cond: &Arc<Condvar>,
        counted: Counted,
        deadline: Option<Instant>,
        mut op: impl FnMut(&mut Core) -> Option<io::Result<T>>,
    ) -> Option<io::Result<T>> {
        let mut lead = false;
        let r = loop {
            if let Some(why) = &core.stopped {
                break Some(Err(stopped_error(why)));
            }
            if let Some(r) = op(&mut core) {
                break Some(r);
            }
            let left = match deadline {
                None => None,
                Some(d) => {
                    // On the core's clock (runtime/clock.rs).
                    let now = core.now();
                    if d <= now {
                        break None;
                    }
                    Some(d - now)
                }
            };
            if let Some((id, wait)) = counted {
                core.count_blocked(id, wait, true);
            }
            core = self.wait_once(core, cond, left, &mut lead);
            if let Some((id, wait)) = counted {
                core.count_blocked(id, wait, false);
            }
        };
        self.finish(core, lead);
        r
    }

    /// One wait of a blocked call: leads if the device is free (or it
    /// already leads), else waits on `cond`. Returns with the lock held.
    fn wait_once<'a>(
        &'a self,
        mut core: MutexGuard<'a, Core>,
        cond: &Arc<Condvar>,
        left: Option<Duration>,
        lead: &mut bool,
    ) -> MutexGuard<'a, Core> {
        if !*lead && core.rx_owner == RxOwner::Nobody {
            core.rx_owner = RxOwner::Leader;
            core.lead = Some(Lead {
                cond: cond.clone(),
                waiting: false,
                news: false,
            });
            *lead = true;
        }
        if *lead {
            return self.lead_once(core, left);
        }
        // A follower. Rare: this call made other sockets ready; signal
        // them now (the wait below releases the lock).
        WAKES.with_borrow_mut(|w| {
            core.take_wakes(w);
            fire_wakes(w);
        });
        core.followers.push(cond.clone());
        core = match left {
            None => cond.wait(core).unwrap_or_else(|e| e.into_inner()),
            Some(left) => {
                cond.wait_timeout(core, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
        if let Some(i) = core.followers.iter().position(|c| Arc::ptr_eq(c, cond)) {
            core.followers.swap_remove(i);
        }
        core
    }

    /// The leader's wait: sleeps on the device (and the kick and stop
    /// signals) for at most `left`, then processes what it read.
    fn lead_once<'a>(
        &'a self,
        mut core: MutexGuard<'a, Core>,
        left: Option<Duration>,
    ) -> MutexGuard<'a, Core> {
        if let Some(l) = &mut core.lead {
            l.waiting = true;
            l.news = false;
        }
        WAKES.with_borrow_mut(|w| core.take_wakes(w));
        let coalesce = core.rx_coalesce && self.busy_poll.is_none();
        if coalesce {
            core.stack.iface.counters.inc("runtime.coalesced_waits");
        }
        drop(core);
        WAKES.with_borrow_mut(fire_wakes);
        let ready = if coalesce {
            self.coalesce_sleep(left)
        } else {
            self.lead_sleep(left)
        };
        let mut rx = self.rx.lock().unwrap_or_else(|e| e.into_inner());
        // One frame first: if it is what the call waits for (a request,
        // most often), the call returns without the read that would only
        // say EAGAIN; frames behind it stay for the returning thread
        // (leased, see `lease_device`) like frames that come just after.
        // A FIN alone is no such news (`stops_reading`): the batch is
        // read, and a SYN behind it answered before the application
        // closes.
        let mut failure = match ready {
            Ok(true) => rx.read(&*self.device, 1),
            Ok(false) => None,
            Err(why) => Some(why),
        };
        let mut core = self.lock();
        if let Some(l) = &mut core.lead {
            l.waiting = false;
        }
        let mut now = core.now();
        let first = rx.pending() > 0;
        // A super-frame comes from a bulk sender, whose next ones are
        // often queued already: they are read in this pass too, rather
        // than at a wake-up each.
        let bulk = rx.first_is_super_frame();
        // The next wait coalesces while super-frames keep coming.
        core.rx_coalesce = bulk;
        rx.process(&mut core, now, "runtime.frames_read_by_leader");
        core.notify(); // sets `news`
        core.rx_backlog = false;
        let more = first && failure.is_none();
        if more && bulk {
            (core, now, failure) = self.read_super_frames(core, &mut rx, now);
        } else if more && core.lead.as_ref().is_some_and(|l| !l.news) {
            drop(core);
            failure = rx.read(&*self.device, BATCH);
            core = self.lock();
            core.rx_backlog = rx.full();
            rx.process(&mut core, now, "runtime.frames_read_by_leader");
        }
        drop(rx);
        core.on_timers(now);
        core.transmit(now);
        if let Some(why) = failure {
            core.halt(why);
        }
        core
    }

    /// The rest of a bulk pass, after its first super-frame: reads and
    /// processes the frames queued behind it one at a time, each ACKed
    /// before the next is read, as Linux ACKs each GRO packet from its
    /// softirq: the sender's clock (and BBR's bandwidth probes) runs on
    /// these ACKs, and a batch of 64 KB frames takes the best part of a
    /// millisecond to read. One ACK per batch held a kernel sender at
    /// about 0.8x its veth rate; one per frame, 0.95x. Returns the lock,
    /// the time of the last frame and a read failure.
    fn read_super_frames<'a>(
        &'a self,
        mut core: MutexGuard<'a, Core>,
        rx: &mut RxBatch,
        mut now: Instant,
    ) -> (MutexGuard<'a, Core>, Instant, Option<String>) {
        let mut failure = None;
        for _ in 1..BATCH {
            core.transmit(now);
            drop(core);
            failure = rx.read(&*self.device, 1);
            core = self.lock();
            // A frame read: more are probably waiting.
            core.rx_backlog = rx.pending() > 0;
            now = core.now();
            rx.process(&mut core, now, "runtime.frames_read_by_leader");
            if !core.rx_backlog || failure.is_some() {
                break;
            }
        }
        (core, now, failure)
    }

    /// Sleeps in the leaders' epoll set; true if the device is readable.
    fn lead_sleep(&self, left: Option<Duration>) -> Result<bool, String> {
        if let Some(spin) = self.busy_poll
            && self.spin_for_frames(spin)
        {
            return Ok(true);
        }
        let timeout = match left {
            None => PollTimeout::NONE,
            // Rounded up: waking early only to sleep again costs a switch.
            Some(d) => {
                let ms = d.as_micros().div_ceil(1000).min(i32::MAX as u128);
                PollTimeout::try_from(ms as i32).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut events = [EpollEvent::empty(); 3];
        let n = match self.lead_wait.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(format!("epoll failed: {e}")),
        };
        let mut device = false;
        for e in &events[..n] {
            match e.data() {
                TOKEN_DEVICE => device = true,
                TOKEN_KICK => {
                    let _ = self.kick.read();
                }
                _ => {}
            }
        }
        Ok(device)
    }

    /// Receive coalescing (see the module doc): sleeps `COALESCE` (at most
    /// `left`) on the kick and stop signals only, not on the device, so
    /// that frames arriving meanwhile wake nobody; then reports the device
    /// as worth reading.
    fn coalesce_sleep(&self, left: Option<Duration>) -> Result<bool, String> {
        let d = left.map_or(COALESCE, |l| l.min(COALESCE));
        let mut fds = [
            PollFd::new(self.kick.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.halt.as_fd(), PollFlags::POLLIN),
        ];
        let ts = nix::sys::time::TimeSpec::from_duration(d);
        match nix::poll::ppoll(&mut fds, Some(ts), None) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("poll failed: {e}")),
        }
        if fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN))
        {
            let _ = self.kick.read();
        }
        Ok(true)
    }

    /// `--busy-poll`: checks the device without sleeping for up to `spin`
    /// (as SO_BUSY_POLL does), trading CPU for the wake-up's latency.
    fn spin_for_frames(&self, spin: Duration) -> bool {
        let until = std::time::Instant::now() + spin;
        while std::time::Instant::now() < until {
            if self.device_readable() {
                return true;
            }
            if self.lock().lead.as_ref().is_none_or(|l| !l.waiting) {
                return false; // kicked: our own socket has news
            }
            std::hint::spin_loop();
        }
        false
    }

    /// Whether a frame is waiting on the device (a zero-timeout poll).
    fn device_readable(&self) -> bool {
        let mut fds = [PollFd::new(self.device.fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }

    /// Ends a blocking call: gives up the device if it led, unlocks and
    /// signals what the call made ready.
    fn finish(&self, mut core: MutexGuard<'_, Core>, lead: bool) {
        let mut promote = None;
        if lead {
            core.rx_owner = RxOwner::Nobody;
            core.lead = None;
            // Hand the device on: a follower leads next, if there is one.
            promote = core.followers.last().cloned();
            if !core.rx_backlog {
                self.lease_device(&mut core);
            } else if !core.stack_watches {
                // Frames are waiting: the stack thread reads them now
                // (watching again reports them at once).
                self.watch_device(&mut core);
            }
        }
        let mut wake = core.stack_thread_needs_wake();
        if lead && core.rx_backlog && promote.is_none() {
            // Watched all along, the device will not report the waiting
            // frames again (edge-triggered): wake the stack thread.
            wake = true;
        }
        unlock_and_wake(self, core, wake);
        if let Some(c) = promote {
            c.notify_one();
        }
    }

    /// Leases the device to the returning leader's thread: the stack
    /// thread stops watching it for `LEASE`. A request/response server
    /// answers and blocks again within microseconds and leads again; the
    /// next request waits on the device for it meanwhile, instead of
    /// waking the stack thread (on one CPU the answer wakes the client,
    /// which preempts the server and sends its next request before the
    /// server is back). If the thread does not come back, the stack
    /// thread takes the device over when the lease runs out.
    fn lease_device(&self, core: &mut Core) {
        if core.stack_watches {
            if let Err(e) = self.stack_wait.delete(self.device.fd()) {
                log::debug!("cannot lease the device: {e}");
                return;
            }
            core.stack_watches = false;
        }
        let until = Instant::from_micros(core.now().total_micros() + LEASE_US);
        core.lease_until = Some(until);
        // The timer is not moved later: if it fires before the lease
        // runs out, the stack thread arms it again.
        if core.timer_at.is_none_or(|t| t > until) {
            core.set_timer(until);
        }
    }

    /// The stack thread watches the device again (the lease ran out and
    /// nobody leads). Frames already waiting are reported at once.
    pub(super) fn watch_device(&self, core: &mut Core) {
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE | EpollFlags::EPOLLET;
        match self
            .stack_wait
            .add(self.device.fd(), EpollEvent::new(flags, TOKEN_DEVICE))
        {
            Ok(()) => {
                core.stack_watches = true;
                core.lease_until = None;
            }
            Err(e) => log::error!("cannot watch the device: {e}"),
        }
    }
}
