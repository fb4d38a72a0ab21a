//! TIME-WAIT (RFC 9293 3.3.2, 3.10.7.4) in a compact table: a closed
//! connection keeps only what it needs to re-acknowledge a retransmitted
//! FIN, not its buffers. RFC 6191 / Linux: a new SYN with a higher
//! sequence number or a newer timestamp may reuse the pair.
//!
//! Every entry lives the same `time_wait` from its last (re)start, so
//! expiry is a FIFO: O(1) per entry, whatever the table's size.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddrV4;
use std::time::Duration;

use super::options::{InSeg, OutHdr};
use super::seq::Seq;
use super::tcb::Tcb;
use crate::stack::time::Instant;

/// Bound of the table (Linux tcp_max_tw_buckets is larger; past the bound
/// connections skip TIME-WAIT and a counter goes up).
pub const MAX_TIME_WAIT: usize = 65536;

#[derive(Clone, Debug)]
pub struct TwEntry {
    pub snd_nxt: Seq,
    pub rcv_nxt: Seq,
    pub window: u16,
    /// (TS.Recent, our TSval offset) when timestamps were negotiated.
    pub ts: Option<(u32, u32)>,
    pub expires: Instant,
    /// Raw handle of a socket the application still holds.
    pub owner: Option<u32>,
    /// The connection's id (`SocketInfo::id`), kept into TIME-WAIT.
    pub id: u64,
}

impl TwEntry {
    pub fn from_tcb(tcb: &Tcb, expires: Instant, owner: Option<u32>, id: u64) -> TwEntry {
        TwEntry {
            snd_nxt: tcb.snd.snd_max(),
            rcv_nxt: tcb.rcv.nxt(),
            window: tcb.rcv.last_window_field(),
            ts: tcb
                .snd
                .timestamps()
                .then_some((tcb.rcv.ts_recent(), tcb.snd.ts_offset())),
            expires,
            owner,
            id,
        }
    }

    pub fn ack_header(&self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4) -> OutHdr {
        OutHdr {
            src_port: local.port(),
            dst_port: remote.port(),
            seq: self.snd_nxt,
            ack: Some(self.rcv_nxt),
            window: self.window,
            ts: self
                .ts
                .map(|(recent, off)| ((now.total_millis() as u32).wrapping_add(off), recent)),
            ..OutHdr::default()
        }
    }
}

/// What to do with a segment for a TIME-WAIT pair.
#[derive(Debug, PartialEq, Eq)]
pub enum TwVerdict {
    /// Dropped silently.
    Drop,
    /// Answer with an ACK (and maybe restart the timer).
    Ack,
    /// A RST closed it.
    Closed,
    /// A new SYN may reuse the pair: entry removed, hand it to the listener.
    Reuse,
}

pub type TwKey = (SocketAddrV4, SocketAddrV4);

/// Stale expiry records allowed beyond twice the entries before the queue
/// is compacted (paid for by as many restarts).
const SLACK: usize = 64;

#[derive(Debug)]
pub struct TimeWaitTable {
    map: HashMap<TwKey, TwEntry>,
    /// (expiry, pair) in the order they were (re)started, so in expiry
    /// order; a record whose time differs from its entry's is stale.
    expiry: VecDeque<(Instant, TwKey)>,
    time_wait: Duration,
}

impl TimeWaitTable {
    /// An empty table whose entries last `time_wait` (2 MSL).
    pub fn new(time_wait: Duration) -> TimeWaitTable {
        TimeWaitTable {
            map: HashMap::new(),
            expiry: VecDeque::new(),
            time_wait,
        }
    }

    pub fn get(&self, key: &TwKey) -> Option<&TwEntry> {
        self.map.get(key)
    }

    /// Every entry with its connection's addresses, in no order (`tapstack ss`).
    pub fn iter(&self) -> impl Iterator<Item = (&TwKey, &TwEntry)> {
        self.map.iter()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Expiry records, stale ones included (bounded by `2 * len + SLACK`).
    pub fn queue_len(&self) -> usize {
        self.expiry.len()
    }

    /// Adds (or replaces) the entry for `key`; it expires at `e.expires`,
    /// which the caller sets to now + `time_wait`.
    pub fn insert(&mut self, key: TwKey, e: TwEntry) {
        self.expiry.push_back((e.expires, key));
        self.map.insert(key, e);
        self.tidy();
    }

    /// The earliest expiry.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiry.front().map(|(t, _)| *t)
    }

    /// Removes one entry that expired at or before `now` and returns its
    /// owner (a socket the application still holds).
    pub fn pop_expired(&mut self, now: Instant) -> Option<Option<u32>> {
        let &(t, key) = self.expiry.front()?;
        if t > now {
            return None;
        }
        self.expiry.pop_front();
        let owner = self.map.remove(&key).and_then(|e| e.owner);
        self.tidy();
        Some(owner)
    }

    /// Keeps the front record live and stale records bounded.
    fn tidy(&mut self) {
        let live = |map: &HashMap<TwKey, TwEntry>, (t, k): &(Instant, TwKey)| {
            map.get(k).is_some_and(|e| e.expires == *t)
        };
        if self.expiry.len() > 2 * self.map.len() + SLACK {
            let map = &self.map;
            self.expiry.retain(|r| live(map, r));
        }
        while let Some(r) = self.expiry.front() {
            if live(&self.map, r) {
                break;
            }
            self.expiry.pop_front();
        }
    }

    /// RFC 9293 3.10.7.4 in TIME-WAIT.
    pub fn input(&mut self, key: &TwKey, seg: &InSeg, now: Instant) -> TwVerdict {
        let verdict = self.input_inner(key, seg, now);
        self.tidy();
        verdict
    }

    fn input_inner(&mut self, key: &TwKey, seg: &InSeg, now: Instant) -> TwVerdict {
        let Some(e) = self.map.get_mut(key) else {
            return TwVerdict::Drop;
        };
        if seg.rst {
            if seg.seq == e.rcv_nxt {
                self.map.remove(key);
                return TwVerdict::Closed;
            }
            return TwVerdict::Drop;
        }
        if seg.syn && seg.ack.is_none() {
            // RFC 6191 2: with timestamps on both sides the SYN's TSval
            // decides; one older than TS.Recent is rejected by PAWS (RFC
            // 7323 5.3 R1: ACK and drop), whatever its sequence number, as
            // Linux (tcp_timewait_state_process: paws_reject).
            let ts_age = match (e.ts, seg.ts) {
                (Some((recent, _)), Some((tsval, _))) => tsval.wrapping_sub(recent) as i32,
                _ => 0,
            };
            if ts_age < 0 {
                return TwVerdict::Ack;
            }
            if seg.seq.gt(e.rcv_nxt) || ts_age > 0 {
                self.map.remove(key);
                return TwVerdict::Reuse;
            }
            return TwVerdict::Ack;
        }
        if let (Some((recent, _)), Some((tsval, _))) = (e.ts, seg.ts)
            && (tsval.wrapping_sub(recent) as i32) < 0
        {
            return TwVerdict::Ack; // PAWS (RFC 7323 5.3)
        }
        if !seg.fin && seg.payload.is_empty() && seg.seq == e.rcv_nxt {
            return TwVerdict::Drop; // an in-window pure ACK needs no answer
        }
        if seg.fin && e.expires != now + self.time_wait {
            // A retransmitted FIN: ACK it and restart the 2 MSL timeout.
            // One record per distinct expiry keeps records unique.
            e.expires = now + self.time_wait;
            self.expiry.push_back((e.expires, *key));
        }
        TwVerdict::Ack
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TW: Duration = Duration::from_secs(60);

    fn key(port: u16) -> TwKey {
        (
            SocketAddrV4::new([10, 0, 0, 1].into(), port),
            SocketAddrV4::new([10, 0, 0, 2].into(), 80),
        )
    }

    fn entry(expires: Instant, owner: Option<u32>) -> TwEntry {
        TwEntry {
            snd_nxt: Seq(1000),
            rcv_nxt: Seq(5000),
            window: 100,
            ts: None,
            expires,
            owner,
            id: 0,
        }
    }

    /// A retransmitted FIN from the peer (RFC 9293 3.10.7.4).
    fn fin<'a>() -> InSeg<'a> {
        InSeg {
            src_port: 80,
            dst_port: 0,
            seq: Seq(4999),
            ack: Some(Seq(1000)),
            syn: false,
            fin: true,
            rst: false,
            psh: false,
            window: 100,
            mss: None,
            wscale: None,
            sack_perm: false,
            ts: None,
            sack: [None; 3],
            payload: &[],
        }
    }

    fn s(secs: u64) -> Instant {
        Instant::from_secs(secs)
    }

    #[test]
    fn entries_expire_in_order_and_a_restart_moves_one_to_the_back() {
        let mut t = TimeWaitTable::new(TW);
        for (i, port) in [1u16, 2, 3].into_iter().enumerate() {
            t.insert(key(port), entry(s(i as u64) + TW, Some(u32::from(port))));
        }
        assert_eq!(t.next_expiry(), Some(s(0) + TW));
        // At 10 s the peer of pair 1 resends its FIN: 2 MSL start again.
        assert_eq!(t.input(&key(1), &fin(), s(10)), TwVerdict::Ack);
        assert_eq!(
            t.next_expiry(),
            Some(s(1) + TW),
            "pair 1's old expiry is stale"
        );
        assert_eq!(t.pop_expired(s(0) + TW), None);
        assert_eq!(t.pop_expired(s(2) + TW), Some(Some(2)));
        assert_eq!(t.pop_expired(s(2) + TW), Some(Some(3)));
        assert_eq!(t.pop_expired(s(2) + TW), None);
        assert!(t.get(&key(1)).is_some());
        assert_eq!(t.next_expiry(), Some(s(10) + TW));
        assert_eq!(t.pop_expired(s(10) + TW), Some(Some(1)));
        assert_eq!((t.len(), t.queue_len(), t.next_expiry()), (0, 0, None));
    }

    /// A peer resending FINs forever adds one record per distinct time
    /// (behind the live record of an older pair, where they are not
    /// pruned from the front); the records stay bounded.
    #[test]
    fn fin_retransmissions_keep_the_queue_bounded() {
        let mut t = TimeWaitTable::new(TW);
        t.insert(key(2), entry(s(0) + TW, None));
        t.insert(key(1), entry(s(0) + TW, None));
        for ms in 1..10_000 {
            assert_eq!(
                t.input(&key(1), &fin(), Instant::from_millis(ms)),
                TwVerdict::Ack
            );
            assert!(t.queue_len() <= 4 + SLACK, "{} records", t.queue_len());
        }
        assert_eq!(t.pop_expired(s(0) + TW), Some(None));
        assert_eq!(t.next_expiry(), Some(Instant::from_millis(9_999) + TW));
    }
}
