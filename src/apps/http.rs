//! Just enough HTTP/1.1 for the WebSocket demo (RFC 9112): parse request
//! heads with `httparse` (origin or absolute form, one Host), decide
//! whether the connection persists, and write complete responses. The
//! connection handling (keep-alive, pipelining, timeouts, the lingering
//! close) is `ws::conn`'s.

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

impl Request {
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
