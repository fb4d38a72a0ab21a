//! HTTP/1.1 for the web page (RFC 9112): request heads parsed with
//! `httparse` (origin or absolute form, one Host), complete responses, and
//! the connection that serves them ([`Conn`]: persistence, pipelining,
//! timeouts, the output bound, the lingering close), driven by readiness.
//!
//! The boundary with what is served: this file knows no WebSocket. The
//! application implements [`Service`]: it answers each request head with a
//! [`Response`], or with [`Answer::Upgrade`] and then, in
//! [`Service::upgrade`], hands the connection to an [`Upgraded`] protocol
//! (RFC 9110 section 7.8). From then on that protocol gets the bytes the
//! peer sends and its own deadlines and writes its output into the queue;
//! the connection still reads and writes the socket, bounds the queue,
//! applies the write timeout and closes. The WebSocket code (`ws/`)
//! implements both traits and never names [`Conn`] (only the event loop
//! that owns the connections, `ws/server.rs`, does): `ws` depends on
//! `http`, not back. Traits, not an enum of protocols: adding a protocol
//! changes nothing here.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use crate::api::{Interest, TcpStream};

/// Header lines accepted in one request head; more is answered with 431.
pub const MAX_HEADERS: usize = 64;

/// A parsed request head. Header names keep their case; look them up with
/// [`Request::header`], which ignores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method (`GET`, `HEAD`, ...), as sent.
    pub method: String,
    /// The request target as sent, query string included.
    pub target: String,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Header fields in the order received: name as sent, raw value bytes
    /// (RFC 9110 5.5: a value need not be UTF-8).
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Request {
    /// The first value of header `name` (case-insensitive), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// Whether header `name` (a comma-separated list, possibly repeated)
    /// holds `token`, compared case-insensitively.
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The path part of the target, without the query string.
    pub fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or("")
    }

    /// Whether the connection stays open after the response (RFC 9112
    /// section 9.3): HTTP/1.1 unless the client says `close`, HTTP/1.0
    /// only when it asks for `keep-alive`.
    pub fn keep_alive(&self) -> bool {
        if self.header_has_token("connection", "close") {
            return false;
        }
        self.version == 1 || self.header_has_token("connection", "keep-alive")
    }

    /// Whether a body follows the head (RFC 9112 section 6.3). Our
    /// resources take none; the server closes such a connection after its
    /// answer rather than read the body.
    pub fn has_body(&self) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
            || self
                .header("content-length")
                .is_some_and(|v| v.parse::<u64>().map_or(true, |n| n > 0))
    }
}

/// Why no request head could be parsed.
#[derive(Debug)]
pub enum HeadError {
    /// The head is larger than the bound, or has too many header lines.
    TooLarge,
    /// Not a well-formed HTTP/1.x request head.
    Malformed(String),
}

/// Parses a request head; `Ok(None)` while it is incomplete. On success
/// also returns the head's length in bytes.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed("incomplete request line".into()));
    };
    let mut request = Request {
        method: method.to_owned(),
        target: target.to_owned(),
        version,
        headers: req
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect(),
    };
    let hosts = request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
        .count();
    // RFC 9112 section 3.2: a server MUST answer 400 to an HTTP/1.1
    // request without Host, and to any request with more than one.
    if hosts > 1 {
        return Err(HeadError::Malformed("more than one Host header".into()));
    }
    if request.version == 1 && hosts == 0 {
        return Err(HeadError::Malformed("HTTP/1.1 request without Host".into()));
    }
    // RFC 9112 section 3.2.2: a server MUST accept the absolute form (and
    // then ignores Host: the authority is the target's); what we route is
    // its path and query.
    if let Some(origin) = origin_form(&request.target) {
        request.target = origin;
    }
    Ok(Some((request, len)))
}

/// The origin form (`/path?query`) of an absolute-form target
/// (`http://host:port/path?query`); `None` for any other form.
fn origin_form(target: &str) -> Option<String> {
    let (scheme, rest) = target.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    // RFC 3986 section 3.2: the authority ends at the first '/', '?' or '#'.
    let path_start = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let path = &rest[path_start..];
    Some(if path.starts_with('/') {
        path.to_owned()
    } else {
        // An empty path is "/" (RFC 9112 section 3.2.1).
        format!("/{path}")
    })
}

/// A complete response.
pub struct Response<'a> {
    /// Status code (RFC 9110 15), e.g. 200.
    pub status: u16,
    /// Reason phrase sent after the code, e.g. `OK`.
    pub reason: &'a str,
    /// Value of the `Content-Type` header.
    pub content_type: &'a str,
    /// Further header fields, sent as given.
    pub extra_headers: &'a [(&'a str, &'a str)],
    /// The body; `Content-Length` is its length.
    pub body: &'a [u8],
}

impl<'a> Response<'a> {
    /// A short plain-text response whose body is the status line's text.
    pub fn text(status: u16, reason: &'a str) -> Response<'a> {
        Response {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            extra_headers: &[],
            body: reason.as_bytes(),
        }
    }

    /// The same response with these further header fields.
    pub fn with_headers(mut self, extra_headers: &'a [(&'a str, &'a str)]) -> Response<'a> {
        self.extra_headers = extra_headers;
        self
    }

    /// Appends the response bytes to `out`: without the body when
    /// answering HEAD, and with `Connection: close` or `keep-alive` (the
    /// latter is what HTTP/1.0 clients such as `ab -k` look for).
    pub fn write_into(&self, out: &mut Vec<u8>, head_only: bool, keep_alive: bool) {
        use std::io::Write as _;
        let connection = if keep_alive { "keep-alive" } else { "close" };
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: {connection}\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        );
        for (name, value) in self.extra_headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(self.body);
        }
    }

    /// The response bytes, with `Connection: close`.
    pub fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_into(&mut out, head_only, false);
        out
    }
}

/// Output queued beyond this stops reading (and parsing pipelined
/// requests) until the peer has taken some: a client that sends without
/// reading cannot make us buffer without bound.
const OUT_HIGH: usize = 256 * 1024;
/// Bytes a lingering close discards before it gives up on the peer.
const LINGER_BUDGET: usize = 1 << 20;

/// The connection's limits and timings (fields public: a value record the
/// application fills from its configuration).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest request head; a larger one gets 431.
    pub max_request_bytes: usize,
    /// Quiet before a partial head gets 408 (an idle one: closed).
    pub head_timeout: Duration,
    /// Output that makes no progress this long drops the connection.
    pub write_timeout: Duration,
    /// How long the lingering close drains the peer.
    pub close_linger: Duration,
}

/// The application behind the connections, as one call sees it (its
/// configuration, the time, its shared state).
pub(crate) trait Service {
    /// What [`Service::answer`] asks a connection to switch to.
    type Upgrade;
    /// The protocol a connection speaks once switched.
    type Protocol: Upgraded<Self>;
    fn limits(&self) -> Limits;
    fn now(&self) -> Instant;
    /// The answer to one request head.
    fn answer(&self, req: &Request) -> Answer<'_, Self::Upgrade>;
    /// Switches the connection to the protocol: writes the answer to
    /// `head` (the upgrading request's bytes, e.g. a 101) into `out`, then
    /// handles `rest`, the bytes that followed the head.
    fn upgrade(
        &self,
        to: Self::Upgrade,
        head: &[u8],
        rest: &[u8],
        out: &mut Vec<u8>,
    ) -> (Self::Protocol, Flow);
}

/// How a request is answered.
pub(crate) enum Answer<'a, U> {
    /// This response; the connection persists if the request allows it.
    Respond(Response<'a>),
    /// This response, then the connection closes.
    Close(Response<'a>),
    /// Switch protocols ([`Service::upgrade`]).
    Upgrade(U),
}

/// A protocol the connection switched to, in a call of service `S`.
pub(crate) trait Upgraded<S: ?Sized> {
    /// Bytes from the peer; empty once the peer sent its FIN.
    fn on_data(&mut self, svc: &S, data: &[u8], out: &mut Vec<u8>) -> Flow;
    /// When `on_timeout` has work next; `None`: nothing planned.
    fn deadline(&self) -> Option<Instant>;
    fn on_timeout(&mut self, svc: &S, out: &mut Vec<u8>) -> Flow;
    /// The server is stopping.
    fn going_away(&mut self, svc: &S, out: &mut Vec<u8>) -> Flow;
    /// Everything queued has been sent.
    fn on_flushed(&mut self, svc: &S);
}

/// What an upgraded protocol asks of the connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Carry on.
    Open,
    /// Send what is queued, then close (FIN and the lingering close).
    Finish,
    /// Close now, dropping what is still queued.
    Linger,
    /// Drop the connection at once.
    Drop,
}

/// What the server must do with a connection after a call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    Keep,
    /// Forget it (dropping the stream closes it).
    Drop,
}

enum Phase<P> {
    /// Reading request heads and answering them.
    Http,
    Upgraded(Box<P>),
    /// Our FIN is sent: read and discard until the peer's FIN, so that
    /// closing with unread data does not reset the connection and make the
    /// peer drop our last response (a "lingering close").
    Linger {
        until: Instant,
        budget: usize,
    },
}

/// One connection, driven by readiness: non-blocking reads and writes
/// only; the server calls in when the socket is ready or the deadline
/// passed, and asks for the next deadline and interest. `S` is the
/// service it serves (and whose protocol it may be upgraded to).
pub(crate) struct Conn<S: Service> {
    stream: TcpStream,
    phase: Phase<S::Protocol>,
    /// Received and not yet parsed (HTTP phase only).
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_sent: usize,
    /// Last byte received, and last progress sending: the head timeout
    /// and the write timeout count from these.
    last_rx: Instant,
    last_tx: Instant,
    /// No request is read after the queued output: the answer said
    /// `close`, the peer sent its FIN, or the protocol finished.
    close_after_write: bool,
}

impl<S: Service> Conn<S> {
    pub(crate) fn new(stream: TcpStream, now: Instant) -> Conn<S> {
        Conn {
            stream,
            phase: Phase::Http,
            inbuf: Vec::new(),
            out: Vec::new(),
            out_sent: 0,
            last_rx: now,
            last_tx: now,
            close_after_write: false,
        }
    }

    /// A connection over the limit: 503, then the lingering close. The
    /// answer is small enough for any send buffer, so it is written now.
    pub(crate) fn refuse(stream: TcpStream, svc: &S) -> (Conn<S>, Next) {
        let mut conn = Conn::new(stream, svc.now());
        Response::text(503, "Service Unavailable").write_into(&mut conn.out, false, false);
        conn.close_after_write = true;
        let next = conn.flush(svc);
        (conn, next)
    }

    /// A client waiting for its request head gives its slot up: 503, then
    /// the lingering close.
    pub(crate) fn refuse_now(&mut self, svc: &S) -> Next {
        self.answer_and_close(&Response::text(503, "Service Unavailable"));
        self.flush(svc)
    }

    /// Served (HTTP or upgraded), as opposed to being closed.
    pub(crate) fn is_served(&self) -> bool {
        !matches!(self.phase, Phase::Linger { .. })
    }

    /// Waiting for a request head (a slot a slow client may be holding).
    pub(crate) fn is_waiting_for_head(&self) -> bool {
        matches!(self.phase, Phase::Http) && !self.close_after_write && self.out.is_empty()
    }

    /// The protocol it was upgraded to, while it speaks it.
    pub(crate) fn upgraded(&self) -> Option<&S::Protocol> {
        match &self.phase {
            Phase::Upgraded(p) => Some(p),
            _ => None,
        }
    }

    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The peer's address, for the log.
    pub(crate) fn peer(&self) -> String {
        let peer = self.stream.peer_addr();
        peer.map_or_else(|e| format!("?({e})"), |a| a.to_string())
    }

    /// Queued output not yet sent.
    fn queued(&self) -> usize {
        self.out.len() - self.out_sent
    }

    /// Whether input is wanted now.
    fn reading(&self) -> bool {
        match self.phase {
            Phase::Http => !self.close_after_write && self.queued() == 0,
            Phase::Upgraded(_) => self.queued() < OUT_HIGH,
            Phase::Linger { .. } => true,
        }
    }

    /// What to wait for: readable while we take input, writable while
    /// output is queued.
    pub(crate) fn interest(&self) -> Interest {
        match (self.reading(), self.queued() > 0) {
            (true, true) => Interest::BOTH,
            (false, true) => Interest::WRITABLE,
            // Nothing to write and no input wanted only happens in the
            // instant before the lingering close; readable is harmless.
            _ => Interest::READABLE,
        }
    }

    /// When `on_timeout` has something to do.
    pub(crate) fn deadline(&self, limits: &Limits) -> Instant {
        let mut at = match &self.phase {
            Phase::Linger { until, .. } => *until,
            // RFC 9112 section 9.5 lets a server close an idle persistent
            // connection; a partial head gets 408 after the same quiet.
            Phase::Http => self.last_rx + limits.head_timeout,
            Phase::Upgraded(p) => {
                let far = self.last_rx + Duration::from_secs(3600);
                p.deadline().map_or(far, |t| t.min(far))
            }
        };
        if self.queued() > 0 {
            at = at.min(self.last_tx + limits.write_timeout);
        }
        at
    }

    /// Handles whatever is due now.
    pub(crate) fn on_timeout(&mut self, svc: &S) -> Next {
        let (limits, now) = (svc.limits(), svc.now());
        if self.queued() > 0 && now >= self.last_tx + limits.write_timeout {
            return Next::Drop; // the peer stopped reading
        }
        match &mut self.phase {
            Phase::Linger { until, .. } if now >= *until => Next::Drop,
            Phase::Linger { .. } => Next::Keep,
            Phase::Http => {
                if now < self.last_rx + limits.head_timeout || self.close_after_write {
                    return Next::Keep;
                }
                if self.inbuf.is_empty() {
                    // An idle persistent connection: close it quietly.
                    self.close_after_write = true;
                } else {
                    self.answer_and_close(&Response::text(408, "Request Timeout"));
                }
                self.flush(svc)
            }
            Phase::Upgraded(p) => {
                let flow = p.on_timeout(svc, &mut self.out);
                self.follow(flow, svc)
            }
        }
    }

    /// The server is stopping: an upgraded protocol says goodbye its way,
    /// an HTTP connection is closed after its answers.
    pub(crate) fn going_away(&mut self, svc: &S) -> Next {
        match &mut self.phase {
            Phase::Upgraded(p) => {
                let flow = p.going_away(svc, &mut self.out);
                return self.follow(flow, svc);
            }
            Phase::Http => self.close_after_write = true,
            Phase::Linger { .. } => {}
        }
        self.flush(svc)
    }

    /// Runs `f` on the upgraded protocol outside of any I/O event (e.g. a
    /// push the application decided on); `f` also gets the bytes still
    /// queued. Nothing happens before the upgrade.
    pub(crate) fn with_upgraded(
        &mut self,
        svc: &S,
        f: impl FnOnce(&mut S::Protocol, usize, &mut Vec<u8>) -> Flow,
    ) -> Next {
        let queued = self.queued();
        let Phase::Upgraded(p) = &mut self.phase else {
            return Next::Keep;
        };
        let flow = f(p, queued, &mut self.out);
        self.follow(flow, svc)
    }

    /// Reads what the socket has (while input is wanted) and answers it.
    pub(crate) fn on_readable(&mut self, svc: &S, scratch: &mut [u8]) -> Next {
        loop {
            if !self.reading() {
                return self.flush(svc);
            }
            let n = match self.stream.read(scratch) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return self.flush(svc),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Next::Drop,
            };
            if n > 0 {
                self.last_rx = svc.now();
            }
            match &mut self.phase {
                Phase::Linger { budget, .. } => {
                    *budget = budget.saturating_sub(n);
                    if n == 0 || *budget == 0 {
                        return Next::Drop;
                    }
                }
                Phase::Upgraded(p) => match p.on_data(svc, &scratch[..n], &mut self.out) {
                    Flow::Open => {}
                    Flow::Finish => self.close_after_write = true,
                    Flow::Linger => return self.start_linger(svc),
                    Flow::Drop => return Next::Drop,
                },
                Phase::Http if n == 0 => self.close_after_write = true,
                Phase::Http => {
                    self.inbuf.extend_from_slice(&scratch[..n]);
                    self.answer_requests(svc);
                }
            }
            if self.close_after_write {
                return self.flush(svc);
            }
        }
    }

    pub(crate) fn on_writable(&mut self, svc: &S) -> Next {
        self.flush(svc)
    }

    /// Does what an upgraded protocol asked, then writes.
    fn follow(&mut self, flow: Flow, svc: &S) -> Next {
        match flow {
            Flow::Open => {}
            Flow::Finish => self.close_after_write = true,
            Flow::Linger => return self.start_linger(svc),
            Flow::Drop => return Next::Drop,
        }
        self.flush(svc)
    }

    /// Answers every complete request head in `inbuf`, in order
    /// (pipelining, RFC 9112 section 9.3.2), until one closes the
    /// connection or upgrades it.
    fn answer_requests(&mut self, svc: &S) {
        let max = svc.limits().max_request_bytes;
        while matches!(self.phase, Phase::Http) && !self.close_after_write {
            if self.queued() >= OUT_HIGH {
                return; // answered again once the output drained
            }
            let (req, len) = match parse_head(&self.inbuf) {
                Ok(Some((req, len))) if len <= max => (req, len),
                Ok(None) if self.inbuf.len() <= max => break,
                Ok(_) | Err(HeadError::TooLarge) => {
                    return self
                        .answer_and_close(&Response::text(431, "Request Header Fields Too Large"));
                }
                Err(HeadError::Malformed(why)) => {
                    log::debug!("ws: {}: bad request: {why}", self.peer());
                    return self.answer_and_close(&Response::text(400, "Bad Request"));
                }
            };
            let head: Vec<u8> = self.inbuf.drain(..len).collect();
            log::debug!("ws: {}: {} {}", self.peer(), req.method, req.target);
            self.route(&req, &head, svc);
        }
        if self.inbuf.is_empty() {
            self.inbuf = Vec::new(); // an idle connection keeps no buffer
        }
    }

    /// Sends the service's answer to `req` (`head`: its bytes).
    fn route(&mut self, req: &Request, head: &[u8], svc: &S) {
        let head_only = req.method == "HEAD";
        // A body we do not read would be taken for the next request.
        let keep = req.keep_alive() && !req.has_body();
        match svc.answer(req) {
            Answer::Respond(response) => {
                response.write_into(&mut self.out, head_only, keep);
                self.close_after_write |= !keep;
            }
            Answer::Close(response) => self.answer_and_close(&response),
            Answer::Upgrade(to) => {
                let rest = std::mem::take(&mut self.inbuf);
                let (protocol, flow) = svc.upgrade(to, head, &rest, &mut self.out);
                self.close_after_write |= flow != Flow::Open;
                self.phase = Phase::Upgraded(Box::new(protocol));
            }
        }
    }

    fn answer_and_close(&mut self, response: &Response) {
        response.write_into(&mut self.out, false, false);
        self.close_after_write = true;
        self.inbuf = Vec::new();
    }

    /// Writes queued output; once it is all out and the connection is to
    /// close, sends our FIN and lingers.
    fn flush(&mut self, svc: &S) -> Next {
        while self.queued() > 0 {
            match self.stream.write(&self.out[self.out_sent..]) {
                Ok(n) => {
                    self.out_sent += n;
                    self.last_tx = svc.now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Drop,
            }
        }
        if self.queued() == 0 {
            self.out_sent = 0;
            self.out.clear();
            if self.out.capacity() > 64 * 1024 {
                self.out = Vec::new();
            }
            if let Phase::Upgraded(p) = &mut self.phase {
                p.on_flushed(svc);
            }
            if self.close_after_write {
                return self.start_linger(svc);
            }
            // Pipelined requests held back by a full output.
            if matches!(self.phase, Phase::Http) && !self.inbuf.is_empty() {
                self.answer_requests(svc);
                if self.queued() > 0 || self.close_after_write {
                    return self.flush(svc);
                }
            }
        }
        Next::Keep
    }

    fn start_linger(&mut self, svc: &S) -> Next {
        if matches!(self.phase, Phase::Linger { .. }) {
            return Next::Keep;
        }
        if self.stream.shutdown(Shutdown::Write).is_err() {
            return Next::Drop;
        }
        self.inbuf = Vec::new();
        self.out = Vec::new();
        self.out_sent = 0;
        // Dropping the protocol ends it (a watcher stops being counted).
        self.phase = Phase::Linger {
            until: svc.now() + svc.limits().close_linger,
            budget: LINGER_BUDGET,
        };
        Next::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_head_and_keeps_the_rest() {
        let raw = b"GET /ws?x=1 HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n\r\nXY";
        let (req, len) = parse_head(raw).unwrap().unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.path(), "/ws");
        assert_eq!(req.version, 1);
        assert_eq!(req.header("HOST"), Some("a"));
        assert!(req.header_has_token("connection", "upgrade"));
        assert_eq!(&raw[len..], b"XY");
    }

    #[test]
    fn partial_head_is_incomplete() {
        assert!(
            parse_head(b"GET / HTTP/1.1\r\nHost: a\r\n")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn malformed_heads_are_rejected() {
        for raw in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/9.9\r\n\r\n",
        ] {
            assert!(
                matches!(parse_head(raw), Err(HeadError::Malformed(_))),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn too_many_headers_is_too_large() {
        let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            raw.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        assert!(matches!(parse_head(&raw), Err(HeadError::TooLarge)));
    }

    #[test]
    fn response_bytes() {
        let r = Response::text(404, "Not Found");
        let s = String::from_utf8(r.to_bytes(false)).unwrap();
        assert!(s.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(s.contains("Content-Length: 9\r\n"));
        assert!(s.ends_with("\r\n\r\nNot Found"));
        let head = String::from_utf8(r.to_bytes(true)).unwrap();
        assert!(head.ends_with("\r\n\r\n"));
    }

    #[test]
    fn duplicate_host_is_malformed() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n";
        assert!(matches!(parse_head(raw), Err(HeadError::Malformed(_))));
        // Also for HTTP/1.0, where Host is optional.
        let raw = b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n";
        assert!(matches!(parse_head(raw), Err(HeadError::Malformed(_))));
    }

    #[test]
    fn absolute_form_target_is_routed_by_its_path() {
        for (target, path, full) in [
            ("http://10.0.0.2:8080/", "/", "/"),
            ("HTTP://example.com/ws?x=1", "/ws", "/ws?x=1"),
            ("http://example.com", "/", "/"),
            ("http://example.com?q", "/", "/?q"),
        ] {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: other\r\n\r\n");
            let (req, _) = parse_head(raw.as_bytes()).unwrap().unwrap();
            assert_eq!(req.path(), path, "{target}");
            assert_eq!(req.target, full, "{target}");
        }
        // Origin form is kept as sent.
        let (req, _) = parse_head(b"GET /a?b HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(req.target, "/a?b");
    }

    #[test]
    fn persistence_follows_version_and_connection_header() {
        let keep = |raw: &[u8]| parse_head(raw).unwrap().unwrap().0.keep_alive();
        assert!(keep(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!keep(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n"
        ));
        assert!(!keep(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(keep(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    }

    #[test]
    fn body_is_detected() {
        let body = |raw: &[u8]| parse_head(raw).unwrap().unwrap().0.has_body();
        assert!(!body(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!body(
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(body(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"
        ));
        assert!(body(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
    }

    #[test]
    fn keep_alive_response_says_so() {
        let mut out = Vec::new();
        Response::text(200, "OK").write_into(&mut out, false, true);
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("\r\nConnection: keep-alive\r\n"), "{s}");
    }
}
