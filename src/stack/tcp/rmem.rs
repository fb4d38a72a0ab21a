//! The layer-wide account of receive memory, Linux's tcp_mem for the
//! receive side: the pages of receive ring storage that hold data, in
//! order or parked out of order (a hole's pages count: its storage is set
//! aside), against three marks. Without it, `--max-connections` peers
//! that fill grown windows while their applications stop reading could
//! hold connections × largest ring.
//!
//! - Above `pressure` (until back below `low`): receive rings stop
//!   growing (Linux tcp_rcv_space_adjust / tcp_under_memory_pressure).
//! - At `high`, data that would need pages beyond it is dropped (Linux
//!   tcp_try_rmem_schedule failing: TCPRcvQDrop, TCPOFODrop); data that
//!   fits in pages a ring is already charged for is still taken; windows
//!   offer nothing beyond it. Except in-order data onto an empty queue,
//!   which Linux always takes (sk_forced_mem_schedule), and a page of
//!   window such a connection always offers: `high` is passed by at most
//!   one segment per connection whose application has read everything.
//!
//! Only `Receiver` charges and uncharges it, by the change in what its
//! ring holds, so the account is exact. It counts the extent of the
//! data held, as Linux does, not resident memory (a ring lent by the
//! pool is resident whole); spare storage is the pool's, bounded by its
//! own limits.

/// Marks of the receive-storage account, in bytes (Linux's
/// net.ipv4.tcp_mem counts pages; these are bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TcpMem {
    /// Memory pressure ends once the account falls below this.
    pub low: usize,
    /// Memory pressure begins once the account rises above this.
    pub pressure: usize,
    /// Hard limit: storage beyond it is refused.
    pub high: usize,
}

impl Default for TcpMem {
    /// Fixed, not derived from the machine's memory (the core does not
    /// look at the machine, and tests stay deterministic): 128 MiB is
    /// 512 connections with a full default 256 KiB ring, or 21 with rings
    /// grown to the 6 MiB most, far beyond what bulk transfers need, and
    /// 32,768 connections with one page of unread request each; it stays
    /// well inside the smallest machines this runs on. Pressure at half
    /// of it leaves room for windows already offered; `low` at 3/4 of
    /// `pressure` is Linux's own ratio (tcp_init_mem).
    fn default() -> TcpMem {
        TcpMem {
            low: 48 << 20,
            pressure: 64 << 20,
            high: 128 << 20,
        }
    }
}

impl TcpMem {
    /// Parses `LOW,PRESSURE,HIGH` (bytes, each with an optional K, M or G
    /// suffix of powers of 1024), non-decreasing.
    pub fn parse(s: &str) -> Result<TcpMem, String> {
        let v: Vec<usize> = s
            .split(',')
            .map(|p| parse_size(p.trim()))
            .collect::<Result<_, _>>()?;
        let [low, pressure, high] = v[..] else {
            return Err(format!(
                "expected LOW,PRESSURE,HIGH (three sizes), got {s:?}"
            ));
        };
        if !(low <= pressure && pressure <= high) {
            return Err(format!("need LOW <= PRESSURE <= HIGH, got {s:?}"));
        }
        Ok(TcpMem {
            low,
            pressure,
            high,
        })
    }
}

/// `LOW,PRESSURE,HIGH` as `parse` reads it, each with the largest
/// suffix that divides it.
impl std::fmt::Display for TcpMem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let size = |n: usize| match n.trailing_zeros() {
            _ if n == 0 => "0".to_string(),
            z if z >= 30 => format!("{}G", n >> 30),
            z if z >= 20 => format!("{}M", n >> 20),
            z if z >= 10 => format!("{}K", n >> 10),
            _ => n.to_string(),
        };
        write!(
            f,
            "{},{},{}",
            size(self.low),
            size(self.pressure),
            size(self.high)
        )
    }
}

/// `N`, `NK`, `NM` or `NG` (powers of 1024).
fn parse_size(p: &str) -> Result<usize, String> {
    let (digits, shift) = match p.char_indices().last() {
        Some((i, 'k' | 'K')) => (&p[..i], 10),
        Some((i, 'm' | 'M')) => (&p[..i], 20),
        Some((i, 'g' | 'G')) => (&p[..i], 30),
        _ => (p, 0),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("bad size {p:?} (bytes, or with K, M or G)"))
}

/// The account itself: one per TCP layer.
#[derive(Debug)]
pub struct RcvMem {
    marks: TcpMem,
    held: usize,
    pressure: bool,
}

impl RcvMem {
    /// Nothing held, no pressure.
    pub fn new(marks: TcpMem) -> RcvMem {
        RcvMem {
            marks,
            held: 0,
            pressure: false,
        }
    }

    /// Bytes of receive storage charged to connections.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Whether receive buffers may not grow.
    pub fn under_pressure(&self) -> bool {
        self.pressure
    }

    /// Whether `n` more bytes stay within the hard limit.
    pub fn admits(&self, n: usize) -> bool {
        n <= self.headroom()
    }

    /// Bytes left below the hard limit.
    pub fn headroom(&self) -> usize {
        self.marks.high.saturating_sub(self.held)
    }

    /// Adds `n` bytes (which `admits` allowed); memory pressure begins
    /// above `pressure`.
    pub(super) fn add(&mut self, n: usize) {
        self.held = self.held.saturating_add(n);
        self.pressure |= self.held > self.marks.pressure;
    }

    /// Gives `n` bytes back; pressure ends below `low`.
    pub(super) fn uncharge(&mut self, n: usize) {
        self.held = self.held.saturating_sub(n);
        if self.held < self.marks.low {
            self.pressure = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_parse_with_suffixes_and_in_order() {
        assert_eq!(
            TcpMem::parse("48M, 64M,1g"),
            Ok(TcpMem {
                low: 48 << 20,
                pressure: 64 << 20,
                high: 1 << 30
            })
        );
        assert_eq!(TcpMem::parse("1,2,3").map(|m| m.high), Ok(3));
        // The CLI shows and reads back the default this way.
        assert_eq!(TcpMem::default().to_string(), "48M,64M,128M");
        let odd = TcpMem {
            low: 0,
            pressure: 1536,
            high: 3 << 30,
        };
        assert_eq!(odd.to_string(), "0,1536,3G");
        assert_eq!(TcpMem::parse(&odd.to_string()), Ok(odd));
        for bad in [
            "1,2",
            "1,2,3,4",
            "3,2,1",
            "x,1,2",
            "1,2,99999999999999999999G",
            "",
        ] {
            assert!(TcpMem::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pressure_has_hysteresis() {
        let mut m = RcvMem::new(TcpMem {
            low: 100,
            pressure: 200,
            high: 300,
        });
        m.add(200);
        assert!(!m.under_pressure());
        m.add(50);
        assert!(m.under_pressure());
        assert!(m.admits(50) && !m.admits(51));
        m.add(50);
        assert_eq!((m.held(), m.headroom()), (300, 0));
        m.uncharge(150);
        assert!(m.under_pressure(), "150 is not below low");
        m.uncharge(51);
        assert!(!m.under_pressure());
        assert_eq!(m.held(), 99);
    }
}
