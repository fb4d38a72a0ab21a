//! The web page's window onto the stack: a thread that, while at least
//! one page watches, copies every frame (the stack's frame tap), samples
//! the connections it keeps every `SAMPLE_EVERY` (looked up by 4-tuple:
//! O(kept), not O(sockets)) and reads every socket for the table every
//! `TABLE_EVERY` (a snapshot of 20,000 connections holds the stack's lock
//! for milliseconds: not ten times a second), and keeps what the pages
//! draw: the connection table, each connection's segments (`track.rs`)
//! and its cwnd / in-flight / window samples. The web server's thread
//! pulls from it for each watching WebSocket (`Hub::pull`), so a slow page
//! costs its own output buffer only, and nothing here waits on a page.
//!
//! Bounds: `MAX_CONNECTIONS` connections kept (the least recently active
//! is forgotten first, closed ones before open ones), each with
//! `track::MAX_SEGMENTS` segments (the first `track::HEAD_SEGMENTS` and
//! the latest) and `MAX_SAMPLES` samples; `MAX_TABLE_ROWS` sockets in the
//! table; `TAP_CAPACITY` frames queued in the tap (beyond, the tap drops
//! and counts). With no page watching, the tap is closed: watching costs
//! the stack nothing then.

mod source;
pub(crate) mod track;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use self::source::{Frame, Source};
use self::track::{Seg, Track};
use super::json_string;
use crate::api::{Net, Protocol, SocketInfo, TcpConnInfo};

/// Connections whose segments and samples are kept.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// Samples kept per connection (a minute at one per `SAMPLE_EVERY`).
pub(crate) const MAX_SAMPLES: usize = 600;
/// How often the kept connections are sampled (cwnd, windows).
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// How often every socket is read and the table rebuilt for the pages.
pub(crate) const TABLE_EVERY: Duration = Duration::from_millis(500);
/// Sockets listed in the table; the rest are counted.
pub(crate) const MAX_TABLE_ROWS: usize = 256;
/// Pages watching at once; more get 503.
pub(crate) const MAX_WATCHERS: usize = 32;
/// Frames the tap queues for the watch thread.
const TAP_CAPACITY: usize = 16384;
/// Frames handled per lock of the state.
const BATCH: usize = 512;
/// Segments per pushed message.
const SEGS_PER_MESSAGE: usize = 200;

/// One sample of a connection's sender state.
struct Sample {
    t_us: u64,
    cwnd: usize,
    in_flight: usize,
    snd_wnd: usize,
    rcv_wnd: usize,
}

struct Conn {
    track: Track,
    samples: VecDeque<Sample>,
    /// Samples ever taken (the index the next one gets).
    sample_total: u64,
    /// In the latest snapshot.
    live: bool,
    /// Last segment or changed sample.
    active_us: u64,
}

#[derive(Default)]
struct State {
    conns: BTreeMap<u64, Conn>,
    by_pair: HashMap<(SocketAddrV4, SocketAddrV4), u64>,
    next_id: u64,
    table: Arc<str>,
    table_version: u64,
    /// Segments of connections over the limit, not kept.
    untracked: u64,
    tap_dropped: u64,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl State {
    /// The connection between `stack` and `peer`, made if there is room;
    /// with `evict`, room is made by forgetting the least recently active
    /// (closed ones first).
    fn conn_for(
        &mut self,
        stack: SocketAddrV4,
        peer: SocketAddrV4,
        t_us: u64,
        evict: bool,
    ) -> Option<u64> {
        if let Some(id) = self.by_pair.get(&(stack, peer)) {
            return Some(*id);
        }
        if self.conns.len() >= MAX_CONNECTIONS {
            if !evict {
                return None;
            }
            let (&victim, _) = self
                .conns
                .iter()
                .min_by_key(|(_, c)| (c.live, c.active_us))?;
            if let Some(c) = self.conns.remove(&victim) {
                let pair = c.track.ends();
                if self.by_pair.get(&pair) == Some(&victim) {
                    self.by_pair.remove(&pair);
                }
            }
        }
        self.next_id += 1;
        let id = self.next_id;
        self.conns.insert(
            id,
            Conn {
                track: Track::new(stack, peer),
                samples: VecDeque::new(),
                sample_total: 0,
                live: false,
                active_us: t_us,
            },
        );
        self.by_pair.insert((stack, peer), id);
        Some(id)
    }

    fn add_frame(&mut self, frame: &Frame) {
        let Some(w) = track::parse(&frame.bytes) else {
            return;
        };
        let (stack, peer) = if frame.out {
            (w.src, w.dst)
        } else {
            (w.dst, w.src)
        };
        // A SYN that reopens a closed pair starts a new connection.
        if let Some(id) = self.by_pair.get(&(stack, peer))
            && self
                .conns
                .get(id)
                .is_some_and(|c| c.track.is_reused_by(&w, frame.out))
        {
            self.by_pair.remove(&(stack, peer));
        }
        // Traffic makes room: the segments are what the pages follow.
        let Some(id) = self.conn_for(stack, peer, frame.t_us, true) else {
            self.untracked += 1;
            return;
        };
        if let Some(c) = self.conns.get_mut(&id) {
            c.track.add(&w, frame.out, frame.t_us);
            c.active_us = frame.t_us;
        }
    }

    /// The ends of every connection kept, for `sample_kept`.
    fn kept_pairs(&self) -> Vec<(SocketAddrV4, SocketAddrV4)> {
        self.conns.values().map(|c| c.track.ends()).collect()
    }

    /// Marks and samples the kept connections at `pairs`, as the stack
    /// reported them (`found`, in the same order).
    fn sample_kept(
        &mut self,
        pairs: &[(SocketAddrV4, SocketAddrV4)],
        found: &[Option<SocketInfo>],
        t_us: u64,
    ) {
        for (pair, info) in pairs.iter().zip(found) {
            // Forgotten or replaced since the pairs were taken: skipped.
            let Some(c) = self.by_pair.get(pair).and_then(|id| self.conns.get_mut(id)) else {
                continue;
            };
            c.live = info.is_some();
            if let Some(tcp) = info.as_ref().and_then(|i| i.tcp.as_ref()) {
                c.track.learn(tcp.iss, tcp.irs, tcp.wscale);
                c.sample(tcp, t_us);
            }
        }
    }

    /// Takes every socket: marks live connections, samples them, and
    /// rebuilds the table. A connection first seen here is kept only if
    /// there is room: 20,000 rows must not push out, each time, the
    /// connections the pages follow.
    fn snapshot(&mut self, rows: &[SocketInfo], t_us: u64) {
        for c in self.conns.values_mut() {
            c.live = false;
        }
        let mut ids = Vec::with_capacity(rows.len().min(MAX_TABLE_ROWS));
        for row in rows {
            let id = match (&row.tcp, row.remote) {
                (Some(tcp), Some(peer)) => {
                    let id = self.conn_for(row.local, peer, t_us, false);
                    if let Some(c) = id.and_then(|id| self.conns.get_mut(&id)) {
                        c.live = true;
                        c.track.learn(tcp.iss, tcp.irs, tcp.wscale);
                        c.sample(tcp, t_us);
                    }
                    id
                }
                // TIME-WAIT: the connection kept, if it is.
                (None, Some(peer)) if row.protocol == Protocol::Tcp => {
                    let id = self.by_pair.get(&(row.local, peer)).copied();
                    if let Some(c) = id.and_then(|id| self.conns.get_mut(&id)) {
                        c.live = true;
                    }
                    id
                }
                _ => None,
            };
            ids.push(id);
        }
        self.table = self.table_json(rows, &ids, t_us).into();
        self.table_version += 1;
    }

    /// `{"type":"conns",...}`: the live sockets (connections first), then
    /// the connections kept that have closed since.
    fn table_json(&self, rows: &[SocketInfo], ids: &[Option<u64>], t_us: u64) -> String {
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| (rows[i].protocol != Protocol::Tcp, rows[i].remote.is_none()));
        let mut out = format!("{{\"type\":\"conns\",\"t\":{t_us},\"rows\":[");
        let mut n = 0;
        for &i in order.iter().take(MAX_TABLE_ROWS) {
            if n > 0 {
                out.push(',');
            }
            n += 1;
            let conn = ids[i].and_then(|id| self.conns.get(&id).map(|c| (id, c)));
            row_json(&mut out, &rows[i], conn);
        }
        for (id, c) in &self.conns {
            if c.live {
                continue;
            }
            if n > 0 {
                out.push(',');
            }
            n += 1;
            gone_json(&mut out, *id, c);
        }
        let _ = write!(
            out,
            "],\"sockets\":{},\"untracked\":{},\"tap_dropped\":{}}}",
            rows.len(),
            self.untracked,
            self.tap_dropped
        );
        out
    }
}

impl Conn {
    fn sample(&mut self, tcp: &TcpConnInfo, t_us: u64) {
        let s = Sample {
            t_us,
            cwnd: tcp.cwnd,
            in_flight: tcp.in_flight,
            snd_wnd: tcp.snd_wnd,
            rcv_wnd: tcp.rcv_wnd,
        };
        // An idle connection adds a sample a second, not ten.
        if let Some(last) = self.samples.back()
            && (last.cwnd, last.in_flight, last.snd_wnd, last.rcv_wnd)
                == (s.cwnd, s.in_flight, s.snd_wnd, s.rcv_wnd)
            && t_us < last.t_us + 1_000_000
        {
            return;
        }
        if self.samples.len() >= MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
        self.sample_total += 1;
    }
}

fn addr(a: Option<SocketAddrV4>) -> String {
    a.map_or_else(|| "\"*:*\"".into(), |a| format!("\"{a}\""))
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "null".into(), |v| v.to_string())
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// One live socket of the table, written from the stack's record.
fn row_json(out: &mut String, r: &SocketInfo, conn: Option<(u64, &Conn)>) {
    let _ = write!(
        out,
        "{{\"c\":{},\"live\":true,\"proto\":\"{}\",\"state\":{},\"local\":\"{}\",\"remote\":{},\"rq\":{},\"sq\":{}",
        opt(conn.map(|(id, _)| id)),
        r.protocol.name(),
        json_string(r.state),
        r.local,
        addr(r.remote),
        r.recv_q,
        r.send_q
    );
    if let Some(t) = &r.tcp {
        let _ = write!(
            out,
            ",\"cc\":\"{} {} {}\",\"cwnd\":{},\"ssthresh\":{},\"inflight\":{},\"snd_wnd\":{},\"rcv_wnd\":{},\"srtt\":{},\"rto\":{},\"mss\":{},\"retrans\":{}",
            t.cc,
            t.cc_phase,
            t.ca_state,
            t.cwnd,
            opt(t.ssthresh),
            t.in_flight,
            t.snd_wnd,
            t.rcv_wnd,
            opt(t.srtt.map(ms)),
            ms(t.rto),
            t.mss,
            t.retrans_segs
        );
    }
    if let Some((_, c)) = conn {
        let _ = write!(out, ",\"segs\":{}", c.track.total());
    }
    out.push('}');
}

/// A kept connection no longer in the snapshot: its last state as seen
/// on the wire.
fn gone_json(out: &mut String, id: u64, c: &Conn) {
    let _ = write!(
        out,
        "{{\"c\":{id},\"live\":false,\"proto\":\"tcp\",\"state\":\"{}\",\"local\":\"{}\",\"remote\":\"{}\",\"segs\":{},\"retrans\":{}}}",
        c.track.stack_state(),
        c.track.ends().0,
        c.track.ends().1,
        c.track.total(),
        c.track.retransmissions()
    );
}

fn seg_json(out: &mut String, i: u64, s: &Seg) {
    let _ = write!(
        out,
        "{{\"i\":{i},\"t\":{},\"d\":\"{}\",\"f\":\"{}\",\"seq\":{},\"ack\":{},\"rseq\":{},\"rack\":{},\"len\":{},\"win\":{}",
        s.t_us,
        if s.out { "out" } else { "in" },
        track::flag_names(s.flags),
        s.seq,
        s.ack,
        opt(s.rseq),
        opt(s.rack),
        s.len,
        s.win
    );
    if !s.sack.is_empty() {
        let blocks: Vec<String> = s.sack.iter().map(|(l, r)| format!("[{l},{r}]")).collect();
        let _ = write!(out, ",\"sack\":[{}]", blocks.join(","));
    }
    if s.retx {
        out.push_str(",\"retx\":true");
    }
    if s.dup > 0 {
        let _ = write!(out, ",\"dup\":{}", s.dup);
    }
    if let Some(st) = s.sender_state {
        let _ = write!(out, ",\"ss\":\"{st}\"");
    }
    if let Some(st) = s.receiver_state {
        let _ = write!(out, ",\"rs\":\"{st}\"");
    }
    out.push('}');
}

/// Where one watching page is: the table it has, and the connection it
/// follows with how far it got.
#[derive(Default)]
pub(crate) struct Cursor {
    table_version: u64,
    conn: Option<u64>,
    announced: bool,
    next_seg: u64,
    /// Segments sent since the selection: at `track::MAX_SEGMENTS` the page
    /// is told its ladder is full (`{"type":"full"}`) and gets no more
    /// until it selects again (then the first and the latest).
    sent_segs: usize,
    next_sample: u64,
}

impl Cursor {
    /// Follow connection `id` (`None`: none) from its first segment.
    pub(crate) fn select(&mut self, id: Option<u64>) {
        *self = Cursor {
            table_version: self.table_version,
            conn: id,
            ..Cursor::default()
        };
    }
}

/// What the watch thread and the web server share.
pub(crate) struct Hub {
    state: Mutex<State>,
    watchers: AtomicUsize,
    stop: AtomicBool,
    /// Wakes the watch thread when the first page starts watching.
    wake: Condvar,
    wake_lock: Mutex<()>,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pages watching now.
    pub(crate) fn watchers(&self) -> usize {
        self.watchers.load(Ordering::Acquire)
    }

    pub(crate) fn add_watcher(&self) {
        self.watchers.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_all();
    }

    pub(crate) fn remove_watcher(&self) {
        let _ = self
            .watchers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Ends the watch thread.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake.notify_all();
    }

    /// The messages a page at `cur` has not had yet, about `max_bytes` at
    /// most (the rest waits for the next call).
    pub(crate) fn pull(&self, cur: &mut Cursor, max_bytes: usize, out: &mut Vec<String>) {
        let st = self.lock();
        let mut bytes = 0;
        if st.table_version > cur.table_version {
            cur.table_version = st.table_version;
            bytes += st.table.len();
            out.push(st.table.to_string());
        }
        let Some(id) = cur.conn else {
            return;
        };
        let Some(c) = st.conns.get(&id) else {
            out.push(format!("{{\"type\":\"gone\",\"c\":{id}}}"));
            cur.select(None);
            return;
        };
        if !cur.announced {
            cur.announced = true;
            let opened = match c.track.stack_opened() {
                Some(true) => "\"stack\"",
                Some(false) => "\"peer\"",
                None => "null",
            };
            out.push(format!(
                "{{\"type\":\"conn\",\"c\":{id},\"stack\":\"{}\",\"peer\":\"{}\",\"opened_by\":{opened}}}",
                c.track.ends().0,
                c.track.ends().1
            ));
        }
        let room = track::MAX_SEGMENTS.saturating_sub(cur.sent_segs);
        if room == 0 && cur.next_seg < c.track.total() {
            out.push(format!("{{\"type\":\"full\",\"c\":{id}}}"));
            cur.next_seg = u64::MAX;
        }
        while bytes < max_bytes && cur.next_seg < c.track.total() {
            let max = SEGS_PER_MESSAGE.min(track::MAX_SEGMENTS - cur.sent_segs);
            let segs = c.track.segments_from(cur.next_seg, max);
            if segs.is_empty() {
                break;
            }
            let mut m = format!("{{\"type\":\"segs\",\"c\":{id},\"segs\":[");
            for (k, (i, s)) in segs.iter().enumerate() {
                if k > 0 {
                    m.push(',');
                }
                seg_json(&mut m, *i, s);
                cur.next_seg = i + 1;
                cur.sent_segs += 1;
            }
            m.push_str("]}");
            bytes += m.len();
            out.push(m);
        }
        let first = c.sample_total - c.samples.len() as u64;
        if bytes < max_bytes && cur.next_sample < c.sample_total {
            let from = cur.next_sample.max(first);
            let mut m = format!("{{\"type\":\"samples\",\"c\":{id},\"samples\":[");
            for (k, s) in c.samples.iter().skip((from - first) as usize).enumerate() {
                if k > 0 {
                    m.push(',');
                }
                let _ = write!(
                    m,
                    "[{},{},{},{},{}]",
                    s.t_us, s.cwnd, s.in_flight, s.snd_wnd, s.rcv_wnd
                );
            }
            m.push_str("]}");
            cur.next_sample = c.sample_total;
            out.push(m);
        }
    }
}

/// The running watch: its hub and thread.
pub(crate) struct Watch {
    hub: Arc<Hub>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    /// Starts the watch thread for `net` (idle until a page watches).
    pub(crate) fn start(net: &Net, name: &str) -> std::io::Result<Watch> {
        let hub = Arc::new(Hub {
            state: Mutex::new(State::default()),
            watchers: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            wake: Condvar::new(),
            wake_lock: Mutex::new(()),
        });
        let source = Source::new(net);
        let h = hub.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-watch"))
            .spawn(move || run(&h, source))?;
        Ok(Watch {
            hub,
            thread: Some(thread),
        })
    }

    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.hub.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the watch reads from the stack at a sampling time.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    /// The connections it keeps, by 4-tuple.
    Kept,
    /// Every socket, for the table.
    All,
}

/// When to read: the kept connections every `SAMPLE_EVERY`, every socket
/// (in their place) every `TABLE_EVERY`.
struct Schedule {
    next_sample: Instant,
    next_table: Instant,
}

impl Schedule {
    fn new(now: Instant) -> Schedule {
        Schedule {
            next_sample: now,
            next_table: now,
        }
    }

    /// Time left until the next read.
    fn wait(&self, now: Instant) -> Duration {
        self.next_sample.saturating_duration_since(now)
    }

    /// The read due at `now`, if one is.
    fn due(&mut self, now: Instant) -> Option<Read> {
        if now < self.next_sample {
            return None;
        }
        self.next_sample = now + SAMPLE_EVERY;
        if now < self.next_table {
            return Some(Read::Kept);
        }
        self.next_table = now + TABLE_EVERY;
        Some(Read::All)
    }
}

fn run(hub: &Hub, mut source: Source) {
    let mut frames = Vec::with_capacity(BATCH);
    let mut schedule = Schedule::new(Instant::now());
    while !hub.stop.load(Ordering::Acquire) && !source.stopped() {
        if hub.watchers() == 0 {
            source.close_tap();
            let guard = hub.wake_lock.lock().unwrap_or_else(|e| e.into_inner());
            if hub.watchers() == 0 && !hub.stop.load(Ordering::Acquire) {
                let _ = hub.wake.wait_timeout(guard, Duration::from_secs(1));
            }
            continue;
        }
        source.open_tap(TAP_CAPACITY);
        source.frames(schedule.wait(Instant::now()), BATCH, &mut frames);
        if !frames.is_empty() {
            let mut st = hub.lock();
            for f in frames.drain(..) {
                st.add_frame(&f);
            }
        }
        // The stack is read without the hub's lock held.
        match schedule.due(Instant::now()) {
            Some(Read::All) => {
                let rows = source.sockets();
                let mut st = hub.lock();
                st.tap_dropped = source.dropped();
                st.snapshot(&rows, now_us());
            }
            Some(Read::Kept) => {
                let pairs = hub.lock().kept_pairs();
                let found = source.connections(&pairs);
                let mut st = hub.lock();
                st.tap_dropped = source.dropped();
                st.sample_kept(&pairs, &found, now_us());
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every socket is read at most once per `TABLE_EVERY` (the O(sockets)
    /// snapshot), the kept connections every `SAMPLE_EVERY` in between.
    #[test]
    fn every_socket_is_read_once_per_table_and_kept_ones_in_between() {
        let t0 = Instant::now();
        let mut schedule = Schedule::new(t0);
        let (mut all, mut kept) = (Vec::new(), Vec::new());
        // The loop wakes at uneven times (frames arrive): every 7 ms here.
        for ms in (0..3000).step_by(7) {
            let now = t0 + Duration::from_millis(ms);
            match schedule.due(now) {
                Some(Read::All) => all.push(now),
                Some(Read::Kept) => kept.push(now),
                None => {}
            }
        }
        assert!(
            all.windows(2).all(|w| w[1] - w[0] >= TABLE_EVERY),
            "{all:?}"
        );
        // 3 s: a table at once, then one each ~500 ms.
        assert!((5..=6).contains(&all.len()), "{} tables", all.len());
        let mut reads: Vec<Instant> = all.iter().chain(&kept).copied().collect();
        reads.sort();
        assert!(reads.windows(2).all(|w| w[1] - w[0] >= SAMPLE_EVERY));
        assert!(
            kept.len() >= 4 * all.len() - 4,
            "{} kept, {} all",
            kept.len(),
            all.len()
        );
    }

    /// The kept connections are the ones sampled; a connection first seen
    /// in the table takes no kept one's place.
    #[test]
    fn table_rows_do_not_push_out_kept_connections() {
        let a = |port: u16| SocketAddrV4::new(std::net::Ipv4Addr::new(10, 0, 0, 2), port);
        let peer = SocketAddrV4::new(std::net::Ipv4Addr::new(10, 0, 0, 1), 40000);
        let mut st = State::default();
        for port in 0..MAX_CONNECTIONS as u16 {
            assert!(st.conn_for(a(port), peer, 1, true).is_some());
        }
        let pairs = st.kept_pairs();
        assert_eq!(pairs.len(), MAX_CONNECTIONS);
        assert!(pairs.contains(&(a(0), peer)));
        let row = |local, tcp: Option<TcpConnInfo>| SocketInfo {
            id: 1,
            protocol: Protocol::Tcp,
            state: if tcp.is_some() {
                "ESTABLISHED"
            } else {
                "TIME-WAIT"
            },
            local,
            remote: Some(peer),
            recv_q: 0,
            send_q: 0,
            pid: None,
            tcp,
            listen: None,
            time_wait_left: None,
            handle: None,
        };
        // A kept connection in TIME-WAIT, one established, and a new one.
        let rows = [
            row(a(0), None),
            row(a(1), Some(conn_info(10_000))),
            row(a(9999), Some(conn_info(20_000))),
        ];
        st.snapshot(&rows, 2);
        assert_eq!(
            st.kept_pairs(),
            pairs,
            "a table row pushed a kept connection out"
        );
        assert!(st.table.contains("\"c\":1,\"live\":true"), "{}", st.table);
        assert!(st.table.contains("\"c\":null"), "{}", st.table);
        // Sampled by 4-tuple: found is live and sampled, not found is not.
        st.sample_kept(
            &pairs[..2],
            &[None, Some(row(a(1), Some(conn_info(30_000))))],
            3,
        );
        let seen: Vec<(bool, Vec<usize>)> = st
            .conns
            .values()
            .take(2)
            .map(|c| (c.live, c.samples.iter().map(|s| s.cwnd).collect()))
            .collect();
        assert_eq!(seen, [(false, vec![]), (true, vec![10_000, 30_000])]);
    }

    fn conn_info(cwnd: usize) -> TcpConnInfo {
        TcpConnInfo {
            cc: "cubic",
            cc_phase: "slow-start",
            ca_state: "open",
            cwnd,
            ssthresh: None,
            in_flight: 0,
            snd_wnd: 65535,
            rcv_wnd: 65535,
            srtt: None,
            rttvar: None,
            min_rtt: None,
            rto: Duration::from_secs(1),
            backoff: 0,
            mss: 1460,
            rcv_mss: 1460,
            wscale: None,
            sack: true,
            timestamps: true,
            bytes_sent: 0,
            bytes_retrans: 0,
            bytes_acked: 0,
            bytes_received: 0,
            retrans_segs: 0,
            lost: 0,
            sacked: 0,
            sack_holes: 0,
            delivery_rate: None,
            last_send: None,
            last_recv: Duration::ZERO,
            timers: Default::default(),
            iss: 1,
            irs: 2,
            snd_una: 1,
            snd_nxt: 1,
            rcv_nxt: 2,
        }
    }
}
