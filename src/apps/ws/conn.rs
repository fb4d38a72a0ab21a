//! One connection of the web server, driven by readiness: HTTP/1.1 with
//! persistent connections and pipelining (RFC 9112 section 9), then,
//! after an upgrade, the WebSocket session. Non-blocking reads and writes
//! only; the server (`server.rs`) calls in when the socket is ready or a
//! deadline passed, and asks for the next deadline and interest.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::session::{Session, Status};
use super::watch::{self, Cursor, Hub};
use super::{WsConfig, check_upgrade};
use crate::api::{Interest, TcpStream};
use crate::apps::http::{self, HeadError, Request, Response};

/// Output queued beyond this stops reading (and parsing pipelined
/// requests) until the peer has taken some: a client that sends without
/// reading cannot make us buffer without bound.
const OUT_HIGH: usize = 256 * 1024;
/// Bytes a lingering close discards before it gives up on the peer.
const LINGER_BUDGET: usize = 1 << 20;
/// A watching page gets more pushes only while less than this is queued
/// for it; one that stays over it for `WATCH_STALL` is dropped (it cannot
/// keep up), so many watchers cost bounded memory.
const WATCH_HIGH: usize = 256 * 1024;
const WATCH_STALL: Duration = Duration::from_secs(5);

/// What the server shares with its connections while one is handled.
pub(super) struct Ctx<'a> {
    pub config: &'a WsConfig,
    pub now: Instant,
    /// Connections being served (for the push).
    pub served: usize,
    pub stats: &'a dyn Fn() -> String,
    /// What watching pages are sent.
    pub hub: &'a Arc<Hub>,
}

/// A WebSocket that watches the stack (`/watch`): counted as a watcher
/// while it exists.
struct Watching {
    hub: Arc<Hub>,
    cursor: Cursor,
    next_stats: Option<Instant>,
    /// Since when its queued output is over `WATCH_HIGH`.
    stalled_since: Option<Instant>,
}

impl Watching {
    fn new(hub: &Arc<Hub>, next_stats: Option<Instant>) -> Watching {
        hub.add_watcher();
        Watching {
            hub: hub.clone(),
            cursor: Cursor::default(),
            next_stats,
            stalled_since: None,
        }
    }

    /// `select ID` follows connection ID; `select none` follows none.
    fn command(&mut self, text: &str) {
        match text.trim().strip_prefix("select ") {
            Some("none") => self.cursor.select(None),
            Some(id) => match id.parse() {
                Ok(id) => self.cursor.select(Some(id)),
                Err(_) => log::debug!("ws: watch: bad command {text:?}"),
            },
            None => log::debug!("ws: watch: unknown command {text:?}"),
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.hub.remove_watcher();
    }
}

enum Phase {
    /// Reading request heads and answering them.
    Http,
    Ws(Box<Session>),
    /// Our FIN is sent: read and discard until the peer's FIN, so that
    /// closing with unread data does not reset the connection and make the
    /// peer drop our last response (a "lingering close").
    Linger {
        until: Instant,
        budget: usize,
    },
}

/// What the server must do with a connection after a call.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    Keep,
    /// Forget it (dropping the stream closes it).
    Drop,
}

pub(super) struct Conn {
    stream: TcpStream,
    phase: Phase,
    /// Received and not yet parsed (HTTP phase only).
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_sent: usize,
    /// Last byte received, and last progress sending: the head timeout
    /// and the write timeout count from these.
    last_rx: Instant,
    last_tx: Instant,
    /// No request is read after the queued output: the answer said
    /// `close`, or the peer sent its FIN.
    close_after_write: bool,
    /// When the WebSocket's next stats push is due.
    next_push: Option<Instant>,
    /// When our close frame went out (the peer's is awaited until the
    /// close linger).
    closing_since: Option<Instant>,
    /// Set on a watching WebSocket.
    watching: Option<Watching>,
}

impl Conn {
    pub(super) fn new(stream: TcpStream, now: Instant) -> Conn {
        Conn {
            stream,
            phase: Phase::Http,
            inbuf: Vec::new(),
            out: Vec::new(),
            out_sent: 0,
            last_rx: now,
            last_tx: now,
            close_after_write: false,
            next_push: None,
            closing_since: None,
            watching: None,
        }
    }

    /// A connection over the limit: 503, then the lingering close. The
    /// answer is small enough for any send buffer, so it is written now.
    pub(super) fn refuse(stream: TcpStream, ctx: &Ctx) -> (Conn, Next) {
        let mut conn = Conn::new(stream, ctx.now);
        Response::text(503, "Service Unavailable").write_into(&mut conn.out, false, false);
        conn.close_after_write = true;
        let next = conn.flush(ctx);
        (conn, next)
    }

    /// A client waiting for its request head gives its slot up: 503, then
    /// the lingering close.
    pub(super) fn refuse_now(&mut self, ctx: &Ctx) -> Next {
        self.answer_and_close(&Response::text(503, "Service Unavailable"));
        self.flush(ctx)
    }

    /// Served (HTTP or WebSocket), as opposed to being closed.
    pub(super) fn is_served(&self) -> bool {
        !matches!(self.phase, Phase::Linger { .. })
    }

    /// Waiting for a request head (a slot a slow client may be holding).
    pub(super) fn is_waiting_for_head(&self) -> bool {
        matches!(self.phase, Phase::Http) && !self.close_after_write && self.out.is_empty()
    }

    /// A WebSocket watching the stack (pumped by the server).
    pub(super) fn is_watching(&self) -> bool {
        self.watching.is_some()
    }

    pub(super) fn is_ws(&self) -> bool {
        matches!(self.phase, Phase::Ws(_))
    }

    pub(super) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// What to wait for: readable while we take input, writable while
    /// output is queued.
    pub(super) fn interest(&self) -> Interest {
        let pending = self.out_sent < self.out.len();
        let read = match self.phase {
            Phase::Http => !self.close_after_write && !pending,
            Phase::Ws(_) => self.out.len() - self.out_sent < OUT_HIGH,
            Phase::Linger { .. } => true,
        };
        match (read, pending) {
            (true, true) => Interest::BOTH,
            (false, true) => Interest::WRITABLE,
            // Nothing to write and no input wanted only happens in the
            // instant before the lingering close; readable is harmless.
            _ => Interest::READABLE,
        }
    }

    /// The next time `on_timeout` has something to do.
    pub(super) fn deadline(&self, config: &WsConfig) -> Instant {
        let mut at = match &self.phase {
            Phase::Linger { until, .. } => *until,
            // RFC 9112 section 9.5 lets a server close an idle persistent
            // connection; a partial head gets 408 after the same quiet.
            Phase::Http => self.last_rx + config.head_timeout,
            Phase::Ws(_) => {
                let far = self.last_rx + Duration::from_secs(3600);
                let push = self.next_push.unwrap_or(far);
                let close = self.closing_since.map_or(far, |t| t + config.close_linger);
                push.min(close)
            }
        };
        if self.out_sent < self.out.len() {
            at = at.min(self.last_tx + config.write_timeout);
        }
        at
    }

    /// Handles whatever is due at `ctx.now`.
    pub(super) fn on_timeout(&mut self, ctx: &Ctx) -> Next {
        let config = ctx.config;
        if self.out_sent < self.out.len() && ctx.now >= self.last_tx + config.write_timeout {
            return Next::Drop; // the peer stopped reading
        }
        match &mut self.phase {
            Phase::Linger { until, .. } if ctx.now >= *until => Next::Drop,
            Phase::Linger { .. } => Next::Keep,
            Phase::Http => {
                if ctx.now < self.last_rx + config.head_timeout || self.close_after_write {
                    return Next::Keep;
                }
                if self.inbuf.is_empty() {
                    // An idle persistent connection: close it quietly.
                    self.close_after_write = true;
                } else {
                    self.answer_and_close(&Response::text(408, "Request Timeout"));
                }
                self.flush(ctx)
            }
            Phase::Ws(session) => {
                if self
                    .closing_since
                    .is_some_and(|t| ctx.now >= t + config.close_linger)
                {
                    return self.start_linger(ctx);
                }
                if self.next_push.is_some_and(|t| ctx.now >= t) {
                    let interval = config.push_interval;
                    self.next_push = Some(ctx.now + interval);
                    session.push(&push_message(ctx), &mut self.out);
                }
                self.flush(ctx)
            }
        }
    }

    /// The server is stopping: a WebSocket gets close 1001, an HTTP
    /// connection is closed after its answers.
    pub(super) fn going_away(&mut self, ctx: &Ctx) -> Next {
        match &mut self.phase {
            Phase::Ws(session) => {
                session.going_away(&mut self.out);
                self.closing_since.get_or_insert(ctx.now);
            }
            Phase::Http => self.close_after_write = true,
            Phase::Linger { .. } => {}
        }
        self.flush(ctx)
    }

    /// Reads what the socket has (while input is wanted) and answers it.
    pub(super) fn on_readable(&mut self, ctx: &Ctx, scratch: &mut [u8]) -> Next {
        loop {
            let wanted = match self.phase {
                Phase::Http => !self.close_after_write && self.out_sent == self.out.len(),
                Phase::Ws(_) => self.out.len() - self.out_sent < OUT_HIGH,
                Phase::Linger { .. } => true,
            };
            if !wanted {
                return self.flush(ctx);
            }
            let n = match self.stream.read(scratch) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return self.flush(ctx),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Next::Drop,
            };
            if n > 0 {
                self.last_rx = ctx.now;
            }
            let next = match &mut self.phase {
                Phase::Linger { budget, .. } => {
                    *budget = budget.saturating_sub(n);
                    if n == 0 || *budget == 0 {
                        return Next::Drop;
                    }
                    Next::Keep
                }
                Phase::Ws(session) => {
                    // A FIN without a close frame ends the session.
                    if n == 0 || *session.feed(&scratch[..n], &mut self.out) == Status::Done {
                        self.close_after_write = true;
                    }
                    if let Some(w) = &mut self.watching {
                        for c in session.take_commands() {
                            w.command(&c);
                        }
                    }
                    Next::Keep
                }
                Phase::Http if n == 0 => {
                    self.close_after_write = true;
                    Next::Keep
                }
                Phase::Http => {
                    self.inbuf.extend_from_slice(&scratch[..n]);
                    self.answer_requests(ctx);
                    Next::Keep
                }
            };
            if next == Next::Drop || self.close_after_write {
                return self.flush(ctx);
            }
        }
    }

    pub(super) fn on_writable(&mut self, ctx: &Ctx) -> Next {
        self.flush(ctx)
    }

    /// Answers every complete request head in `inbuf`, in order
    /// (pipelining, RFC 9112 section 9.3.2), until one closes the
    /// connection or upgrades it.
    fn answer_requests(&mut self, ctx: &Ctx) {
        let max = ctx.config.max_request_bytes;
        while matches!(self.phase, Phase::Http) && !self.close_after_write {
            if self.out.len() - self.out_sent >= OUT_HIGH {
                return; // answered again once the output drained
            }
            let (req, len) = match http::parse_head(&self.inbuf) {
                Ok(Some((req, len))) if len <= max => (req, len),
                Ok(None) if self.inbuf.len() <= max => break,
                Ok(_) | Err(HeadError::TooLarge) => {
                    return self
                        .answer_and_close(&Response::text(431, "Request Header Fields Too Large"));
                }
                Err(HeadError::Malformed(why)) => {
                    log::debug!("ws: {}: bad request: {why}", peer(&self.stream));
                    return self.answer_and_close(&Response::text(400, "Bad Request"));
                }
            };
            let head: Vec<u8> = self.inbuf.drain(..len).collect();
            log::debug!("ws: {}: {} {}", peer(&self.stream), req.method, req.target);
            self.route(&req, &head, ctx);
        }
        if self.inbuf.is_empty() {
            self.inbuf = Vec::new(); // an idle connection keeps no buffer
        }
    }

    /// Chooses the answer for a request: 404 for unknown paths first, then
    /// 405 for methods a known path does not take.
    fn route(&mut self, req: &Request, head: &[u8], ctx: &Ctx) {
        let head_only = req.method == "HEAD";
        // A body we do not read would be taken for the next request.
        let keep = req.keep_alive() && !req.has_body();
        let response = match (req.path(), req.method.as_str()) {
            ("/", "GET" | "HEAD") => Response {
                status: 200,
                reason: "OK",
                content_type: "text/html; charset=utf-8",
                extra_headers: &[],
                body: super::PAGE_HTML.as_bytes(),
            },
            // `/echo` is the same WebSocket without the stats pushes: a
            // pure echo, as conformance suites (Autobahn) expect.
            ("/ws" | "/echo" | "/watch", "GET") => match check_upgrade(req) {
                Ok(()) if req.path() == "/watch" && ctx.hub.watchers() >= watch::MAX_WATCHERS => {
                    return self.answer_and_close(&Response::text(503, "Service Unavailable"));
                }
                Ok(()) => return self.upgrade(head, req.path(), ctx),
                Err(response) => return self.answer_and_close(&response),
            },
            ("/", _) => method_not_allowed(&[("Allow", "GET, HEAD")]),
            ("/ws" | "/echo" | "/watch", _) => method_not_allowed(&[("Allow", "GET")]),
            _ => Response::text(404, "Not Found"),
        };
        response.write_into(&mut self.out, head_only, keep);
        self.close_after_write |= !keep;
    }

    /// `/ws`: echo and stats pushes; `/echo`: echo only; `/watch`: pushes
    /// only (the table, the followed connection, stats).
    fn upgrade(&mut self, head: &[u8], path: &str, ctx: &Ctx) {
        let rest = std::mem::take(&mut self.inbuf);
        let watch = path == "/watch";
        let session = Session::accept(head, &rest, ctx.config, watch, &mut self.out);
        if *session.status() == Status::Done {
            self.close_after_write = true;
        }
        let interval = ctx.config.push_interval;
        let first_push = (!interval.is_zero()).then(|| ctx.now + interval);
        self.next_push = if path == "/ws" { first_push } else { None };
        if watch && !self.close_after_write {
            // The counters at once, then every push interval.
            self.watching = Some(Watching::new(ctx.hub, first_push.map(|_| ctx.now)));
        }
        self.phase = Phase::Ws(Box::new(session));
    }

    /// Sends a watching page what it has not had yet, as much as its
    /// output allows; drops it if it has not kept up for `WATCH_STALL`.
    pub(super) fn pump(&mut self, ctx: &Ctx) -> Next {
        let (Phase::Ws(session), Some(w)) = (&mut self.phase, &mut self.watching) else {
            return Next::Keep;
        };
        let queued = self.out.len() - self.out_sent;
        if queued >= WATCH_HIGH {
            let since = *w.stalled_since.get_or_insert(ctx.now);
            if ctx.now.saturating_duration_since(since) >= WATCH_STALL {
                log::info!("ws: watch: {} dropped: not keeping up", peer(&self.stream));
                return Next::Drop;
            }
            return Next::Keep;
        }
        w.stalled_since = None;
        let mut messages = Vec::new();
        if let Some(at) = w.next_stats
            && ctx.now >= at
        {
            w.next_stats = Some(ctx.now + ctx.config.push_interval);
            messages.push(push_message(ctx));
        }
        w.hub
            .pull(&mut w.cursor, WATCH_HIGH - queued, &mut messages);
        for m in &messages {
            session.push(m, &mut self.out);
        }
        self.flush(ctx)
    }

    fn answer_and_close(&mut self, response: &Response) {
        response.write_into(&mut self.out, false, false);
        self.close_after_write = true;
        self.inbuf = Vec::new();
    }

    /// Writes queued output; once it is all out and the connection is to
    /// close, sends our FIN and lingers.
    fn flush(&mut self, ctx: &Ctx) -> Next {
        while self.out_sent < self.out.len() {
            match self.stream.write(&self.out[self.out_sent..]) {
                Ok(n) => {
                    self.out_sent += n;
                    self.last_tx = ctx.now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Drop,
            }
        }
        if self.out_sent == self.out.len() {
            self.out_sent = 0;
            self.out.clear();
            if self.out.capacity() > 64 * 1024 {
                self.out = Vec::new();
            }
            if let Phase::Ws(session) = &self.phase
                && session.is_closing()
            {
                self.closing_since.get_or_insert(ctx.now);
            }
            if self.close_after_write {
                return self.start_linger(ctx);
            }
            // Pipelined requests held back by a full output.
            if matches!(self.phase, Phase::Http) && !self.inbuf.is_empty() {
                self.answer_requests(ctx);
                if self.out_sent < self.out.len() || self.close_after_write {
                    return self.flush(ctx);
                }
            }
        }
        Next::Keep
    }

    fn start_linger(&mut self, ctx: &Ctx) -> Next {
        if matches!(self.phase, Phase::Linger { .. }) {
            return Next::Keep;
        }
        if self.stream.shutdown(Shutdown::Write).is_err() {
            return Next::Drop;
        }
        self.inbuf = Vec::new();
        self.out = Vec::new();
        self.out_sent = 0;
        self.next_push = None;
        self.watching = None;
        self.phase = Phase::Linger {
            until: ctx.now + ctx.config.close_linger,
            budget: LINGER_BUDGET,
        };
        Next::Keep
    }
}

fn method_not_allowed(allow: &'static [(&'static str, &'static str)]) -> Response<'static> {
    Response::text(405, "Method Not Allowed").with_headers(allow)
}

fn peer(stream: &TcpStream) -> String {
    stream
        .peer_addr()
        .map_or_else(|e| format!("?({e})"), |a| a.to_string())
}

/// `{"type":"stats","connections":N,"data":<stats callback>}`.
fn push_message(ctx: &Ctx) -> String {
    let data = (ctx.stats)();
    let data = if data.trim().is_empty() {
        "null".to_string()
    } else {
        data
    };
    format!(
        r#"{{"type":"stats","connections":{},"data":{data}}}"#,
        ctx.served
    )
}
