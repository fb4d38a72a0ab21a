//! Gives freed memory back to the OS after a burst of connections.
//!
//! Every connection's buffers come from malloc. When a burst of thousands
//! of connections ends, the stack frees all of it, but glibc keeps the
//! freed chunks in its arenas and returns only a free top of the heap:
//! measured with 5,000 echo connections, `tapstack echo` stayed at 87-110
//! MB resident (5.6 MB before the burst) until `malloc_trim(0)`, which
//! releases every free page in every arena, brought it to 8.3 MB.
//!
//! So the stack thread looks at the arenas at most once a second, first
//! freeing the TCP buffer pool's spares that sat unused for that second
//! (else the pool keeps up to 32 MiB of them resident), and trims when
//! memory was freed since the last trim: the free bytes grew above their
//! lowest point, or the bytes in use fell below their highest point
//! (whichever says more). Both are needed: a burst that comes and goes
//! between two looks shows only as free bytes, but glibc shrinks an
//! arena's heap by itself when its top is free, which lowers the free
//! bytes while chunks below it are freed (seen: 32 MiB freed by the pool
//! while the free bytes fell 640 MiB), and only the bytes in use show it.
//! It trims
//! - while memory is being freed, when `STEP` was freed and the free bytes
//!   exceed the bytes in use;
//! - once the frees stopped (free and in-use bytes each moved less than
//!   `QUIET` since the last look), when `SETTLE` was freed: else a burst's
//!   tail under `STEP` stayed resident.
//!
//! A trimmed chunk stays free (only its pages go), so both marks restart
//! after each trim: no trim repeats until memory is allocated and freed
//! again.

use std::time::{Duration, Instant};

/// How often the arenas are looked at.
const PERIOD: Duration = Duration::from_secs(1);
/// Freed bytes worth a trim while memory is still being freed.
const STEP: usize = 8 << 20;
/// Freed bytes worth a trim once the frees stopped.
const SETTLE: usize = 1 << 20;
/// Less change than this between two looks: the frees stopped.
const QUIET: usize = 256 << 10;

/// The arenas' free and in-use bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Arenas {
    free: usize,
    used: usize,
}

/// What was seen since the last trim.
#[derive(Clone, Copy, Debug)]
struct Marks {
    /// Fewest free bytes.
    low_free: usize,
    /// Most bytes in use.
    high_used: usize,
    /// At the last look.
    last: Arenas,
}

impl Marks {
    fn new(now: Arenas) -> Marks {
        Marks {
            low_free: now.free,
            high_used: now.used,
            last: now,
        }
    }

    /// Takes in a look; returns the bytes freed since the last trim.
    fn see(&mut self, now: Arenas) -> usize {
        self.low_free = self.low_free.min(now.free);
        self.high_used = self.high_used.max(now.used);
        (now.free - self.low_free).max(self.high_used - now.used)
    }

    /// Whether to trim, given the bytes freed since the last trim.
    fn should_trim(&self, now: Arenas, freed: usize) -> bool {
        let quiet =
            now.free.abs_diff(self.last.free) < QUIET && now.used.abs_diff(self.last.used) < QUIET;
        (freed >= STEP && now.free > now.used) || (quiet && freed >= SETTLE)
    }

    /// One look: whether to trim now (the marks then restart from `now`),
    /// and the bytes freed since the last trim that are still untrimmed.
    fn look(&mut self, now: Arenas) -> (bool, usize) {
        let freed = self.see(now);
        let trim = self.should_trim(now, freed);
        if trim {
            *self = Marks::new(now);
        }
        self.last = now;
        (trim, if trim { 0 } else { freed })
    }
}

/// The stack thread's trim state.
pub struct Trimmer {
    next: Instant,
    /// None before the first look.
    marks: Option<Marks>,
    /// The last look saw freed memory or pooled storage that may still be
    /// trimmed.
    pending: bool,
}

impl Trimmer {
    pub fn new() -> Trimmer {
        Trimmer {
            next: Instant::now() + PERIOD,
            marks: None,
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
        let arenas = arena_bytes()?;
        let marks = self.marks.get_or_insert(Marks::new(arenas));
        let (trim, freed) = marks.look(arenas);
        if trim {
            release_free_pages();
        }
        self.pending = pooled || freed >= SETTLE;
        self.pending.then_some(PERIOD)
    }
}

/// Free and in-use bytes of malloc's arenas.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn arena_bytes() -> Option<Arenas> {
    // SAFETY: glibc's mallinfo2 takes no arguments and only reads the
    // arenas under their locks; callable from any thread.
    let mi = unsafe { nix::libc::mallinfo2() };
    Some(Arenas {
        free: mi.fordblks,
        used: mi.uordblks,
    })
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn arena_bytes() -> Option<Arenas> {
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

    fn at(free: usize, used: usize) -> Arenas {
        Arenas {
            free: free * MIB,
            used: used * MIB,
        }
    }

    /// Runs looks through fresh marks as `tick` does; returns which
    /// looks trimmed.
    fn trims(looks: &[Arenas]) -> Vec<bool> {
        let mut m = Marks::new(looks[0]);
        looks.iter().map(|&a| m.look(a).0).collect()
    }

    #[test]
    fn trims_a_big_free_at_once() {
        // 8 MiB freed in a second, more free than in use: at once...
        assert_eq!(trims(&[at(12, 5), at(20, 5)]), [false, true]);
        // ...but not while most memory is still in use and being freed.
        assert_eq!(trims(&[at(12, 48), at(20, 40)]), [false, false]);
    }

    #[test]
    fn trims_a_small_tail_once_the_frees_stop() {
        // 3 MiB freed over two seconds: wait while it moves, then trim
        // once, and not again while nothing more is freed.
        let looks = [at(12, 8), at(13, 7), at(15, 5), at(15, 5), at(15, 5)];
        assert_eq!(trims(&looks), [false, false, false, true, false]);
        // Under SETTLE: nothing.
        assert_eq!(trims(&[at(12, 5), at(12, 5), at(12, 5)]), [false; 3]);
    }

    #[test]
    fn sees_frees_while_glibc_shrinks_the_heap() {
        // After a trim, 32 MiB freed while glibc returned the arena's
        // free top (640 MiB) by itself: the free bytes fell, the bytes
        // in use tell.
        let looks = [at(1000, 38), at(350, 6), at(350, 6)];
        assert_eq!(trims(&looks), [false, true, false]);
    }
}
