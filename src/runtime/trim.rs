//! Gives freed memory back to the OS after a burst of connections.
//!
//! Every connection's buffers come from malloc. When a burst of thousands
//! of connections ends, the stack frees all of it, but glibc keeps the
//! freed chunks in its arenas and returns only a free top of the heap:
//! measured with 5,000 echo connections, `tapstack echo` stayed at 87-110
//! MB resident (5.6 MB before the burst) until `malloc_trim(0)`, which
//! releases every free page in every arena, brought it to 8.3 MB.
//!
//! So the stack thread looks at the arenas' free bytes at most once a
//! second, first freeing the TCP buffer pool's spares that sat unused for
//! that second (else the pool keeps up to 32 MiB of them resident), and
//! trims:
//! - while memory is being freed, when the free bytes grew by `STEP` since
//!   their lowest point since the last trim (something big was freed) and
//!   exceed the bytes in use;
//! - once the frees stopped (the free bytes moved less than `QUIET` since
//!   the last look), when they grew by `SETTLE` since that lowest point.
//!   Without this rule the frees after the last `STEP` trim of a burst
//!   stayed resident whenever they summed to less than `STEP`.
//!
//! A trimmed chunk stays free (only its pages go), so the low-water mark
//! restarts at the free bytes after each trim: no trim repeats until
//! memory is allocated and freed again.

use std::time::{Duration, Instant};

/// How often the arenas are looked at.
const PERIOD: Duration = Duration::from_secs(1);
/// Freed bytes worth a trim while memory is still being freed.
const STEP: usize = 8 << 20;
/// Freed bytes worth a trim once the frees stopped.
const SETTLE: usize = 1 << 20;
/// Less change than this in the free bytes between two looks: the frees
/// stopped.
const QUIET: usize = 256 << 10;

/// The stack thread's trim state.
pub struct Trimmer {
    next: Instant,
    /// Fewest free bytes seen since the last trim.
    low: usize,
    /// Free bytes at the last look.
    last: usize,
    /// The last look saw freed memory that may still be trimmed.
    pending: bool,
}

/// Whether to trim, given the arenas' free and in-use bytes now, the
/// fewest free bytes since the last trim and the free bytes a period ago.
fn should_trim(free: usize, used: usize, low: usize, last: usize) -> bool {
    let freed = free.saturating_sub(low);
    let quiet = free.abs_diff(last) < QUIET;
    (freed >= STEP && free > used) || (quiet && freed >= SETTLE)
}

impl Trimmer {
    pub fn new() -> Trimmer {
        Trimmer {
            next: Instant::now() + PERIOD,
            low: usize::MAX,
            last: 0,
            pending: false,
        }
    }

    /// Looks at the arenas if a period has passed, after
    /// `release_idle_storage` (which frees the pools' idle spares and says
    /// whether some remain). Call it without the stack's lock: trimming
    /// takes a few milliseconds after a burst. Returns how soon the stack
    /// thread should call again: `Some` while freed memory or pooled
    /// storage may still be on its way to a trim (so an idle stack still
    /// trims after a burst), `None` when nothing is pending.
    pub fn tick(&mut self, release_idle_storage: impl FnOnce() -> bool) -> Option<Duration> {
        let now = Instant::now();
        if now < self.next {
            return self.pending.then(|| self.next - now);
        }
        self.next = now + PERIOD;
        let pooled = release_idle_storage();
        let (free, used) = arena_bytes()?;
        self.low = self.low.min(free);
        if should_trim(free, used, self.low, self.last) {
            release_free_pages();
            self.low = free;
        }
        self.last = free;
        self.pending = pooled || free >= self.low + SETTLE;
        self.pending.then_some(PERIOD)
    }
}

/// Free and in-use bytes of malloc's arenas.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn arena_bytes() -> Option<(usize, usize)> {
    // SAFETY: glibc's mallinfo2 takes no arguments and only reads the
    // arenas under their locks; callable from any thread.
    let mi = unsafe { nix::libc::mallinfo2() };
    Some((mi.fordblks, mi.uordblks))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn arena_bytes() -> Option<(usize, usize)> {
    None
}

fn release_free_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: glibc's malloc_trim takes the arena locks itself and only
    // returns free pages to the kernel (madvise); no pointer is involved.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn trims_a_big_free_at_once_and_a_small_one_when_the_frees_stop() {
        // 8 MiB freed in the last second, more than in use: at once.
        assert!(should_trim(20 * MIB, 5 * MIB, 12 * MIB, 14 * MIB));
        // ...but not while most memory is still in use.
        assert!(!should_trim(20 * MIB, 40 * MIB, 12 * MIB, 14 * MIB));
        // 3 MiB freed, still being freed (2 MiB in the last second): wait.
        assert!(!should_trim(15 * MIB, 5 * MIB, 12 * MIB, 13 * MIB));
        // The same 3 MiB a second later with no change: the burst's tail
        // is trimmed even though it is under STEP.
        assert!(should_trim(15 * MIB, 5 * MIB, 12 * MIB, 15 * MIB));
        // Quiet but under SETTLE freed (e.g. right after a trim): nothing.
        assert!(!should_trim(
            12 * MIB + MIB / 2,
            5 * MIB,
            12 * MIB,
            12 * MIB + MIB / 2
        ));
    }
}
