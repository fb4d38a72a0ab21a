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
pub mod tap;
mod thread;
mod trim;

use std::collections::{HashMap, HashSet};
use std::io::{self, IoSlice};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::device::Device;
use crate::device::vnet;
use crate::stack::iface::{Frame, Offload, TxCsum};
use crate::stack::ip::RxChecksum;
use crate::stack::socket::{Readiness, SocketId};
use crate::stack::{Instant, Stack};
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
    /// awake (it recomputes its deadline before it sleeps again).
    sleeping: Option<Sleep>,
}

/// What the device does for outgoing frames: learnt at start, lowered
/// for good when it refuses (EINVAL).
struct TxOffloads {
    /// It takes virtio-net headers (a TAP with IFF_VNET_HDR, no fault
    /// injector in the way).
    vnet: bool,
    /// It completes partial TCP checksums.
    csum: bool,
    /// It cuts TCP super-segments.
    gso: bool,
    /// Where super-segments are cut and checksums completed for a capture.
    scratch: Vec<u8>,
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

    /// Writes one frame the way its offload state asks: whole with a
    /// virtio-net header when the device does what it needs, otherwise
    /// with that work done here (a super-segment cut into segments, a
    /// partial checksum completed).
    fn send_frame(&mut self, now: Instant, frame: &mut Frame) {
        let off = frame.offload();
        let Some(gso) = off.gso else {
            return self.send_single(now, frame, off.csum);
        };
        if self.tx.gso {
            self.observe_wire(frame, off);
            match self.send_vnet(frame, off) {
                Ok(()) => {
                    let counters = &mut self.stack.iface.counters;
                    counters.inc("tx.gso_frames");
                    counters.add("tx.gso_segments", vnet::segment_count(frame, gso) as u64);
                    return;
                }
                Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
                    // A kernel that takes the virtio-net header but not our
                    // GSO frames (virtio_net_hdr_to_skb said no): this one
                    // and any still queued are cut here, and TCP builds no
                    // more.
                    self.stack.iface.counters.inc("tx.gso_refused");
                    log::debug!(
                        "device refused a GSO super-frame ({e}): single frames from now on"
                    );
                    self.tx.gso = false;
                    self.stack.set_tx_offloads(self.tx.csum, false);
                }
                Err(_) => return,
            }
        }
        // The segments keep partial sums where the device completes them.
        let full = !self.tx.csum;
        let csum = if full { TxCsum::Full } else { off.csum };
        let mut scratch = std::mem::take(&mut self.tx.scratch);
        vnet::segment(frame, gso, full, &mut scratch, &mut |seg| {
            self.send_single(now, seg, csum)
        });
        self.tx.scratch = scratch;
    }

    /// Writes one frame (not a super-segment): with a virtio-net header
    /// where the device takes them, through the link (fault injection,
    /// capture) otherwise; a partial checksum the device will not
    /// complete is completed here.
    fn send_single(&mut self, now: Instant, frame: &mut [u8], csum: TxCsum) {
        if self.tx.vnet {
            let off = Offload { csum, gso: None };
            if csum == TxCsum::Full || self.tx.csum {
                self.observe_wire(frame, off);
                match self.send_vnet(frame, off) {
                    Err(e)
                        if csum != TxCsum::Full && e.raw_os_error() == Some(nix::libc::EINVAL) =>
                    {
                        // Not even a partial checksum: the stack sums its own
                        // from now on, and frames it already made with
                        // partial sums get theirs completed here.
                        self.stack.iface.counters.inc("tx.csum_offload_refused");
                        log::debug!(
                            "device refused a partial checksum ({e}): no offloads from now on"
                        );
                        self.tx.csum = false;
                        self.tx.gso = false;
                        self.stack.set_tx_offloads(false, false);
                    }
                    _ => return,
                }
            }
            if let TxCsum::Partial { start, offset } = csum {
                vnet::complete_checksum(frame, start.into(), offset.into());
            }
            self.observe_wire(frame, Offload::default());
            let _ = self.send_vnet(frame, Offload::default());
            return;
        }
        if let TxCsum::Partial { start, offset } = csum {
            vnet::complete_checksum(frame, start.into(), offset.into());
        }
        let device = self.device.clone();
        let mut blocked = false;
        self.link.outbound(now, frame, &mut |f| {
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
    }

    /// One TAP write: the header the offload state makes, then the frame.
    /// Push-back is counted and stops writing until POLLOUT (the frame is
    /// lost to this attempt, like a drop; TCP retransmits); EINVAL is for
    /// the caller to judge.
    fn send_vnet(&mut self, frame: &[u8], off: Offload) -> io::Result<()> {
        let hdr = vnet::tx_header(&off).to_bytes();
        match self
            .device
            .send_vnet(&[IoSlice::new(&hdr), IoSlice::new(frame)])
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.stack.iface.counters.inc("tx.device_busy");
                self.tx_blocked = true;
                Err(e)
            }
            Err(e) => {
                if e.raw_os_error() != Some(nix::libc::EINVAL) {
                    log::debug!("device send failed: {e}");
                }
                Err(e)
            }
        }
    }

    /// Capture and trace see the frames the wire carries: a super-segment
    /// as the segments the kernel cuts it into, each with its complete
    /// checksum (as tcpdump on the peer's side of the link shows them).
    fn observe_wire(&mut self, frame: &[u8], off: Offload) {
        if !self.link.captures() {
            return;
        }
        let link = &mut self.link;
        match (off.gso, off.csum) {
            (Some(gso), _) => vnet::segment(frame, gso, true, &mut self.tx.scratch, &mut |s| {
                link.observe_outbound(s)
            }),
            (None, TxCsum::Partial { start, offset }) => {
                let copy = &mut self.tx.scratch;
                copy.clear();
                copy.extend_from_slice(frame);
                vnet::complete_checksum(copy, start.into(), offset.into());
                link.observe_outbound(copy);
            }
            (None, TxCsum::Full) => link.observe_outbound(frame),
        }
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

/// A wake-up deferred until the core's lock is released.
pub(crate) enum Wake {
    /// Threads blocked in a socket call or `Poll::poll`.
    Cond(Arc<Condvar>),
    /// The eventfd of a poll whose owner waits in epoll (the daemon).
    Fd(Arc<EventFd>),
}

fn defer_wake(wakes: &mut Vec<Wake>, cond: &Arc<Condvar>) {
    if !wakes
        .iter()
        .any(|w| matches!(w, Wake::Cond(c) if Arc::ptr_eq(c, cond)))
    {
        wakes.push(Wake::Cond(cond.clone()));
    }
}

/// Signals every condition and eventfd in `wakes`, leaving it empty.
/// Called with the lock released.
pub(crate) fn fire_wakes(wakes: &mut Vec<Wake>) {
    for w in wakes.drain(..) {
        match w {
            Wake::Cond(c) => c.notify_all(),
            Wake::Fd(fd) => {
                let _ = fd.write(1);
            }
        }
    }
}

thread_local! {
    /// An application thread's scratch list for `Core::take_wakes`.
    static WAKES: std::cell::RefCell<Vec<Wake>> = const { std::cell::RefCell::new(Vec::new()) };
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
        let mut core = self.lock();
        // On the core's clock (runtime/clock.rs), like every deadline here.
        let deadline = timeout.map(|t| core.now() + t);
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
                    let now = core.now();
                    if d <= now {
                        return Err(io::Error::new(timeout_kind, "operation timed out"));
                    }
                    Some(d - now)
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
    // With a device that takes virtio-net headers and no fault injector
    // (which must see every frame on its own), checksums and segmentation
    // are left to the kernel; a capture still shows wire frames
    // (`observe_wire`).
    let vnet = device.gso() && !link.faults_active();
    let tx = TxOffloads {
        vnet,
        csum: vnet,
        gso: vnet,
        scratch: Vec::new(),
    };
    stack.set_tx_offloads(tx.csum, tx.gso);
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
        tx,
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
        core.link.close_taps();
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
