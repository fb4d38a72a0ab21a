//! Wake-ups decided under the core's lock and fired after it is released:
//! the leader is kicked through its eventfd, followers through their
//! condition, a daemon's poll through its eventfd.

use std::sync::{Arc, Condvar, MutexGuard};

use nix::sys::eventfd::EventFd;

use super::lead::Lead;
use super::{Core, Shared};

/// A deferred wake-up for the leader, which sleeps in epoll rather than
/// on its condition: kick it (once per sleep).
/// `data`: the socket has data or a connection to take (or failed):
/// the leader stops reading frames (`Lead::news`, `stops_reading`). Send
/// space and a bare end of stream do not stop
/// it: a writer that takes each ACK frame as it comes writes smaller
/// super-frames (measured: 1.83 instead of 1.43 TAP writes per 64 KB).
pub(super) fn kick_leader_if(
    lead: &mut Option<Lead>,
    kick: &EventFd,
    cond: &Arc<Condvar>,
    data: bool,
) {
    if let Some(l) = lead
        && Arc::ptr_eq(&l.cond, cond)
    {
        l.news |= data;
        if l.waiting {
            l.waiting = false;
            let _ = kick.write(1);
        }
    }
}

/// A wake-up deferred until the core's lock is released.
pub(crate) enum Wake {
    /// Threads blocked in a socket call or `Poll::poll`.
    Cond(Arc<Condvar>),
    /// The eventfd of a poll whose owner waits in epoll (the daemon).
    Fd(Arc<EventFd>),
}

/// Defers signalling `cond` if a follower waits on it. Only followers
/// sleep on a condition (the leader sleeps in epoll and is kicked), and a
/// follower enters `followers` under the lock before it waits, after
/// checking its operation: one that is not there yet will see the change.
/// (A futex wake is a system call even when nobody waits: ~3 per
/// connection in the services' `Poll`, which leads itself.)
pub(super) fn defer_wake(wakes: &mut Vec<Wake>, followers: &[Arc<Condvar>], cond: &Arc<Condvar>) {
    if followers.iter().any(|f| Arc::ptr_eq(f, cond))
        && !wakes
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
    pub(super) static WAKES: std::cell::RefCell<Vec<Wake>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Releases the lock, then signals what the operation made ready, and
/// wakes the stack thread if `wake_stack`.
pub(super) fn unlock_and_wake(shared: &Shared, mut core: MutexGuard<'_, Core>, wake_stack: bool) {
    WAKES.with_borrow_mut(|w| {
        core.take_wakes(w);
        drop(core);
        fire_wakes(w);
    });
    if wake_stack {
        shared.wake();
    }
}
