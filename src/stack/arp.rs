//! ARP (RFC 826): the neighbour cache, resolution with a rate limit, and the
//! bounded queue of datagrams waiting for an answer.
//!
//! The cache is pure bookkeeping; the interface (`iface.rs`) builds and
//! sends the ARP frames it asks for.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::Duration;

use smoltcp::wire::EthernetAddress;

use super::counters::Counters;
use super::iface::Frame;
use super::time::Instant;

#[derive(Clone, Debug)]
/// ARP cache timers and bounds (`IfaceConfig::arp`); every bound stops a
/// flood of frames from growing memory.
pub struct ArpConfig {
    /// How long an answer stays valid (Linux's base_reachable_time is 30 s,
    /// randomized; a fixed 60 s keeps behaviour predictable for learners).
    pub entry_ttl: Duration,
    /// An entry used within this much of its expiry is refreshed with a
    /// request while the old address stays in use.
    pub refresh_margin: Duration,
    /// At most one request per address per interval (the issue asks ≤ 1/s).
    pub request_interval: Duration,
    /// Requests sent before the queued datagrams are dropped.
    pub max_requests: u32,
    /// Most addresses cached; a new one beyond it evicts an old entry.
    pub max_entries: usize,
    /// Frames queued per unresolved address; more are dropped (counted).
    pub max_pending_per_addr: usize,
    /// Frames queued across all unresolved addresses.
    pub max_pending_total: usize,
    /// A different address for a known neighbour is ignored within this
    /// long of the last update (Linux's neigh locktime, 1 s): a stray or
    /// corrupted ARP frame cannot flip a working entry back and forth.
    pub locktime: Duration,
}

impl Default for ArpConfig {
    fn default() -> ArpConfig {
        ArpConfig {
            entry_ttl: Duration::from_secs(60),
            refresh_margin: Duration::from_secs(10),
            request_interval: Duration::from_secs(1),
            max_requests: 3,
            max_entries: 1024,
            max_pending_per_addr: 64,
            max_pending_total: 512,
            locktime: Duration::from_secs(1),
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    mac: EthernetAddress,
    updated: Instant,
    expires: Instant,
    last_request: Option<Instant>,
}

#[derive(Debug)]
struct Pending {
    /// Complete Ethernet frames whose destination MAC is filled in on answer.
    frames: VecDeque<Frame>,
    requests_sent: u32,
    last_request: Instant,
}

/// What the interface should do to reach an address.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Send to this MAC; if `refresh` is set, also send a request now.
    Known {
        /// The neighbour's link-layer address.
        mac: EthernetAddress,
        /// The entry is close to expiry: re-request it (RFC 1122 2.3.2.1).
        refresh: bool,
    },
    /// Queue the frame with `queue`; not resolved yet.
    Unknown,
}

#[derive(Debug, Default)]
/// The neighbour table (RFC 826) and the frames waiting for an answer.
pub struct ArpCache {
    config: ArpConfig,
    entries: HashMap<Ipv4Addr, Entry>,
    pending: HashMap<Ipv4Addr, Pending>,
    pending_frames: usize,
}

impl ArpCache {
    /// An empty cache with bounds from `config`.
    pub fn new(config: ArpConfig) -> ArpCache {
        ArpCache {
            config,
            ..ArpCache::default()
        }
    }

    /// How to reach `ip` at `now`: its MAC (and whether to refresh the entry)
    /// or `Unknown` (an expired entry counts as unknown).
    pub fn lookup(&mut self, now: Instant, ip: Ipv4Addr) -> Resolution {
        let Some(entry) = self.entries.get_mut(&ip) else {
            return Resolution::Unknown;
        };
        if now >= entry.expires {
            self.entries.remove(&ip);
            return Resolution::Unknown;
        }
        let refresh = now + self.config.refresh_margin >= entry.expires
            && entry
                .last_request
                .is_none_or(|t| now >= t + self.config.request_interval);
        if refresh {
            entry.last_request = Some(now);
        }
        Resolution::Known {
            mac: entry.mac,
            refresh,
        }
    }

    /// Queues a frame for `ip`. Returns true if a request should go out now
    /// (first frame for this address). Drops (and counts) beyond the bounds.
    pub fn queue(
        &mut self,
        now: Instant,
        ip: Ipv4Addr,
        frame: Frame,
        counters: &mut Counters,
    ) -> bool {
        if self.pending_frames >= self.config.max_pending_total {
            counters.inc("arp.pending_queue_full");
            return false;
        }
        let new = !self.pending.contains_key(&ip);
        let p = self.pending.entry(ip).or_insert_with(|| Pending {
            frames: VecDeque::new(),
            requests_sent: 0,
            last_request: now,
        });
        if p.frames.len() >= self.config.max_pending_per_addr {
            counters.inc("arp.pending_queue_full");
            return false;
        }
        p.frames.push_back(frame);
        self.pending_frames += 1;
        if new {
            p.requests_sent = 1;
            p.last_request = now;
        }
        new
    }

    /// Records `ip` at `mac` (RFC 826: update an existing entry from any ARP
    /// packet; create one only when the packet concerned us, which the
    /// caller decides with `create`). Returns the frames that were waiting.
    pub fn learn(
        &mut self,
        now: Instant,
        ip: Ipv4Addr,
        mac: EthernetAddress,
        create: bool,
        counters: &mut Counters,
    ) -> VecDeque<Frame> {
        let known = self.entries.contains_key(&ip) || self.pending.contains_key(&ip);
        if let Some(e) = self.entries.get(&ip)
            && e.mac != mac
            && now < e.updated + self.config.locktime
        {
            counters.inc("arp.locktime_ignored");
            return VecDeque::new();
        }
        if create || known {
            if !self.entries.contains_key(&ip) && self.entries.len() >= self.config.max_entries {
                self.evict_one();
            }
            self.entries.insert(
                ip,
                Entry {
                    mac,
                    updated: now,
                    expires: now + self.config.entry_ttl,
                    last_request: None,
                },
            );
        }
        match self.pending.remove(&ip) {
            Some(p) => {
                self.pending_frames -= p.frames.len();
                p.frames
            }
            None => VecDeque::new(),
        }
    }

    fn evict_one(&mut self) {
        if let Some(ip) = self
            .entries
            .iter()
            .min_by_key(|(_, e)| e.expires)
            .map(|(ip, _)| *ip)
        {
            self.entries.remove(&ip);
        }
    }

    /// Retries and timeouts: returns the addresses to send a request for
    /// now; drops (and counts) the queues of addresses that never answered.
    pub fn poll(&mut self, now: Instant, counters: &mut Counters) -> Vec<Ipv4Addr> {
        let mut requests = Vec::new();
        let interval = self.config.request_interval;
        let max = self.config.max_requests;
        let mut dropped = 0;
        self.pending.retain(|ip, p| {
            if now < p.last_request + interval {
                return true;
            }
            if p.requests_sent >= max {
                dropped += p.frames.len();
                return false;
            }
            p.requests_sent += 1;
            p.last_request = now;
            requests.push(*ip);
            true
        });
        if dropped > 0 {
            counters.add("arp.unresolved_drop", dropped as u64);
            self.pending_frames -= dropped;
        }
        self.entries.retain(|_, e| now < e.expires);
        requests
    }

    /// When the next request for a pending address is due.
    pub fn poll_at(&self) -> Option<Instant> {
        let interval = self.config.request_interval;
        self.pending
            .values()
            .map(|p| p.last_request + interval)
            .min()
    }

    /// Frames queued waiting for an answer, across all addresses.
    pub fn pending_frames(&self) -> usize {
        self.pending_frames
    }

    /// The cached MAC of `ip`, whether or not the entry has expired.
    pub fn get(&self, ip: Ipv4Addr) -> Option<EthernetAddress> {
        self.entries.get(&ip).map(|e| e.mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
    const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    #[test]
    fn queue_then_learn_releases_frames_once() {
        let mut c = ArpCache::new(ArpConfig::default());
        let mut k = Counters::new();
        let t = Instant::ZERO;
        assert_eq!(c.lookup(t, IP), Resolution::Unknown);
        assert!(c.queue(t, IP, vec![1].into(), &mut k));
        assert!(
            !c.queue(t, IP, vec![2].into(), &mut k),
            "one request per address"
        );
        let frames = c.learn(t, IP, MAC, false, &mut Counters::new());
        let frames: Vec<Vec<u8>> = frames.into_iter().map(Frame::into_bytes).collect();
        assert_eq!(frames, vec![vec![1], vec![2]]);
        assert_eq!(c.pending_frames(), 0);
        assert_eq!(
            c.lookup(t, IP),
            Resolution::Known {
                mac: MAC,
                refresh: false
            }
        );
    }

    #[test]
    fn retries_at_most_once_per_second_then_drops() {
        let mut c = ArpCache::new(ArpConfig::default());
        let mut k = Counters::new();
        c.queue(Instant::ZERO, IP, vec![0; 10].into(), &mut k);
        assert!(c.poll(Instant::from_millis(999), &mut k).is_empty());
        assert_eq!(c.poll_at(), Some(Instant::from_secs(1)));
        assert_eq!(c.poll(Instant::from_secs(1), &mut k), vec![IP]);
        assert_eq!(c.poll(Instant::from_millis(2500), &mut k), vec![IP]);
        assert!(c.poll(Instant::from_millis(3000), &mut k).is_empty());
        assert!(c.poll(Instant::from_millis(3500), &mut k).is_empty());
        assert_eq!(k.get("arp.unresolved_drop"), 1);
        assert_eq!(c.pending_frames(), 0);
        assert_eq!(c.poll_at(), None);
    }

    #[test]
    fn pending_queue_is_bounded() {
        let mut c = ArpCache::new(ArpConfig::default());
        let mut k = Counters::new();
        for i in 0..10_000u32 {
            c.queue(Instant::ZERO, Ipv4Addr::from(i), vec![0].into(), &mut k);
        }
        assert_eq!(c.pending_frames(), 512);
        assert_eq!(k.get("arp.pending_queue_full"), 10_000 - 512);
    }

    #[test]
    fn entries_expire_and_refresh_before_expiry() {
        let mut c = ArpCache::new(ArpConfig::default());
        c.learn(Instant::ZERO, IP, MAC, true, &mut Counters::new());
        let near = Instant::from_secs(55);
        assert_eq!(
            c.lookup(near, IP),
            Resolution::Known {
                mac: MAC,
                refresh: true
            }
        );
        // Rate limit: no second refresh request within a second.
        assert_eq!(
            c.lookup(near + Duration::from_millis(500), IP),
            Resolution::Known {
                mac: MAC,
                refresh: false
            }
        );
        assert_eq!(c.lookup(Instant::from_secs(60), IP), Resolution::Unknown);
    }

    #[test]
    fn a_new_address_within_locktime_is_ignored() {
        let mut c = ArpCache::new(ArpConfig::default());
        let other = EthernetAddress([2, 0, 0, 0, 0, 9]);
        c.learn(Instant::ZERO, IP, MAC, true, &mut Counters::new());
        c.learn(
            Instant::from_millis(500),
            IP,
            other,
            true,
            &mut Counters::new(),
        );
        assert_eq!(c.get(IP), Some(MAC));
        c.learn(
            Instant::from_millis(1000),
            IP,
            other,
            true,
            &mut Counters::new(),
        );
        assert_eq!(c.get(IP), Some(other));
    }

    #[test]
    fn unsolicited_packets_do_not_create_entries() {
        let mut c = ArpCache::new(ArpConfig::default());
        c.learn(Instant::ZERO, IP, MAC, false, &mut Counters::new());
        assert_eq!(c.get(IP), None);
        c.learn(Instant::ZERO, IP, MAC, true, &mut Counters::new());
        assert_eq!(c.get(IP), Some(MAC));
    }
}
