//! The web page and WebSocket echo (RFC 6455) on our own stack.
//!
//! On each connection (HTTP/1.1, persistent, pipelined: `http.rs`'s
//! connection, which reaches the WebSocket through `service.rs`):
//!
//! - `GET /`   → 200, a self-contained HTML page that talks to `/ws`;
//! - `GET /ws` with `Upgrade: websocket` → the WebSocket handshake, then
//!   echo (text and binary verbatim, ping → pong, close echoed) with a
//!   `{"type":"stats",...}` text message pushed every `push_interval`;
//!   permessage-deflate (RFC 7692) when the client offers it
//!   (`session.rs`, over the sans-I/O `shiguredo_websocket` crate);
//! - `GET /echo` → the same WebSocket echo without pushes (for
//!   conformance suites such as Autobahn, and the page's echo box);
//! - `GET /watch` → a WebSocket of pushes only, for the page: the
//!   connection table, the segments and samples of the connection the page
//!   follows (`select ID`), the counters (`watch.rs`);
//! - malformed or duplicate Host → 400, head too large → 431, other path
//!   → 404, other method → 405, head not complete within the head timeout
//!   of quiet → 408, over the connection limit → 503.
//!
//! One thread serves every connection from the stack's `Poll`
//! (`server.rs`). Stopping the server ([`WsServer::stop`]) sends close
//! 1001 (going away) to every WebSocket client and waits briefly for the
//! close handshakes.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::http::{Limits, Request, Response};

mod deflate;
mod inbound;
mod server;
mod service;
mod session;
mod watch;

/// The demo page served at `/`.
pub const PAGE_HTML: &str = include_str!("ws/page.html");

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
    /// Largest WebSocket message (and frame, compressed or not); a larger
    /// one is failed with close code 1009.
    pub max_message_bytes: usize,
    /// Quiet (no byte received) after which a partial request head gets
    /// 408 and an idle persistent connection is closed.
    pub head_timeout: Duration,
    /// Output that makes no progress this long (the client reads
    /// nothing) drops the connection.
    pub write_timeout: Duration,
    /// How long a closing connection waits for the peer's close frame and
    /// then its FIN, draining what it still sends.
    pub close_linger: Duration,
    /// Offer permessage-deflate to clients that ask for it.
    pub compression: bool,
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
            compression: true,
        }
    }
}

impl WsConfig {
    /// What the HTTP connection needs of it.
    pub(crate) fn http_limits(&self) -> Limits {
        Limits {
            max_request_bytes: self.max_request_bytes,
            head_timeout: self.head_timeout,
            write_timeout: self.write_timeout,
            close_linger: self.close_linger,
        }
    }
}

/// A running server; [`WsServer::stop`] ends it with a goodbye to every
/// client. Dropping it without `stop` leaves it serving until the stack
/// stops.
pub struct WsServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WsServer {
    /// Sends close 1001 to every WebSocket client, closes HTTP
    /// connections after their answers, and returns once the close
    /// handshakes are done or the close linger (at most 2 s) passed. Call
    /// it before the stack shuts down.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves on `listener` of `net` until stopped.
pub fn serve(
    net: &crate::api::Net,
    listener: crate::api::TcpListener,
    stats: StatsFn,
    config: WsConfig,
) -> io::Result<WsServer> {
    let name = format!("ws-{}", listener.local_addr().map_or(0, |a| a.port()));
    let (stop, thread) = server::spawn(net, listener, stats, config, name)?;
    Ok(WsServer {
        stop,
        thread: Some(thread),
    })
}

/// Validates an opening handshake (RFC 6455 section 4.2.1); on failure
/// returns the error response to send.
pub fn check_upgrade(req: &Request) -> Result<(), Response<'static>> {
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
        Some(key) if is_websocket_key(key) => Ok(()),
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

/// `s` as a JSON string literal (the daemon's writer: one escaping rule).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    crate::daemon::show::json_str(&mut out, s);
    out
}

/// Serves the page and the WebSocket echo on `port` of our stack, pushing
/// the stack's active TCP connections and counters.
pub fn start(net: &crate::api::Net, port: u16, config: WsConfig) -> io::Result<WsServer> {
    let listener = crate::api::TcpListener::bind_with_backlog(net, ("0.0.0.0", port), 1024)?;
    let stats_net = net.clone();
    let stats: StatsFn = Arc::new(move || {
        format!(
            "{{\"active_tcp_connections\":{},\"counters\":{}}}",
            stats_net.active_tcp_connections(),
            counters_json(stats_net.counters().iter())
        )
    });
    serve(net, listener, stats, config)
}
