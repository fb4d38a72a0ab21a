//! The one stack thread and the state it shares with application threads.
//!
//! The core (`Stack`) sits behind one mutex together with the link (pcap,
//! trace, faults) and the wait registry. The stack thread sleeps in
//! `poll()` on the device and an eventfd with the core's next deadline as
//! timeout, never holding the lock while it waits. Application threads lock
//! briefly to operate on their socket; output they cause is written to the
//! device right away from their own thread (no wake-up of the stack thread
//! needed), and a blocked call sleeps on its own socket's condition, which
//! is signalled only for events on that socket.

pub mod clock;
pub mod link;
mod thread;

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::device::Device;
use crate::device::vnet::{self, Coalescer};
use crate::stack::socket::{Readiness, SocketId};
use crate::stack::{Instant, RxChecksum, Stack};
pub use clock::Clock;
use link::Link;

/// Identifies a `Poll` registry inside the core.
pub type PollId = u64;

#[derive(Default)]
/// One `Poll` registry: the sockets it watches and those with news.
pub struct PollState {
    /// Signalled when a registered socket has an event; `Poll::poll` waits on it.
    pub cond: Arc<Condvar>,
    /// socket -> (token, interest: readable, writable)
    pub registered: HashMap<SocketId, (usize, bool, bool)>,
    /// Sockets that had an event since the last `poll`, or were ready then
    /// (level-triggered: they are checked again).
    pub hints: HashSet<SocketId>,
    /// Also signalled on an event (the daemon's epoll loop waits on it):
    /// written once until the owner drains the hints (`take_hints`).
    notify: Option<Arc<EventFd>>,
    notified: bool,
}

/// Everything behind the core mutex: the stack, its clock, the link and
/// the wait registries. Locked briefly by every socket operation.
pub struct Core {
    /// The sans-I/O protocol core.
    pub stack: Stack,
    /// The clock the core's timers run on.
    pub clock: Clock,
    link: Link,
    device: Arc<dyn Device>,
    /// One condition per socket: a blocked call waits on its socket only.
    waiters: HashMap<SocketId, Waiter>,
    /// The `Poll` registries, by id.
    pub polls: HashMap<PollId, PollState>,
    socket_polls: HashMap<SocketId, Vec<PollId>>,
    next_poll: PollId,
    /// Frames the device refused (it pushed back); retried on POLLOUT.
    tx_blocked: bool,
    /// Merges TCP segments into GSO super-frames, when the device takes
    /// them and no fault injector needs to see single frames.
    coalescer: Option<Coalescer>,
    /// Set once the device refused partial checksums: TCP frames made
    /// before the stack stopped leaving them get full ones when sent.
    tx_fill_partial: bool,
    /// Set when the device failed or the stack was shut down.
    pub stopped: Option<String>,
    events: Vec<SocketId>,
    /// Conditions to signal once the lock is released: a thread woken while
    /// the waker still holds the mutex would only block again on it (one
    /// more context switch each way).
    wakes: Vec<Arc<Condvar>>,
    /// What the stack thread went to sleep waiting for; `None` while it is
    /// awake (it recomputes its deadline before it sleeps again).
    sleeping: Option<Sleep>,
}

#[derive(Default)]
struct Waiter {
    cond: Arc<Condvar>,
    /// Threads blocked on `cond` until the socket is readable, and until it
    /// is writable. An event signals only if one of them can now proceed:
    /// a futex wake is a system call even when nobody waits, and a reader
    /// woken by an ACK that freed send space would only block again (one
    /// context switch each way, per request in request/response).
    readers: usize,
    writers: usize,
}

/// What a blocked call waits for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum WaitFor {
    /// Data, a connection to accept, EOF or an error.
    Readable,
    /// Send space, an established connection, or an error.
    Writable,
}

/// The stack thread's wait, as it computed it under the lock.
#[derive(Clone, Copy, Debug)]
struct Sleep {
    until: Option<Instant>,
    want_write: bool,
}

/// What the stack thread and the application threads share.
pub struct Shared {
    /// The core; lock it with `lock` (which survives a poisoned mutex).
    pub core: Mutex<Core>,
    wake: EventFd,
    join: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn stopped_error(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        format!("network stack stopped: {why}"),
    )
}

impl Core {
    /// The current time on the core's clock.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    fn waiter(&mut self, id: SocketId) -> Arc<Condvar> {
        self.waiters.entry(id).or_default().cond.clone()
    }

    /// Counts a thread about to block on `id` (+1) or done blocking (-1).
    fn count_blocked(&mut self, id: SocketId, wait: WaitFor, up: bool) {
        if let Some(w) = self.waiters.get_mut(&id) {
            let n = match wait {
                WaitFor::Readable => &mut w.readers,
                WaitFor::Writable => &mut w.writers,
            };
            *n = if up { *n + 1 } else { n.saturating_sub(1) };
        }
    }

    /// Forgets a closed socket's waiters and poll registrations.
    pub fn forget(&mut self, id: SocketId) {
        if let Some(w) = self.waiters.remove(&id) {
            w.cond.notify_all();
        }
        if let Some(polls) = self.socket_polls.remove(&id) {
            for p in polls {
                if let Some(state) = self.polls.get_mut(&p) {
                    state.registered.remove(&id);
                    state.hints.remove(&id);
                }
            }
        }
    }

    /// Creates an empty `Poll` registry and returns its id.
    pub fn new_poll(&mut self) -> PollId {
        self.next_poll += 1;
        self.polls.insert(self.next_poll, PollState::default());
        self.next_poll
    }

    /// A registry whose events are also signalled on `fd`, for an owner
    /// that waits in epoll rather than on the condition.
    pub fn new_poll_notify(&mut self, fd: Arc<EventFd>) -> PollId {
        let p = self.new_poll();
        if let Some(state) = self.polls.get_mut(&p) {
            state.notify = Some(fd);
        }
        p
    }

    /// Moves the sockets that had events into `out` and re-arms the
    /// eventfd signal.
    pub fn take_hints(&mut self, p: PollId, out: &mut Vec<SocketId>) {
        if let Some(state) = self.polls.get_mut(&p) {
            out.extend(state.hints.drain());
            state.notified = false;
        }
    }

    /// Removes a `Poll` registry and all its registrations.
    pub fn drop_poll(&mut self, p: PollId) {
        if let Some(state) = self.polls.remove(&p) {
            for id in state.registered.keys() {
                if let Some(v) = self.socket_polls.get_mut(id) {
                    v.retain(|x| *x != p);
                }
            }
        }
    }

    /// Registers `id` in poll `p` under `token`, for readable and/or writable
    /// events. It is checked at once (hinted), as it may already be ready.
    pub fn register(&mut self, p: PollId, id: SocketId, token: usize, read: bool, write: bool) {
        if let Some(state) = self.polls.get_mut(&p) {
            state.registered.insert(id, (token, read, write));
            state.hints.insert(id);
            let v = self.socket_polls.entry(id).or_default();
            if !v.contains(&p) {
                v.push(p);
            }
        }
    }

    /// Stops watching `id` in poll `p`.
    pub fn deregister(&mut self, p: PollId, id: SocketId) {
        if let Some(state) = self.polls.get_mut(&p) {
            state.registered.remove(&id);
            state.hints.remove(&id);
        }
        if let Some(v) = self.socket_polls.get_mut(&id) {
            v.retain(|x| *x != p);
        }
    }

    /// What `id` is ready for now.
    pub fn readiness(&self, id: SocketId) -> Readiness {
        readiness_of(&self.stack, id)
    }

    /// Wakes exactly the waiters of sockets whose readiness may have changed.
    fn notify(&mut self) {
        self.stack.take_events(&mut self.events);
        let wakes = &mut self.wakes;
        for id in self.events.drain(..) {
            if let Some(w) = self.waiters.get(&id)
                && (w.readers > 0 || w.writers > 0)
            {
                let r = readiness_of(&self.stack, id);
                let failed = r.hup || r.error;
                if (w.readers > 0 && (r.readable || failed))
                    || (w.writers > 0 && (r.writable || failed))
                {
                    defer_wake(wakes, &w.cond);
                }
            }
            if let Some(polls) = self.socket_polls.get(&id) {
                for p in polls {
                    if let Some(state) = self.polls.get_mut(p) {
                        state.hints.insert(id);
                        defer_wake(wakes, &state.cond);
                        if let Some(fd) = &state.notify
                            && !state.notified
                        {
                            state.notified = true;
                            let _ = fd.write(1);
                        }
                    }
                }
            }
        }
    }

    /// Moves the deferred wake-ups into `out` (an empty vector whose
    /// capacity is swapped in, so neither side allocates in steady state).
    pub(crate) fn take_wakes(&mut self, out: &mut Vec<Arc<Condvar>>) {
        std::mem::swap(&mut self.wakes, out);
    }

    /// Generates what the stack has to send and writes it to the device,
    /// then wakes waiters. Called by the stack thread and after any socket
    /// operation, so output never waits for the stack thread to wake up.
    pub fn transmit(&mut self, now: Instant) {
        self.stack.handle_timeout(now);
        if let Some(mut coalescer) = self.coalescer.take()
            && self.transmit_coalesced(&mut coalescer)
        {
            self.coalescer = Some(coalescer);
        }
        // Without GSO (or after the device refused it), frame by frame.
        let device = self.device.clone();
        while !self.tx_blocked {
            let Some(mut frame) = self.stack.poll_transmit() else {
                break;
            };
            if self.tx_fill_partial {
                vnet::fill_tcp_checksum(&mut frame);
            }
            let mut blocked = false;
            self.link.outbound(now, &frame, &mut |f| {
                if let Err(e) = device.send(f) {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        blocked = true;
                    } else {
                        log::debug!("device send failed: {e}");
                    }
                }
            });
            if blocked {
                // The frame is lost to this attempt; TCP will retransmit, so
                // treat push-back as a drop but stop writing for now.
                self.stack.iface.counters.inc("tx.device_busy");
                self.tx_blocked = true;
            }
            self.stack.recycle(frame);
        }
        self.notify();
    }

    /// `transmit` with GSO: runs of one flow's segments leave in one write.
    /// False when the device refused a super-frame: GSO is then off for
    /// good (the run is lost to this attempt; TCP retransmits it).
    fn transmit_coalesced(&mut self, co: &mut Coalescer) -> bool {
        while !self.tx_blocked {
            let Some(frame) = self.stack.poll_transmit() else {
                break;
            };
            if !co.fits(&frame) && !self.flush_run(co) {
                // This frame and the rest go out frame by frame.
                self.stack.iface.outbox.unpop(frame);
                return false;
            }
            self.link.observe_outbound(&frame);
            co.push(frame);
        }
        self.flush_run(co)
    }

    /// Writes the coalescer's run; false if the device refused even a
    /// single frame's virtio-net header (offloads are then off for good).
    fn flush_run(&mut self, co: &mut Coalescer) -> bool {
        let merged = co.len() > 1;
        let device = self.device.clone();
        let stack = &mut self.stack;
        let result = co.flush(&mut |parts| device.send_vnet(parts), &mut |f| {
            stack.recycle(f)
        });
        let counters = &mut self.stack.iface.counters;
        match result {
            Ok(segs) if segs > 1 => {
                counters.inc("tx.gso_frames");
                counters.add("tx.gso_segments", segs as u64);
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // As in `transmit`: the run is lost to this attempt (TCP
                // retransmits); stop writing until POLLOUT.
                counters.inc("tx.device_busy");
                self.tx_blocked = true;
            }
            Err(e) if merged && e.raw_os_error() == Some(nix::libc::EINVAL) => {
                // A kernel that takes the virtio-net header but not our GSO
                // frames (virtio_net_hdr_to_skb said no).
                counters.inc("tx.gso_refused");
                log::debug!("device refused a GSO super-frame ({e}): single frames from now on");
                co.stop_merging();
            }
            Err(e) if co.sent_partial() && e.raw_os_error() == Some(nix::libc::EINVAL) => {
                // Not even a partial checksum: the stack sums its own from
                // now on, and frames it already made with partial sums get
                // theirs filled in on the way out (the refused one is lost
                // to this attempt, like a drop).
                counters.inc("tx.csum_offload_refused");
                log::debug!("device refused a partial checksum ({e}): no offloads from now on");
                self.stack.set_tx_checksum_offload(false);
                self.tx_fill_partial = true;
                return false;
            }
            Err(e) => log::debug!("device send failed: {e}"),
        }
        true
    }

    /// One frame from the device; `csum` is what the device vouches for
    /// (nothing once a fault injector may have changed the bytes).
    fn receive(&mut self, now: Instant, frame: &[u8], csum: RxChecksum) {
        let stack = &mut self.stack;
        let csum = if self.link.faults_active() {
            RxChecksum::Verify
        } else {
            csum
        };
        self.link
            .inbound(now, frame, &mut |f| stack.handle_frame(now, f, csum));
    }

    /// Timers and held frames due at `now`.
    fn on_timers(&mut self, now: Instant) {
        let stack = &mut self.stack;
        let device = self.device.clone();
        self.link.flush_due(
            now,
            &mut |f| stack.handle_frame(now, f, RxChecksum::Verify),
            &mut |f| {
                let _ = device.send(f);
            },
        );
        self.stack.handle_timeout(now);
    }

    fn poll_at(&self) -> Option<Instant> {
        crate::stack::time::earliest(self.stack.poll_at(), self.link.poll_at())
    }

    /// Whether the stack thread is asleep in `poll()`, waiting for frames or
    /// its next deadline (for tests of the wake-up logic).
    pub fn stack_thread_sleeping(&self) -> bool {
        self.sleeping.is_some()
    }

    /// Whether an application thread's operation left the stack thread
    /// sleeping too long: a deadline earlier than the one it sleeps until,
    /// or a device that pushed back while it is not polling for POLLOUT.
    /// Waking it only then saves a context switch per socket call (on one
    /// CPU that raised 1-byte request/response from ~36k/s to ~45k/s).
    fn stack_thread_needs_wake(&self) -> bool {
        let Some(sleep) = self.sleeping else {
            return false;
        };
        if self.tx_blocked && !sleep.want_write {
            return true;
        }
        match (self.poll_at(), sleep.until) {
            (Some(due), Some(until)) => due < until,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

fn readiness_of(stack: &Stack, id: SocketId) -> Readiness {
    match id {
        SocketId::Udp(h) => stack.udp.readiness(crate::stack::udp::UdpHandle(h)),
        SocketId::Tcp(h) => stack.tcp.readiness(crate::stack::tcp::TcpHandle(h)),
    }
}

fn defer_wake(wakes: &mut Vec<Arc<Condvar>>, cond: &Arc<Condvar>) {
    if !wakes.iter().any(|c| Arc::ptr_eq(c, cond)) {
        wakes.push(cond.clone());
    }
}

/// Signals every condition in `wakes`, leaving it empty. Called with the
/// lock released.
pub(crate) fn fire_wakes(wakes: &mut Vec<Arc<Condvar>>) {
    for c in wakes.drain(..) {
        c.notify_all();
    }
}

thread_local! {
    /// An application thread's scratch list for `Core::take_wakes`.
    static WAKES: std::cell::RefCell<Vec<Arc<Condvar>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Releases the lock, then signals what the operation made ready, and
/// wakes the stack thread if `wake_stack`.
fn unlock_and_wake(shared: &Shared, mut core: MutexGuard<'_, Core>, wake_stack: bool) {
    WAKES.with_borrow_mut(|w| {
        core.take_wakes(w);
        drop(core);
        fire_wakes(w);
    });
    if wake_stack {
        shared.wake();
    }
}

impl Shared {
    /// Locks the core. A poisoned mutex is taken anyway: the core is consistent
    /// between operations, so one panicked thread must not stop every other.
    pub fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic elsewhere must not turn every later call into a panic:
        // the core's state stays consistent between operations.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the stack thread (after a change that moves its deadline).
    pub fn wake(&self) {
        let _ = self.wake.write(1);
    }

    /// Runs `op` on the core, transmitting whatever it produced. While it
    /// returns `WouldBlock` and `blocking` is set, waits on `id`'s
    /// condition until `deadline`; then returns `WouldBlock` (like std's
    /// socket timeouts on Unix) or `timeout_kind`.
    pub fn block_on<T>(
        &self,
        id: SocketId,
        wait: WaitFor,
        blocking: bool,
        timeout: Option<Duration>,
        timeout_kind: io::ErrorKind,
        mut op: impl FnMut(&mut Core) -> io::Result<T>,
    ) -> io::Result<T> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let mut core = self.lock();
        let cond = core.waiter(id);
        loop {
            if let Some(why) = &core.stopped {
                return Err(stopped_error(why));
            }
            let result = op(&mut core);
            let now = core.now();
            core.transmit(now);
            let wake = core.stack_thread_needs_wake();
            match result {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && blocking => {
                    // Rare: this call made other sockets ready. Signal
                    // them now; the wait below releases the lock.
                    WAKES.with_borrow_mut(|w| {
                        core.take_wakes(w);
                        fire_wakes(w);
                    });
                    if wake {
                        self.wake();
                    }
                }
                r => {
                    unlock_and_wake(self, core, wake);
                    return r;
                }
            }
            let left = match deadline {
                None => None,
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Err(io::Error::new(timeout_kind, "operation timed out"));
                    }
                    Some(left)
                }
            };
            core.count_blocked(id, wait, true);
            core = match left {
                None => cond.wait(core).unwrap_or_else(|e| e.into_inner()),
                Some(left) => {
                    cond.wait_timeout(core, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            core.count_blocked(id, wait, false);
        }
    }

    /// Runs a non-blocking operation and transmits its output.
    pub fn with_core<T>(&self, op: impl FnOnce(&mut Core) -> T) -> T {
        let mut core = self.lock();
        let r = op(&mut core);
        let now = core.now();
        core.transmit(now);
        let wake = core.stack_thread_needs_wake();
        unlock_and_wake(self, core, wake);
        r
    }
}

/// Starts the stack thread on `device`.
pub fn start(
    device: Arc<dyn Device>,
    mut stack: Stack,
    link: &link::LinkOptions,
) -> Result<Arc<Shared>, String> {
    let link = Link::new(link)?;
    // Checksums are left to the kernel unless a capture or trace must show
    // each frame with its real one.
    let coalescer = (device.gso() && !link.faults_active()).then(|| {
        if link.captures() {
            Coalescer::new()
        } else {
            Coalescer::with_partial_tcp_checksums()
        }
    });
    stack.set_tx_checksum_offload(
        coalescer
            .as_ref()
            .is_some_and(Coalescer::partial_tcp_checksums),
    );
    let wake = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
        .map_err(|e| format!("cannot create eventfd: {e}"))?;
    let core = Core {
        stack,
        clock: Clock::new(),
        link,
        device: device.clone(),
        waiters: HashMap::new(),
        polls: HashMap::new(),
        socket_polls: HashMap::new(),
        next_poll: 0,
        tx_blocked: false,
        coalescer,
        tx_fill_partial: false,
        stopped: None,
        events: Vec::new(),
        wakes: Vec::new(),
        sleeping: None,
    };
    let shared = Arc::new(Shared {
        core: Mutex::new(core),
        wake,
        join: Mutex::new(None),
    });
    let handle = thread::spawn(shared.clone(), device)?;
    *shared.join.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
    Ok(shared)
}

/// Stops the stack thread and waits for it; every blocked call returns.
pub fn stop(shared: &Shared) {
    {
        let mut core = shared.lock();
        if core.stopped.is_none() {
            core.stopped = Some("shut down".into());
        }
        core.link.flush_capture();
        for w in core.waiters.values() {
            w.cond.notify_all();
        }
        for p in core.polls.values() {
            p.cond.notify_all();
        }
    }
    shared.wake();
    let handle = shared.join.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(h) = handle
        && h.thread().id() != std::thread::current().id()
    {
        let _ = h.join();
    }
}
