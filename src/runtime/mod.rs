//! The stack thread and the state it shares with application threads.
//!
//! The core (`Stack`) sits behind one mutex together with the link (pcap,
//! trace, faults) and the wait registry. Application threads lock briefly
//! to operate on their socket; output they cause is written to the device
//! right away from their own thread. A blocked call that finds the device
//! free runs the stack itself until its socket is ready (leader/follower,
//! `lead.rs`): a request then costs the server one wake-up, not two. The
//! stack thread sleeps in epoll on the device (woken only when no leader
//! is waiting), an eventfd and a timerfd set to the core's next deadline,
//! never holding the lock while it waits: it reads the device when no
//! application thread leads, and fires timers.

pub mod clock;
mod lead;
pub mod link;
mod pollset;
mod send;
pub mod tap;
mod thread;
mod trim;
mod wake;

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::epoll::Epoll;
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use crate::device::Device;
use crate::stack::ip::RxChecksum;
use crate::stack::socket::{Readiness, SocketId};
use crate::stack::{Instant, Stack};
pub use clock::Clock;
use lead::{Lead, RxOwner};
use link::Link;
use pollset::PollSet;
use send::TxOffloads;
use thread::RxBatch;
pub(crate) use wake::fire_wakes;
use wake::{WAKES, Wake, defer_wake, kick_leader_if, unlock_and_wake};

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
    socket_polls: HashMap<SocketId, PollSet>,
    next_poll: PollId,
    /// Frames the device refused (it pushed back); retried on POLLOUT.
    tx_blocked: bool,
    /// What the device does for the frames it is given.
    tx: TxOffloads,
    /// Set when the device failed or the stack was shut down.
    pub stopped: Option<String>,
    events: Vec<SocketId>,
    /// Conditions (and poll eventfds) to signal once the lock is released:
    /// a thread woken while the waker still holds the mutex would only block
    /// again on it (one more context switch each way).
    wakes: Vec<Wake>,
    /// What the stack thread went to sleep waiting for; `None` while it is
    /// awake.
    sleeping: Option<Sleep>,
    /// Who reads the device: one thread at a time, so that frames are
    /// processed in the order the device delivered them.
    rx_owner: RxOwner,
    /// The application thread that leads, if one does.
    lead: Option<Lead>,
    /// Conditions of calls blocked as followers (one is woken to lead
    /// when the leader returns).
    followers: Vec<Arc<Condvar>>,
    /// Wakes the leader out of epoll when its own socket has news.
    kick: Arc<EventFd>,
    /// Written once when the stack stops: every epoll set holds it.
    halt_fd: Arc<EventFd>,
    /// The stack thread's timer, and the deadline it is armed for: at or
    /// before the core's next deadline whenever that is set.
    timer: Arc<TimerFd>,
    timer_at: Option<Instant>,
    /// The stack thread's epoll set holds the device. A leader that
    /// returns takes it out (`lead.rs`: the device is leased to the
    /// application thread, which is expected back) ...
    stack_watches: bool,
    /// ... until then, when the stack thread watches it again if nobody
    /// leads.
    lease_until: Option<Instant>,
    /// The leader's last read stopped at the batch size: frames are
    /// probably still waiting, so it must not lease the device.
    rx_backlog: bool,
    /// The leader's last pass read a bulk sender's super-frames: its
    /// next wait is a timed one (receive coalescing, lead.rs).
    rx_coalesce: bool,
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
    want_write: bool,
}

/// What the stack thread and the application threads share.
pub struct Shared {
    /// The core; lock it with `lock` (which survives a poisoned mutex).
    pub core: Mutex<Core>,
    wake: EventFd,
    join: Mutex<Option<std::thread::JoinHandle<()>>>,
    device: Arc<dyn Device>,
    /// The receive batch of whoever owns the device (`RxOwner`).
    rx: Mutex<RxBatch>,
    /// Where leaders sleep (`lead.rs`).
    lead_wait: Epoll,
    /// Where the stack thread sleeps (its device entry comes and goes).
    stack_wait: Epoll,
    kick: Arc<EventFd>,
    halt: Arc<EventFd>,
    timer: Arc<TimerFd>,
    /// `--busy-poll`: how long a leader checks the device before sleeping.
    busy_poll: Option<Duration>,
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
        if let Some(w) = self.waiters.remove(&id)
            && self.followers.iter().any(|f| Arc::ptr_eq(f, &w.cond))
        {
            w.cond.notify_all();
        }
        if let Some(polls) = self.socket_polls.remove(&id) {
            for p in polls.iter() {
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
                if let Some(v) = self.socket_polls.get_mut(id)
                    && v.remove(p)
                {
                    self.socket_polls.remove(id);
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
            self.socket_polls
                .entry(id)
                .and_modify(|v| v.insert(p))
                .or_insert(PollSet::One(p));
        }
    }

    /// Stops watching `id` in poll `p`.
    pub fn deregister(&mut self, p: PollId, id: SocketId) {
        if let Some(state) = self.polls.get_mut(&p) {
            state.registered.remove(&id);
            state.hints.remove(&id);
        }
        if let Some(v) = self.socket_polls.get_mut(&id)
            && v.remove(p)
        {
            self.socket_polls.remove(&id);
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
        let followers = &self.followers;
        for id in self.events.drain(..) {
            if let Some(w) = self.waiters.get(&id)
                && (w.readers > 0 || w.writers > 0)
            {
                let r = readiness_of(&self.stack, id);
                let failed = r.hup || r.error;
                if (w.readers > 0 && (r.readable || failed))
                    || (w.writers > 0 && (r.writable || failed))
                {
                    defer_wake(wakes, followers, &w.cond);
                    let data = w.readers > 0 && stops_reading(r);
                    kick_leader_if(&mut self.lead, &self.kick, &w.cond, data);
                }
            }
            if let Some(polls) = self.socket_polls.get(&id) {
                let data = stops_reading(readiness_of(&self.stack, id));
                for p in polls.iter() {
                    if let Some(state) = self.polls.get_mut(&p) {
                        state.hints.insert(id);
                        defer_wake(wakes, followers, &state.cond);
                        kick_leader_if(&mut self.lead, &self.kick, &state.cond, data);
                        if let Some(fd) = &state.notify
                            && !state.notified
                        {
                            state.notified = true;
                            wakes.push(Wake::Fd(fd.clone()));
                        }
                    }
                }
            }
        }
    }

    /// Moves the deferred wake-ups into `out` (an empty vector whose
    /// capacity is swapped in, so neither side allocates in steady state).
    pub(crate) fn take_wakes(&mut self, out: &mut Vec<Wake>) {
        std::mem::swap(&mut self.wakes, out);
    }

    /// Generates what the stack has to send and writes it to the device,
    /// then wakes waiters. Called by the stack thread and after any socket
    /// operation, so output never waits for the stack thread to wake up.
    pub fn transmit(&mut self, now: Instant) {
        self.stack.handle_timeout(now);
        while !self.tx_blocked {
            let Some(mut frame) = self.stack.poll_transmit() else {
                break;
            };
            self.send_frame(now, &mut frame);
            self.stack.recycle(frame);
        }
        // A reader of the --pcap file sees every frame so far (a no-op
        // when nothing was written since).
        self.link.flush_capture();
        self.notify();
        self.arm_timer_if_earlier();
    }

    /// Moves the stack thread's timer earlier if the core now has an
    /// earlier deadline (no wake-up: the timer fires when it is due).
    fn arm_timer_if_earlier(&mut self) {
        if let Some(due) = self.poll_at()
            && self.timer_at.is_none_or(|t| due < t)
        {
            self.set_timer(due);
        }
    }

    /// Arms the timer for the next deadline, or disarms it. The stack
    /// thread does this each time it wakes (the timer may have fired).
    fn rearm_timer(&mut self) {
        let lease = self.lease_until.filter(|_| self.device_leased());
        match crate::stack::time::earliest(self.poll_at(), lease) {
            Some(due) => self.set_timer(due),
            None => {
                let _ = self.timer.unset();
                self.timer_at = None;
            }
        }
    }

    /// Leased: nobody reads the device, and the stack thread leaves it to
    /// the application thread expected back (`lead.rs`).
    fn device_leased(&self) -> bool {
        !self.stack_watches && self.rx_owner == RxOwner::Nobody
    }

    fn set_timer(&mut self, due: Instant) {
        let us = due
            .total_micros()
            .saturating_sub(self.now().total_micros())
            .max(1); // zero would disarm it
        let when = Expiration::OneShot(TimeSpec::from_duration(Duration::from_micros(us)));
        if let Err(e) = self.timer.set(when, TimerSetTimeFlags::empty()) {
            log::error!("cannot arm the stack's timer: {e}");
        }
        self.timer_at = Some(due);
    }

    /// Stops the stack (device failure or shutdown): every blocked call,
    /// the leader and the stack thread return.
    fn halt(&mut self, why: String) {
        if self.stopped.is_none() {
            if why != SHUT_DOWN {
                log::error!("{why}");
            }
            self.stopped = Some(why);
        }
        // Live captures end too: their readers see end-of-stream.
        self.link.close_taps();
        for w in self.waiters.values() {
            w.cond.notify_all();
        }
        for p in self.polls.values() {
            p.cond.notify_all();
        }
        for c in &self.followers {
            c.notify_all();
        }
        let _ = self.halt_fd.write(1);
    }

    /// A new live subscriber to every frame the link sees.
    pub fn frame_tap(&mut self, capacity: usize) -> tap::FrameTap {
        self.link.subscribe(capacity)
    }

    /// Every counter: the stack's layers and the link's (`tap.dropped`).
    pub fn counters(&self) -> crate::stack::Counters {
        let mut all = self.stack.counters();
        all.merge(self.link.counters());
        all
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

    /// Whether the stack thread is asleep, waiting for frames or its next
    /// deadline (for tests of the wake-up logic).
    pub fn stack_thread_sleeping(&self) -> bool {
        self.sleeping.is_some()
    }

    /// Whether an application thread leads: it owns the device, blocked
    /// in a call (for tests of the hand-off).
    pub fn application_thread_leads(&self) -> bool {
        self.lead.is_some()
    }

    /// How many blocked calls wait as followers (for tests).
    pub fn followers(&self) -> usize {
        self.followers.len()
    }

    /// The stack thread's read is done: the receive side is free, and a
    /// call that became a follower meanwhile (finding the stack thread
    /// reading) is woken to lead, as a returning leader hands it on
    /// (`lead.rs`); else it would wait for its socket's news while nobody
    /// sleeps on the device.
    pub(super) fn stack_thread_read_done(&mut self) {
        self.rx_owner = RxOwner::Nobody;
        if let Some(next) = self.followers.last() {
            defer_wake(&mut self.wakes, &self.followers, next);
        }
    }

    /// Whether the device pushed back while the stack thread sleeps
    /// without polling for POLLOUT. (Deadlines need no wake-up: they move
    /// its timer.)
    fn stack_thread_needs_wake(&self) -> bool {
        self.tx_blocked && self.sleeping.is_some_and(|s| !s.want_write)
    }
}

/// Whether `r` is news that stops a leader reading frames (`Lead::news`):
/// data, a connection to accept or an error. Once the peer's FIN is in,
/// only an error is (the read cannot block any more, and the leader
/// returns after this pass): the application will close, which no peer
/// waits for, and what follows a FIN on the device is most often that
/// peer's next connection (connect, exchange, close, connect: FIN then
/// SYN), whose SYN,ACK then goes out before the close and its FIN, not
/// after (one read that says EAGAIN per closed connection).
fn stops_reading(r: Readiness) -> bool {
    (r.readable && !r.hup) || r.error
}

fn readiness_of(stack: &Stack, id: SocketId) -> Readiness {
    match id {
        SocketId::Udp(h) => stack.udp.readiness(crate::stack::udp::UdpHandle(h)),
        SocketId::Tcp(h) => stack.tcp.readiness(crate::stack::tcp::TcpHandle(h)),
    }
}

/// What `Core::halt` is given on an orderly shutdown (not logged as an error).
const SHUT_DOWN: &str = "shut down";

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
    /// returns `WouldBlock` and `blocking` is set, waits (leading the
    /// stack, or on `id`'s condition) until `deadline`; then returns
    /// `WouldBlock` (like std's socket timeouts on Unix) or `timeout_kind`.
    pub fn block_on<T>(
        &self,
        id: SocketId,
        wait: WaitFor,
        blocking: bool,
        timeout: Option<Duration>,
        timeout_kind: io::ErrorKind,
        mut op: impl FnMut(&mut Core) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut core = self.lock();
        // On the core's clock (runtime/clock.rs), like every deadline here.
        let deadline = timeout.map(|t| core.now() + t);
        let cond = core.waiter(id);
        let r = self.run_blocking(core, &cond, Some((id, wait)), deadline, |core| {
            let result = op(core);
            let now = core.now();
            core.transmit(now);
            match result {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && blocking => None,
                r => Some(r),
            }
        });
        r.unwrap_or_else(|| Err(io::Error::new(timeout_kind, "operation timed out")))
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
    opts: &link::LinkOptions,
) -> Result<Arc<Shared>, String> {
    let link = Link::new(opts)?;
    // With a device that takes virtio-net headers and no fault injector
    // (which must see every frame on its own), checksums and segmentation
    // are left to the kernel; a capture still shows wire frames
    // (`observe_wire`).
    let vnet = device.gso() && !link.faults_active();
    let tx = TxOffloads::new(vnet);
    stack.set_tx_offloads(vnet, vnet);
    let efd = || {
        EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
            .map_err(|e| format!("cannot create eventfd: {e}"))
    };
    let (wake, kick, halt) = (efd()?, Arc::new(efd()?), Arc::new(efd()?));
    let timer = TimerFd::new(
        ClockId::CLOCK_MONOTONIC,
        TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
    )
    .map(Arc::new)
    .map_err(|e| format!("cannot create timerfd: {e}"))?;
    let (lead_wait, stack_wait) = lead::wait_sets(&*device, &kick, &halt, &wake, &timer)?;
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
        tx,
        stopped: None,
        events: Vec::new(),
        wakes: Vec::new(),
        sleeping: None,
        rx_owner: RxOwner::Nobody,
        lead: None,
        followers: Vec::new(),
        kick: kick.clone(),
        halt_fd: halt.clone(),
        timer: timer.clone(),
        timer_at: None,
        stack_watches: true,
        lease_until: None,
        rx_backlog: false,
        rx_coalesce: false,
    };
    let shared = Arc::new(Shared {
        core: Mutex::new(core),
        wake,
        join: Mutex::new(None),
        device,
        rx: Mutex::new(RxBatch::new()),
        lead_wait,
        stack_wait,
        kick,
        halt,
        timer,
        busy_poll: opts.busy_poll,
    });
    let handle = thread::spawn(shared.clone())?;
    *shared.join.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
    Ok(shared)
}

/// Stops the stack thread and waits for it; every blocked call returns.
pub fn stop(shared: &Shared) {
    {
        let mut core = shared.lock();
        core.link.flush_capture();
        core.halt(SHUT_DOWN.into());
    }
    let handle = shared.join.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(h) = handle
        && h.thread().id() != std::thread::current().id()
    {
        let _ = h.join();
    }
}
