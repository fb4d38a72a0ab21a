//! The `Poll` registries one socket is in. Nearly always one: kept inline
//! then, so a registered socket costs no allocation of its own (issue 15:
//! a one-element `Vec` was ~48 bytes of heap per idle connection).

use super::PollId;

/// A small set of poll ids, inline while it holds at most one.
#[derive(Debug)]
pub(super) enum PollSet {
    One(PollId),
    Many(Vec<PollId>),
}

impl PollSet {
    /// Adds `p` if it is not there yet.
    pub(super) fn insert(&mut self, p: PollId) {
        match self {
            PollSet::One(q) if *q == p => {}
            PollSet::One(q) => *self = PollSet::Many(vec![*q, p]),
            PollSet::Many(v) if !v.contains(&p) => v.push(p),
            PollSet::Many(_) => {}
        }
    }

    /// Removes `p`; `true` if the set is now empty.
    pub(super) fn remove(&mut self, p: PollId) -> bool {
        let PollSet::Many(v) = self else {
            return matches!(self, PollSet::One(q) if *q == p);
        };
        v.retain(|x| *x != p);
        match v[..] {
            [] => true,
            [only] => {
                *self = PollSet::One(only);
                false
            }
            _ => false,
        }
    }

    /// The ids, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = PollId> + '_ {
        let (one, many): (Option<PollId>, &[PollId]) = match self {
            PollSet::One(p) => (Some(*p), &[]),
            PollSet::Many(v) => (None, v),
        };
        one.into_iter().chain(many.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::{PollId, PollSet};

    #[test]
    fn one_inline_then_many_then_back() {
        let mut s = PollSet::One(1);
        s.insert(1);
        assert!(matches!(s, PollSet::One(1)));
        s.insert(2);
        s.insert(3);
        let mut ids: Vec<_> = s.iter().collect();
        ids.sort();
        assert_eq!(ids, [1, 2, 3]);
        assert!(!s.remove(2));
        assert!(!s.remove(1));
        assert!(matches!(s, PollSet::One(3)));
        assert!(!s.remove(7));
        assert!(s.remove(3));
        assert_eq!(
            std::mem::size_of::<PollSet>(),
            std::mem::size_of::<Vec<PollId>>()
        );
    }
}
