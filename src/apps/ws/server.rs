//! The web server's event loop: one thread over the stack's `Poll`
//! serves every connection (`http::Conn`, upgraded to the WebSocket of
//! `service.rs`), so a connection costs its state and buffers, not a
//! thread.
//!
//! Limits: `max_connections` are served at once. When a new connection
//! finds them taken, the client that has waited longest (over
//! `SLOW_AFTER`) for its request head is dropped for it if such waiting
//! clients hold more than `SLOW_SHARE` of the slots (slowloris clients cannot starve clients
//! that send their request at once) with 503; otherwise the newcomer gets
//! 503.
//! Refusals and drops are counted and logged at most once per second.
//!
//! Watching pages (`/watch`) are pumped every `PUMP_EVERY` from the watch's
//! hub (`watch.rs`), which a thread of its own fills: this loop never
//! waits for the stack beyond a snapshot's lock, nor for a page.

use std::collections::BTreeSet;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::service::{Ctx, WsConn};
use super::watch::Watch;
use super::{StatsFn, WsConfig};
use crate::api::{Events, Interest, Net, Poll, TcpListener, Token};
use crate::apps::evloop::{RateLog, Slab, Timers};
use crate::apps::http::Service as _;
use crate::apps::http::{Flow, Next};

type Conn = crate::apps::http::Conn<Ctx>;

const LISTENER: Token = Token(0);
/// Share of the slots that clients still waiting for their request head
/// may hold before the longest-waiting one is dropped for a newcomer.
const SLOW_SHARE: (usize, usize) = (1, 2);
/// A client is slow once it has waited this long for its head. An HTTP
/// client sends its head right after the handshake (one round trip on
/// this link is well under a millisecond), so a client still silent after
/// 50 ms is holding a slot, not about to use it. (It was 1 s: with
/// connections set up faster, 1,024 slowloris clients then filled every
/// slot within that second and plain requests got 503 until it passed.)
const SLOW_AFTER: Duration = Duration::from_millis(50);
/// Connections refused with 503 still being closed, per served slot;
/// beyond it a refused connection is reset.
const LINGERING_PER_SLOT: usize = 4;
/// The longest the loop sleeps: how soon it sees the stop flag.
const TICK: Duration = Duration::from_millis(50);
/// How often watching pages get what is new.
const PUMP_EVERY: Duration = Duration::from_millis(50);

type TimerKey = (Instant, usize, u64);

struct Entry {
    conn: Conn,
    interest: Interest,
    timer: TimerKey,
    /// Key in `waiting` while the connection waits for a request head.
    waiting: Option<(Instant, usize)>,
}

pub(super) struct Server {
    poll: Poll,
    listener: TcpListener,
    /// The service's side of every call (config, stats, hub).
    ctx: Ctx,
    conns: Slab<Entry>,
    timers: Timers,
    /// Connections waiting for a request head, oldest wait first.
    waiting: BTreeSet<(Instant, usize)>,
    served: usize,
    refused: RateLog,
    evicted: RateLog,
    scratch: Vec<u8>,
    /// Held for its thread, which ends when the server is dropped.
    _watch: Watch,
    /// Tokens of the watching WebSockets.
    watchers: BTreeSet<usize>,
    next_pump: Instant,
}

impl Server {
    pub(super) fn new(
        net: &Net,
        listener: TcpListener,
        stats: StatsFn,
        config: WsConfig,
        name: &str,
    ) -> io::Result<Server> {
        let poll = Poll::new(net);
        listener.set_nonblocking(true)?;
        poll.register(&listener, LISTENER, Interest::READABLE)?;
        let watch = Watch::start(net, name)?;
        Ok(Server {
            poll,
            listener,
            ctx: Ctx {
                config,
                now: Instant::now(),
                served: 0,
                stats,
                hub: watch.hub().clone(),
            },
            conns: Slab::new(1),
            timers: Timers::default(),
            waiting: BTreeSet::new(),
            served: 0,
            refused: RateLog::new("ws: connections refused with 503 (connection limit)"),
            evicted: RateLog::new("ws: slow clients refused with 503 for new connections"),
            scratch: vec![0; 64 * 1024],
            _watch: watch,
            watchers: BTreeSet::new(),
            next_pump: Instant::now(),
        })
    }

    /// Serves until `stop` is set (then says goodbye to every client) or
    /// the stack stops.
    pub(super) fn run(mut self, stop: &AtomicBool) {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            let wait = self
                .timers
                .next()
                .map_or(TICK, |t| t.saturating_duration_since(now).min(TICK));
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                log::debug!("ws: poll ended: {e}");
                return;
            }
            if stop.load(Ordering::Acquire) {
                return self.go_away();
            }
            let now = Instant::now();
            for ev in events.iter() {
                if ev.token() == LISTENER {
                    self.accept_all(now);
                    continue;
                }
                let token = ev.token();
                self.with_conn(token, now, |conn, ctx, scratch| {
                    let mut next = Next::Keep;
                    if ev.is_writable() {
                        next = conn.on_writable(ctx);
                    }
                    if next == Next::Keep && (ev.is_readable() || ev.is_hup() || ev.is_error()) {
                        next = conn.on_readable(ctx, scratch);
                    }
                    next
                });
            }
            self.run_timers(now);
            self.pump_watchers(now);
            self.refused.tick(now);
            self.evicted.tick(now);
        }
    }

    fn pump_watchers(&mut self, now: Instant) {
        if now < self.next_pump || self.watchers.is_empty() {
            return;
        }
        self.next_pump = now + PUMP_EVERY;
        let tokens: Vec<usize> = self.watchers.iter().copied().collect();
        for t in tokens {
            self.with_conn(Token(t), now, |conn, ctx, _| {
                let mut stalled = false;
                let next = conn.with_upgraded(ctx, |ws, queued, out| {
                    let flow = ws.pump(ctx, queued, out);
                    stalled = flow == Flow::Drop;
                    flow
                });
                if stalled {
                    log::info!("ws: watch: {} dropped: not keeping up", conn.peer());
                }
                next
            });
        }
    }

    fn run_timers(&mut self, now: Instant) {
        while let Some((token, generation)) = self.timers.pop_due(now) {
            if self.conns.get_gen_mut(token, generation).is_none() {
                continue;
            }
            self.with_conn(token, now, |conn, ctx, _| conn.on_timeout(ctx));
        }
    }

    /// Runs `f` on the connection at `token`, then applies what it asks
    /// for and brings its timer, interest and bookkeeping up to date.
    fn with_conn(
        &mut self,
        token: Token,
        now: Instant,
        f: impl FnOnce(&mut Conn, &Ctx, &mut [u8]) -> Next,
    ) {
        self.ctx.now = now;
        self.ctx.served = self.served;
        let Some(entry) = self.conns.get_mut(token) else {
            return;
        };
        let was_served = entry.conn.is_served();
        let next = f(&mut entry.conn, &self.ctx, &mut self.scratch);
        if next == Next::Drop {
            self.remove(token);
            return;
        }
        if was_served && !entry.conn.is_served() {
            self.served -= 1;
        }
        let generation = self.conns.generation(token);
        let Some(entry) = self.conns.get_mut(token) else {
            return;
        };
        let deadline = entry.conn.deadline(&self.ctx.limits());
        if deadline != entry.timer.0 {
            entry.timer = self
                .timers
                .set(Some(entry.timer), deadline, token, generation);
        }
        let interest = entry.conn.interest();
        if interest != entry.interest {
            entry.interest = interest;
            let _ = self.poll.reregister(entry.conn.stream(), token, interest);
        }
        if entry.conn.upgraded().is_some_and(WsConn::is_watching) {
            self.watchers.insert(token.0);
        } else {
            self.watchers.remove(&token.0);
        }
        let waiting = entry.conn.is_waiting_for_head();
        match (waiting, entry.waiting) {
            (true, None) => {
                let key = (now, token.0);
                entry.waiting = Some(key);
                self.waiting.insert(key);
            }
            (false, Some(key)) => {
                entry.waiting = None;
                self.waiting.remove(&key);
            }
            _ => {}
        }
    }

    fn remove(&mut self, token: Token) {
        if let Some(entry) = self.conns.remove(token) {
            if entry.conn.is_served() {
                self.served -= 1;
            }
            self.timers.cancel(Some(entry.timer));
            self.watchers.remove(&token.0);
            if let Some(key) = entry.waiting {
                self.waiting.remove(&key);
            }
            let _ = self.poll.deregister(entry.conn.stream());
            // Dropping the entry closes the stream.
        }
    }

    fn accept_all(&mut self, now: Instant) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::debug!("ws: accept failed: {e}");
                    return;
                }
            };
            let _ = stream.set_nonblocking(true);
            let _ = stream.set_nodelay(true); // latency only; never fatal
            if self.served >= self.ctx.config.max_connections && !self.evict_slowest(now) {
                self.refuse(stream, now);
                continue;
            }
            self.served += 1;
            self.insert(Conn::new(stream, now), now);
        }
    }

    /// Drops the client that has waited longest for its request head, if
    /// such clients hold more than their share of the slots.
    fn evict_slowest(&mut self, now: Instant) -> bool {
        let share = self.ctx.config.max_connections * SLOW_SHARE.0 / SLOW_SHARE.1;
        if self.waiting.len() <= share {
            return false;
        }
        let Some(&(since, index)) = self.waiting.first() else {
            return false;
        };
        if now.saturating_duration_since(since) < SLOW_AFTER {
            return false;
        }
        // It gets the answer a newcomer over the limit would get.
        self.with_conn(Token(index), now, |conn, ctx, _| conn.refuse_now(ctx));
        self.evicted.hit(now);
        true
    }

    /// 503 and a lingering close, or a reset when even the connections
    /// being refused are too many.
    fn refuse(&mut self, stream: crate::api::TcpStream, now: Instant) {
        self.refused.hit(now);
        let lingering = self.conns.len() - self.served;
        if lingering >= self.ctx.config.max_connections * LINGERING_PER_SLOT {
            let _ = stream.set_linger(Some(Duration::ZERO));
            return;
        }
        self.ctx.now = now;
        self.ctx.served = self.served;
        let (conn, next) = Conn::refuse(stream, &self.ctx);
        if next == Next::Keep {
            self.insert(conn, now);
        }
    }

    fn insert(&mut self, conn: Conn, now: Instant) {
        let interest = conn.interest();
        let deadline = conn.deadline(&self.ctx.limits());
        let waiting = conn.is_waiting_for_head();
        let placeholder = (now, 0, 0);
        let (token, generation) = self.conns.insert(Entry {
            conn,
            interest,
            timer: placeholder,
            waiting: None,
        });
        let timer = self.timers.set(None, deadline, token, generation);
        let Some(entry) = self.conns.get_mut(token) else {
            return;
        };
        entry.timer = timer;
        if waiting {
            let key = (now, token.0);
            entry.waiting = Some(key);
            self.waiting.insert(key);
        }
        let _ = self.poll.register(entry.conn.stream(), token, interest);
        // Data may already be there (the request came with the handshake's
        // last ACK): a registered socket is checked at the next poll.
    }

    /// Close 1001 to every WebSocket, then serve the close handshakes for
    /// at most the close linger (and 2 s), and return.
    fn go_away(mut self) {
        let now = Instant::now();
        let tokens = self.conns.tokens();
        let ws = tokens
            .iter()
            .filter(|t| {
                self.conns
                    .get_mut(**t)
                    .is_some_and(|e| e.conn.upgraded().is_some())
            })
            .count();
        log::info!("ws: stopping: close 1001 to {ws} WebSocket clients");
        for token in tokens {
            self.with_conn(token, now, |conn, ctx, _| conn.going_away(ctx));
        }
        let deadline = now + self.ctx.config.close_linger.min(Duration::from_secs(2));
        let mut events = Events::with_capacity(1024);
        while !self.conns.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let wait = (deadline - now).min(TICK);
            if self.poll.poll(&mut events, Some(wait)).is_err() {
                return;
            }
            let now = Instant::now();
            for ev in events.iter() {
                if ev.token() == LISTENER {
                    continue;
                }
                self.with_conn(ev.token(), now, |conn, ctx, scratch| {
                    let next = conn.on_writable(ctx);
                    if next == Next::Keep {
                        conn.on_readable(ctx, scratch)
                    } else {
                        next
                    }
                });
            }
            self.run_timers(now);
        }
    }
}

/// Starts the server thread; see [`super::WsServer`].
pub(super) fn spawn(
    net: &Net,
    listener: TcpListener,
    stats: StatsFn,
    config: WsConfig,
    name: String,
) -> io::Result<(Arc<AtomicBool>, std::thread::JoinHandle<()>)> {
    let server = Server::new(net, listener, stats, config, &name)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || server.run(&flag))?;
    Ok((stop, thread))
}
