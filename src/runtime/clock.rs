//! The only place that reads the system clock: converts a monotonic
//! `std::time::Instant` into the core's microsecond `Instant`.

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
