//! The core's clock: converts a monotonic `std::time::Instant` into the
//! core's microsecond `Instant`. It is the only source of `now` for the
//! stack and for the runtime's own deadlines (timers, blocking calls'
//! timeouts in `Shared::block_on`): the core itself reads no clock.
//!
//! Other readers of the system clock, none of which feeds the core: the
//! pcap writer stamps frames with wall-clock time (`SystemTime`, as
//! tcpdump does); `api::poll` and `api::bsd::readiness` bound an
//! application thread's own wait; the demo apps (`apps/`) and the
//! benchmark programs (`bin/`) time their own work.

use crate::stack::Instant;

#[derive(Clone, Copy, Debug)]
/// The stack's clock: microseconds since the clock was created.
pub struct Clock {
    origin: std::time::Instant,
}

impl Clock {
    /// A clock starting at zero now.
    pub fn new() -> Clock {
        Clock {
            origin: std::time::Instant::now(),
        }
    }

    /// Microseconds since `new`, as the core's `Instant`.
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.origin.elapsed().as_micros() as u64)
    }

    /// The std instant matching a core instant (for condvar deadlines).
    pub fn to_std(&self, t: Instant) -> std::time::Instant {
        self.origin + std::time::Duration::from_micros(t.total_micros())
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}
