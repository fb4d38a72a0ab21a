//! WebSocket echo service with periodic server push (RFC 6455), over any
//! byte-stream connection type.
//!
//! `serve` runs an accept loop and gives each connection a thread with a
//! small stack, so a slow or silent client never holds up the others. On
//! each connection it reads one HTTP/1.1 request head (bounded in size and
//! time) and answers:
//!
//! - `GET /`   → 200, a self-contained HTML page that talks to `/ws`;
//! - `GET /ws` with `Upgrade: websocket` → the WebSocket handshake, then
//!   echo (text and binary verbatim, ping → pong, close echoed) with a
//!   `{"type":"stats",...}` text message pushed every `push_interval`;
//! - malformed → 400, head too large → 431, other path → 404, other
//!   method → 405, at the connection limit → 503.
//!
//! The server is generic over [`Acceptor`] / [`Conn`], implemented here for
//! `std::net` (loopback tests, or the kernel stack) and trivially for
//! `tapstack::api::{TcpListener, TcpStream}`.
//!
//! `start` plugs it onto our own stack (`api::TcpListener`).
//!
//! One thread per connection reads and writes its socket; there is no
//! second writer. The read timeout is set to the time left until the next
//! push, so the loop wakes either for a frame or for a push. tungstenite
//! keeps a partly received frame in its own buffer when the underlying read
//! times out, and resumes it on the next read.
//!
//! permessage-deflate (RFC 7692) is not offered: tungstenite 0.28 (and
//! 0.30, the newest available here) implement no extensions, and fail a
//! connection on any frame with RSV1 set. The handshake therefore never
//! answers `Sec-WebSocket-Extensions`, and clients fall back to
//! uncompressed frames as the RFC requires.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tungstenite::handshake::derive_accept_key;

use super::http::{self, HeadError, Request, Response};

mod session;

/// Stack size of a connection thread: the handler keeps its buffers on the
/// heap, so a fraction of the default 2 MiB is plenty.
pub const CONN_STACK_BYTES: usize = 256 * 1024;

/// The demo page served at `/`.
pub const PAGE_HTML: &str = include_str!("ws/page.html");

/// One accepted connection: a blocking byte stream with timeouts.
pub trait Conn: Read + Write + Send + 'static {
    /// As `std::net::TcpStream::set_read_timeout`: a read that waits
    /// longer fails with `WouldBlock` or `TimedOut`.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// As `std::net::TcpStream::set_write_timeout`.
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// As `std::net::TcpStream::shutdown`.
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
    /// The peer, for log messages.
    fn peer(&self) -> String;
}

/// A source of connections, such as a listening socket.
pub trait Acceptor: Send + 'static {
    type C: Conn;
    /// Waits for the next connection.
    fn accept_conn(&self) -> io::Result<Self::C>;
}

impl Conn for std::net::TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        std::net::TcpStream::set_read_timeout(self, timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        std::net::TcpStream::set_write_timeout(self, timeout)
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        std::net::TcpStream::shutdown(self, how)
    }
    fn peer(&self) -> String {
        self.peer_addr()
            .map_or_else(|e| format!("?({e})"), |a| a.to_string())
    }
}

impl Acceptor for std::net::TcpListener {
    type C = std::net::TcpStream;
    fn accept_conn(&self) -> io::Result<std::net::TcpStream> {
        let (stream, _) = self.accept()?;
        let _ = stream.set_nodelay(true); // latency only; never fatal
        Ok(stream)
    }
}

/// Supplies the content of each push: a JSON value (usually an object),
/// sent as `{"type":"stats","connections":N,"data":<value>}`.
pub type StatsFn = Arc<dyn Fn() -> String + Send + Sync>;

/// Limits and timings of the service.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Time between two stats pushes on a WebSocket; zero disables pushes.
    pub push_interval: Duration,
    /// Connections served at once (HTTP and WebSocket); more get 503.
    pub max_connections: usize,
    /// Largest request head; a larger one gets 431.
    pub max_request_bytes: usize,
    /// Largest WebSocket message (and frame); a larger one is failed with
    /// close code 1009.
    pub max_message_bytes: usize,
    /// Time a client has to send its complete request head.
    pub head_timeout: Duration,
    /// A write blocked this long (the client reads nothing) drops the
    /// connection.
    pub write_timeout: Duration,
    /// How long a closing connection waits for the peer's close frame and
    /// then its FIN, draining what it still sends.
    pub close_linger: Duration,
}

impl Default for WsConfig {
    fn default() -> WsConfig {
        WsConfig {
            push_interval: Duration::from_secs(5),
            max_connections: 1024,
            max_request_bytes: 8192,
            max_message_bytes: 16 << 20,
            head_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            close_linger: Duration::from_secs(2),
        }
    }
}

/// Connections over `max_connections` being answered 503 at once; more
/// than this are dropped without an answer.
const MAX_REJECTING: usize = 64;

/// State shared by the accept loop and the connection threads.
struct Ctx {
    stats: StatsFn,
    config: WsConfig,
    /// Connections being served.
    active: AtomicUsize,
    /// Connections being answered 503.
    rejecting: AtomicUsize,
}

/// A place among the connections served (or being refused); given back
/// when dropped, so also when a connection thread panics.
struct Slot {
    ctx: Arc<Ctx>,
    refusal: bool,
}

impl Slot {
    fn take(ctx: &Arc<Ctx>, refusal: bool) -> Option<Slot> {
        let (counter, max) = Slot::counter(ctx, refusal);
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot {
                ctx: ctx.clone(),
                refusal,
            })
    }

    fn counter(ctx: &Ctx, refusal: bool) -> (&AtomicUsize, usize) {
        match refusal {
            false => (&ctx.active, ctx.config.max_connections),
            true => (&ctx.rejecting, MAX_REJECTING),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        Slot::counter(&self.ctx, self.refusal)
            .0
            .fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs the accept loop; blocks for good (run it on a thread of its own).
/// Accept errors (a connection reset before it was accepted, or running
/// out of file descriptors) are logged and retried with a growing pause.
pub fn serve(acceptor: impl Acceptor, stats: StatsFn, config: WsConfig) {
    let ctx = Arc::new(Ctx {
        stats,
        config,
        active: AtomicUsize::new(0),
        rejecting: AtomicUsize::new(0),
    });
    let mut pause = Duration::ZERO;
    loop {
        let conn = match acceptor.accept_conn() {
            Ok(conn) => conn,
            // The stack stopped (a clean shutdown): nothing more to accept.
            Err(e) if e.kind() == std::io::ErrorKind::NotConnected => return,
            Err(e) => {
                pause = (pause * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                log::warn!("ws: accept failed: {e}; retrying in {pause:?}");
                std::thread::sleep(pause);
                continue;
            }
        };
        pause = Duration::ZERO;
        if let Some(slot) = Slot::take(&ctx, false) {
            spawn(move || handle_conn(conn, slot));
        } else if let Some(slot) = Slot::take(&ctx, true) {
            spawn(move || reject_busy(conn, slot));
        } else {
            log::info!(
                "ws: {}: dropped, far over the connection limit",
                conn.peer()
            );
        }
    }
}

fn spawn(f: impl FnOnce() + Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name("ws-conn".into())
        .stack_size(CONN_STACK_BYTES)
        .spawn(f);
    if let Err(e) = spawned {
        log::warn!("ws: cannot start a connection thread: {e}");
    }
}

/// Answers 503 to a connection over the limit, without reading its
/// request (the lingering close drains it).
fn reject_busy(mut conn: impl Conn, slot: Slot) {
    log::info!("ws: {}: connection limit reached", conn.peer());
    let config = &slot.ctx.config;
    let linger = config.close_linger.min(Duration::from_secs(1));
    if conn.set_write_timeout(Some(linger)).is_ok() {
        let busy = Response::text(503, "Service Unavailable");
        if busy.write_to(&mut conn, false).is_ok() {
            http::linger_close(conn, linger);
        }
    }
}

/// One connection: read the request head and route it.
fn handle_conn<C: Conn>(mut conn: C, slot: Slot) {
    let ctx = &slot.ctx;
    let config = &ctx.config;
    if conn.set_write_timeout(Some(config.write_timeout)).is_err() {
        return;
    }
    let (req, rest) =
        match http::read_head(&mut conn, config.max_request_bytes, config.head_timeout) {
            Ok(head) => head,
            Err(e) => {
                let response = match e {
                    HeadError::TooLarge => Response::text(431, "Request Header Fields Too Large"),
                    HeadError::Malformed(why) => {
                        log::debug!("ws: {}: bad request: {why}", conn.peer());
                        Response::text(400, "Bad Request")
                    }
                    HeadError::Timeout => Response::text(408, "Request Timeout"),
                    HeadError::Closed | HeadError::Io(_) => return,
                };
                return respond(conn, &response, false, config);
            }
        };
    log::debug!("ws: {}: {} {}", conn.peer(), req.method, req.target);
    route(conn, req, rest, ctx);
}

/// Chooses the answer for a request: 404 for unknown paths first, then
/// 405 for methods a known path does not take.
fn route<C: Conn>(conn: C, req: Request, rest: Vec<u8>, ctx: &Ctx) {
    let config = &ctx.config;
    let head_only = req.method == "HEAD";
    match (req.path(), req.method.as_str()) {
        ("/", "GET" | "HEAD") => {
            let page = Response {
                status: 200,
                reason: "OK",
                content_type: "text/html; charset=utf-8",
                extra_headers: &[],
                body: PAGE_HTML.as_bytes(),
            };
            respond(conn, &page, head_only, config)
        }
        ("/ws", "GET") => match check_upgrade(&req) {
            Ok(accept_key) => session::run(conn, &accept_key, rest, ctx),
            Err(response) => respond(conn, &response, false, config),
        },
        ("/", _) => respond(
            conn,
            &method_not_allowed(&[("Allow", "GET, HEAD")]),
            head_only,
            config,
        ),
        ("/ws", _) => respond(
            conn,
            &method_not_allowed(&[("Allow", "GET")]),
            head_only,
            config,
        ),
        _ => respond(conn, &Response::text(404, "Not Found"), head_only, config),
    }
}

fn method_not_allowed(allow: &'static [(&'static str, &'static str)]) -> Response<'static> {
    Response::text(405, "Method Not Allowed").with_headers(allow)
}

/// Writes a whole response and closes the connection.
fn respond<C: Conn>(mut conn: C, response: &Response, head_only: bool, config: &WsConfig) {
    if response.write_to(&mut conn, head_only).is_ok() {
        http::linger_close(conn, config.close_linger);
    }
}

/// Validates an opening handshake (RFC 6455 section 4.2.1) and returns the
/// `Sec-WebSocket-Accept` value, or the error response to send.
pub fn check_upgrade(req: &Request) -> Result<String, Response<'static>> {
    if !req.header_has_token("upgrade", "websocket") {
        let r = Response::text(426, "Upgrade Required");
        return Err(r.with_headers(&[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")]));
    }
    if req.version != 1 || !req.header_has_token("connection", "upgrade") {
        return Err(Response::text(400, "Bad Request"));
    }
    if req.header("sec-websocket-version") != Some("13") {
        let r = Response::text(426, "Upgrade Required");
        return Err(r.with_headers(&[("Sec-WebSocket-Version", "13")]));
    }
    match req.header("sec-websocket-key") {
        Some(key) if is_websocket_key(key) => Ok(derive_accept_key(key.as_bytes())),
        _ => Err(Response::text(400, "Bad Request")),
    }
}

/// A base64 encoding of 16 bytes: 22 base64 characters and `==`.
fn is_websocket_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b[22..] == *b"=="
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

/// A JSON object of named counters, e.g. from `Net::counters().iter()`:
/// `{"tcp.rx_segments":12,...}`.
pub fn counters_json<'a>(counters: impl IntoIterator<Item = (&'a str, u64)>) -> String {
    let fields: Vec<String> = counters
        .into_iter()
        .map(|(name, value)| format!("{}:{value}", json_string(name)))
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests;

impl Conn for crate::api::TcpStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        crate::api::TcpStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        crate::api::TcpStream::set_write_timeout(self, t)
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        crate::api::TcpStream::shutdown(self, how)
    }
    fn peer(&self) -> String {
        self.peer_addr()
            .map_or_else(|e| format!("?({e})"), |a| a.to_string())
    }
}

impl Acceptor for crate::api::TcpListener {
    type C = crate::api::TcpStream;
    fn accept_conn(&self) -> io::Result<crate::api::TcpStream> {
        let (stream, _) = self.accept()?;
        let _ = stream.set_nodelay(true); // latency only; never fatal
        Ok(stream)
    }
}

/// Serves the page and the WebSocket echo on `port` of our stack, pushing
/// the stack's active TCP connections and counters.
pub fn start(net: &crate::api::Net, port: u16, config: WsConfig) -> io::Result<()> {
    let listener = crate::api::TcpListener::bind_with_backlog(net, ("0.0.0.0", port), 1024)?;
    let stats_net = net.clone();
    let stats: StatsFn = Arc::new(move || {
        format!(
            "{{\"active_tcp_connections\":{},\"counters\":{}}}",
            stats_net.active_tcp_connections(),
            counters_json(stats_net.counters().iter())
        )
    });
    std::thread::Builder::new()
        .name(format!("ws-{port}"))
        .spawn(move || serve(listener, stats, config))?;
    Ok(())
}
