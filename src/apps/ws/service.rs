//! What the web server serves, on the WebSocket side of the HTTP
//! connection's boundary (`http.rs`): [`Ctx`] is the [`http::Service`] of
//! one call (routes, upgrades), [`WsConn`] the [`http::Upgraded`] protocol
//! of an upgraded connection (the session, its pushes, its watch). Nothing
//! here touches the socket: the connection moves the bytes.

use std::sync::Arc;
use std::time::Instant;

use super::session::{Session, Status};
use super::watch::{self, Cursor, Hub};
use super::{PAGE_HTML, StatsFn, WsConfig, check_upgrade};
use crate::apps::http::{self, Answer, Flow, Limits, Request, Response};

/// A watching page gets more pushes only while less than this is queued
/// for it; one that stays over it for `WATCH_STALL` is dropped (it cannot
/// keep up), so many watchers cost bounded memory.
const WATCH_HIGH: usize = 256 * 1024;
const WATCH_STALL: std::time::Duration = std::time::Duration::from_secs(5);

/// What the server shares with its connections while one is handled.
/// The server keeps one and sets `now` and `served` before each call
/// (fields public to the server for that: plain values it owns).
pub(super) struct Ctx {
    pub config: WsConfig,
    pub now: Instant,
    /// Connections being served (for the push).
    pub served: usize,
    pub stats: StatsFn,
    /// What watching pages are sent.
    pub hub: Arc<Hub>,
}

/// Which WebSocket a request asks for.
pub(super) enum Endpoint {
    /// `/ws`: echo and stats pushes.
    Ws,
    /// `/echo`: echo only (for conformance suites such as Autobahn).
    Echo,
    /// `/watch`: pushes only (the table, the followed connection, stats).
    Watch,
}

impl http::Service for Ctx {
    type Upgrade = Endpoint;
    type Protocol = WsConn;

    fn limits(&self) -> Limits {
        self.config.http_limits()
    }

    fn now(&self) -> Instant {
        self.now
    }

    /// 404 for unknown paths first, then 405 for methods a known path
    /// does not take.
    fn answer(&self, req: &Request) -> Answer<'_, Endpoint> {
        let endpoint = match req.path() {
            "/ws" => Endpoint::Ws,
            "/echo" => Endpoint::Echo,
            "/watch" => Endpoint::Watch,
            "/" if matches!(req.method.as_str(), "GET" | "HEAD") => {
                return Answer::Respond(Response {
                    status: 200,
                    reason: "OK",
                    content_type: "text/html; charset=utf-8",
                    extra_headers: &[],
                    body: PAGE_HTML.as_bytes(),
                });
            }
            "/" => return Answer::Respond(method_not_allowed(&[("Allow", "GET, HEAD")])),
            _ => return Answer::Respond(Response::text(404, "Not Found")),
        };
        if req.method != "GET" {
            return Answer::Respond(method_not_allowed(&[("Allow", "GET")]));
        }
        match check_upgrade(req) {
            Ok(())
                if matches!(endpoint, Endpoint::Watch)
                    && self.hub.watchers() >= watch::MAX_WATCHERS =>
            {
                Answer::Close(Response::text(503, "Service Unavailable"))
            }
            Ok(()) => Answer::Upgrade(endpoint),
            Err(response) => Answer::Close(response),
        }
    }

    fn upgrade(&self, to: Endpoint, head: &[u8], rest: &[u8], out: &mut Vec<u8>) -> (WsConn, Flow) {
        let watching = matches!(to, Endpoint::Watch);
        let session = Session::accept(head, rest, &self.config, watching, out);
        let done = *session.status() == Status::Done;
        let interval = self.config.push_interval;
        let first_push = (!interval.is_zero()).then(|| self.now + interval);
        let conn = WsConn {
            session,
            next_push: if matches!(to, Endpoint::Ws) {
                first_push
            } else {
                None
            },
            closing_since: None,
            close_linger: self.config.close_linger,
            // The counters at once, then every push interval.
            watching: (watching && !done)
                .then(|| Watching::new(&self.hub, first_push.map(|_| self.now))),
        };
        (conn, if done { Flow::Finish } else { Flow::Open })
    }
}

/// An upgraded connection: the WebSocket session and what we push on it.
pub(super) struct WsConn {
    session: Session,
    /// When the next stats push is due (`/ws`).
    next_push: Option<Instant>,
    /// When our close frame went out (the peer's is awaited until the
    /// close linger).
    closing_since: Option<Instant>,
    /// Set on a watching WebSocket.
    watching: Option<Watching>,
    /// The close linger, for `deadline`.
    close_linger: std::time::Duration,
}

impl WsConn {
    /// A WebSocket watching the stack (pumped by the server).
    pub(super) fn is_watching(&self) -> bool {
        self.watching.is_some()
    }

    /// Sends a watching page what it has not had yet, as much as its
    /// output (`queued` bytes waiting) allows; drops it if it has not kept
    /// up for `WATCH_STALL`.
    pub(super) fn pump(&mut self, ctx: &Ctx, queued: usize, out: &mut Vec<u8>) -> Flow {
        let Some(w) = &mut self.watching else {
            return Flow::Open;
        };
        if queued >= WATCH_HIGH {
            let since = *w.stalled_since.get_or_insert(ctx.now);
            if ctx.now.saturating_duration_since(since) >= WATCH_STALL {
                return Flow::Drop;
            }
            return Flow::Open;
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
            self.session.push(m, out);
        }
        Flow::Open
    }
}

impl http::Upgraded<Ctx> for WsConn {
    fn on_data(&mut self, _ctx: &Ctx, data: &[u8], out: &mut Vec<u8>) -> Flow {
        // A FIN without a close frame ends the session.
        let done = data.is_empty() || *self.session.feed(data, out) == Status::Done;
        if let Some(w) = &mut self.watching {
            for c in self.session.take_commands() {
                w.command(&c);
            }
        }
        if done { Flow::Finish } else { Flow::Open }
    }

    fn deadline(&self) -> Option<Instant> {
        let close = self.closing_since.map(|t| t + self.close_linger);
        match (self.next_push, close) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_timeout(&mut self, ctx: &Ctx, out: &mut Vec<u8>) -> Flow {
        if self
            .closing_since
            .is_some_and(|t| ctx.now >= t + ctx.config.close_linger)
        {
            return Flow::Linger;
        }
        if self.next_push.is_some_and(|t| ctx.now >= t) {
            self.next_push = Some(ctx.now + ctx.config.push_interval);
            self.session.push(&push_message(ctx), out);
        }
        Flow::Open
    }

    fn going_away(&mut self, ctx: &Ctx, out: &mut Vec<u8>) -> Flow {
        self.session.going_away(out);
        self.closing_since.get_or_insert(ctx.now);
        Flow::Open
    }

    fn on_flushed(&mut self, ctx: &Ctx) {
        if self.session.is_closing() {
            self.closing_since.get_or_insert(ctx.now);
        }
    }
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

fn method_not_allowed(allow: &'static [(&'static str, &'static str)]) -> Response<'static> {
    Response::text(405, "Method Not Allowed").with_headers(allow)
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
