//! Just enough HTTP/1.1 for the WebSocket demo (RFC 9112): read one request
//! head with a size and time bound, parse it with `httparse`, write a
//! complete response, and close the connection without losing that
//! response to a reset (a "lingering close").
//!
//! Every connection serves one request and then closes (`Connection:
//! close`), except a WebSocket upgrade, which `ws` takes over.

use std::io::{self, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use super::ws::Conn;

/// Header lines accepted in one request head; more is answered with 431.
pub const MAX_HEADERS: usize = 64;

/// A parsed request head. Header names keep their case; look them up with
/// [`Request::header`], which ignores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target as sent, query string included.
    pub target: String,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
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
}

/// Why no request head could be read.
#[derive(Debug)]
pub enum HeadError {
    /// The head is larger than the bound, or has too many header lines.
    TooLarge,
    /// Not a well-formed HTTP/1.x request head.
    Malformed(String),
    /// No complete head before the deadline.
    Timeout,
    /// The peer closed the connection before a complete head.
    Closed,
    Io(io::Error),
}

/// Reads one request head of at most `max_bytes` bytes within `timeout`.
/// Returns the request and the bytes read past its end (the start of a
/// body, or of the WebSocket frames that followed the upgrade request).
pub fn read_head<C: Conn>(
    conn: &mut C,
    max_bytes: usize,
    timeout: Duration,
) -> Result<(Request, Vec<u8>), HeadError> {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::Timeout);
        }
        conn.set_read_timeout(Some(left)).map_err(HeadError::Io)?;
        // Never hold more than one byte past the bound: enough to tell
        // "too large" from "exactly at the bound".
        let room = (max_bytes + 1 - buf.len()).min(chunk.len());
        match conn.read(&mut chunk[..room]) {
            Ok(0) => return Err(HeadError::Closed),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if is_retryable(&e) => continue,
            Err(e) => return Err(HeadError::Io(e)),
        }
        if let Some((request, len)) = parse_head(&buf)? {
            if len > max_bytes {
                return Err(HeadError::TooLarge);
            }
            return Ok((request, buf.split_off(len)));
        }
        if buf.len() > max_bytes {
            return Err(HeadError::TooLarge);
        }
    }
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
    let request = Request {
        method: method.to_owned(),
        target: target.to_owned(),
        version,
        headers: req
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect(),
    };
    // RFC 9112 section 3.2: a client MUST send Host in HTTP/1.1 requests,
    // and a server MUST answer 400 to a request without one.
    if request.version == 1 && request.header("host").is_none() {
        return Err(HeadError::Malformed("HTTP/1.1 request without Host".into()));
    }
    Ok(Some((request, len)))
}

/// A complete response, always with `Connection: close`.
pub struct Response<'a> {
    pub status: u16,
    pub reason: &'a str,
    pub content_type: &'a str,
    pub extra_headers: &'a [(&'a str, &'a str)],
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

    pub fn with_headers(mut self, extra_headers: &'a [(&'a str, &'a str)]) -> Response<'a> {
        self.extra_headers = extra_headers;
        self
    }

    /// The response bytes; without the body when answering HEAD.
    pub fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        );
        for (name, value) in self.extra_headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        if !head_only {
            out.extend_from_slice(self.body);
        }
        out
    }

    pub fn write_to(&self, conn: &mut impl Write, head_only: bool) -> io::Result<()> {
        conn.write_all(&self.to_bytes(head_only))?;
        conn.flush()
    }
}

/// Closes a connection after the last response without losing it: stop
/// sending (FIN), then read and discard what the peer still sends until it
/// closes too, for at most `linger` and 1 MiB. Closing with unread data
/// would send a reset, and a reset can make the peer drop the response
/// before its application reads it.
pub fn linger_close<C: Conn>(mut conn: C, linger: Duration) {
    let _ = conn.shutdown(Shutdown::Write);
    let deadline = Instant::now() + linger;
    let mut budget: usize = 1 << 20;
    let mut chunk = [0u8; 2048];
    while budget > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || conn.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match conn.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => budget = budget.saturating_sub(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}

/// Errors after which a read may simply be tried again: a timeout (std
/// reports `WouldBlock` for `SO_RCVTIMEO` on Unix, `TimedOut` elsewhere)
/// or a signal.
pub fn is_retryable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
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
}
