//! Named event counters. Every drop in the stack goes through one of these
//! so that `tapstack` can print why each discarded frame was discarded.
//!
//! Names are `layer.reason` (e.g. `ipv4.bad_checksum`). A sorted map keyed by
//! static strings keeps adding a counter a one-line change; drops are not on
//! the hot path, so the lookup cost does not matter there.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Default, Clone, Debug)]
/// Event counters by `layer.reason` name; a counter never set reads 0.
pub struct Counters {
    map: BTreeMap<&'static str, u64>,
}

impl Counters {
    /// No counters set.
    pub fn new() -> Counters {
        Counters::default()
    }

    /// Adds one to counter `name`.
    pub fn inc(&mut self, name: &'static str) {
        self.add(name, 1);
    }

    /// Adds `n` to counter `name`.
    pub fn add(&mut self, name: &'static str, n: u64) {
        *self.map.entry(name).or_insert(0) += n;
    }

    /// The value of counter `name` (0 if never set).
    pub fn get(&self, name: &str) -> u64 {
        self.map.get(name).copied().unwrap_or(0)
    }

    /// Every counter that was set, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.map.iter().map(|(k, v)| (*k, *v))
    }

    /// Adds every counter of `other` into `self` (used to build one report
    /// from the per-layer counter sets).
    pub fn merge(&mut self, other: &Counters) {
        for (k, v) in other.iter() {
            self.add(k, v);
        }
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in self.iter() {
            writeln!(f, "  {k:<40} {v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_merges() {
        let mut a = Counters::new();
        a.inc("x.y");
        a.add("x.y", 2);
        let mut b = Counters::new();
        b.inc("x.y");
        b.inc("a.b");
        a.merge(&b);
        assert_eq!(a.get("x.y"), 4);
        assert_eq!(a.get("a.b"), 1);
        assert_eq!(a.get("missing"), 0);
        assert_eq!(a.iter().next(), Some(("a.b", 1)));
    }
}
