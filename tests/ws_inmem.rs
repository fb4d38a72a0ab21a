//! The web server on one in-memory stack, raw HTTP and WebSocket bytes
//! from another: persistence, pipelining, timeouts, the limit's 503 and
//! the goodbye on stop. No root. Every read is bounded by a timeout.

mod inmem;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use tapstack::api::TcpStream;
use tapstack::apps::ws::{self, WsConfig};

const PORT: u16 = 8080;
const IO: Duration = Duration::from_secs(10);

fn config() -> WsConfig {
    WsConfig {
        push_interval: Duration::ZERO,
        head_timeout: Duration::from_millis(400),
        close_linger: Duration::from_millis(500),
        ..WsConfig::default()
    }
}

fn connect(pair: &inmem::Pair) -> TcpStream {
    let s = TcpStream::connect(&pair.a, (inmem::B, PORT)).expect("connect");
    s.set_read_timeout(Some(IO)).unwrap();
    s.set_write_timeout(Some(IO)).unwrap();
    s
}

/// Reads until `done(bytes)` or EOF; panics after IO.
fn read_until(s: &mut TcpStream, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + IO;
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while !done(&got) {
        assert!(
            Instant::now() < deadline,
            "no answer: {:?}",
            String::from_utf8_lossy(&got)
        );
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read: {e}; got {:?}", String::from_utf8_lossy(&got)),
        }
    }
    got
}

fn statuses(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .split("HTTP/1.1 ")
        .skip(1)
        .map(|r| r[..3].to_string())
        .collect()
}

#[test]
fn pipelined_requests_on_a_persistent_connection_are_answered_in_order() {
    let pair = inmem::Pair::new();
    let server = ws::start(&pair.b, PORT, config()).unwrap();
    let mut s = connect(&pair);
    s.write_all(
        b"GET /nope HTTP/1.1\r\nHost: b\r\n\r\n\
          HEAD / HTTP/1.1\r\nHost: b\r\n\r\n\
          GET http://b:8080/nope2 HTTP/1.1\r\nHost: x\r\n\r\n\
          GET / HTTP/1.1\r\nHost: b\r\nHost: c\r\n\r\n",
    )
    .unwrap();
    // The last request (two Host headers) gets 400 and closes.
    let got = read_until(&mut s, |_| false);
    assert_eq!(
        statuses(&got),
        ["404", "200", "404", "400"],
        "{}",
        String::from_utf8_lossy(&got)
    );
    let text = String::from_utf8_lossy(&got);
    assert_eq!(text.matches("Connection: keep-alive").count(), 3, "{text}");
    assert!(text.ends_with("Bad Request"), "{text}");
    server.stop();
}

#[test]
fn partial_head_gets_408_after_quiet_and_idle_connection_closes() {
    let pair = inmem::Pair::new();
    let server = ws::start(&pair.b, PORT, config()).unwrap();
    let mut idle = connect(&pair);
    let mut partial = connect(&pair);
    partial.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
    let t = Instant::now();
    let got = read_until(&mut partial, |_| false);
    assert_eq!(statuses(&got), ["408"]);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    // An idle persistent connection is closed without an answer.
    assert!(read_until(&mut idle, |_| false).is_empty());
    server.stop();
}

#[test]
fn connections_over_the_limit_get_503() {
    let pair = inmem::Pair::new();
    let cfg = WsConfig {
        max_connections: 2,
        ..config()
    };
    let server = ws::start(&pair.b, PORT, cfg).unwrap();
    let _a = connect(&pair);
    let _b = connect(&pair);
    let mut third = connect(&pair);
    let got = read_until(&mut third, |_| false);
    assert_eq!(statuses(&got), ["503"], "{}", String::from_utf8_lossy(&got));
    server.stop();
}

fn masked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![first, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[test]
fn websocket_echo_then_close_1001_when_the_server_stops() {
    let pair = inmem::Pair::new();
    let server = ws::start(&pair.b, PORT, config()).unwrap();
    let mut s = connect(&pair);
    let mut req = b"GET /ws HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .to_vec();
    // A frame right behind the request head is served too.
    req.extend(masked_frame(0x81, b"hello"));
    s.write_all(&req).unwrap();
    let echo = [0x81, 5, b'h', b'e', b'l', b'l', b'o'];
    let got = read_until(&mut s, |g| g.ends_with(&echo));
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
    assert!(
        text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{text}"
    );
    // No compression was offered, so none is answered.
    assert!(!text.contains("Sec-WebSocket-Extensions"), "{text}");
    let stopper = std::thread::spawn(move || server.stop());
    let close = read_until(&mut s, |g| g.len() >= 4);
    assert_eq!(close[0], 0x88, "a close frame: {close:?}");
    assert_eq!(u16::from_be_bytes([close[2], close[3]]), 1001, "{close:?}");
    // Our close reply completes the handshake; stop returns.
    s.write_all(&masked_frame(0x88, &1001u16.to_be_bytes()))
        .unwrap();
    stopper.join().unwrap();
}

/// Upgrades `s` to the WebSocket at `path`; returns what followed the 101.
fn upgrade(s: &mut TcpStream, path: &str) -> Vec<u8> {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let got = read_until(s, |g| g.windows(4).any(|w| w == b"\r\n\r\n"));
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&got[..end]);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    got[end..].to_vec()
}

/// Complete unmasked server frames at the front of `buf` as (opcode,
/// payload); the bytes of a partial frame stay in `buf`.
fn take_frames(buf: &mut Vec<u8>) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        if buf.len() < 2 {
            return out;
        }
        let (len, hl) = match buf[1] & 0x7f {
            126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
            127 if buf.len() >= 10 => (
                u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => return out,
            n => (usize::from(n), 2),
        };
        if buf.len() < hl + len {
            return out;
        }
        out.push((buf[0] & 0x0f, buf[hl..hl + len].to_vec()));
        buf.drain(..hl + len);
    }
}

/// Text messages from `s` until `done` holds of the ones so far; panics
/// after IO.
fn messages_until(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + IO;
    let mut msgs = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        for (op, payload) in take_frames(buf) {
            assert_eq!(op, 1, "a text message");
            msgs.push(String::from_utf8(payload).unwrap());
        }
        if done(&msgs) {
            return msgs;
        }
        assert!(Instant::now() < deadline, "not yet: {msgs:?}");
        match s.read(&mut chunk) {
            Ok(0) => panic!("closed; got {msgs:?}"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("read: {e}; got {msgs:?}"),
        }
    }
}

/// `/watch` carries pushes only (the table at least twice a second) and
/// takes what the page sends as commands, echoing nothing; `/echo` echoes
/// a push look-alike as the text it is.
#[test]
fn watch_pushes_tables_and_echo_echoes_push_look_alikes() {
    let pair = inmem::Pair::new();
    let _server = ws::start(&pair.b, PORT, config()).unwrap();
    let mut w = connect(&pair);
    let mut wbuf = upgrade(&mut w, "/watch");
    let look_alike = r#"{"type":"conns","rows":[{"state":"INJECTED"}]}"#;
    w.write_all(&masked_frame(0x81, look_alike.as_bytes()))
        .unwrap();
    w.write_all(&masked_frame(0x81, b"select 999")).unwrap();
    let t0 = Instant::now();
    let msgs = messages_until(&mut w, &mut wbuf, |m| {
        m.iter()
            .filter(|m| m.starts_with(r#"{"type":"conns""#))
            .count()
            >= 3
    });
    // Three tables: the first at once, then one each 500 ms.
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    for m in &msgs {
        assert!(m.starts_with(r#"{"type":""#), "not a push: {m}");
        assert!(!m.contains("INJECTED"), "the look-alike came back: {m}");
    }
    // The followed connection does not exist.
    assert!(
        msgs.iter().any(|m| m == r#"{"type":"gone","c":999}"#),
        "{msgs:?}"
    );

    let mut e = connect(&pair);
    let mut ebuf = upgrade(&mut e, "/echo");
    e.write_all(&masked_frame(0x81, look_alike.as_bytes()))
        .unwrap();
    let echoed = messages_until(&mut e, &mut ebuf, |m| !m.is_empty());
    assert_eq!(echoed, [look_alike]);
}

/// The 101 or the refusal's status for an upgrade to `/watch`.
fn watch_status(pair: &inmem::Pair) -> (String, TcpStream) {
    let mut s = connect(pair);
    s.write_all(
        b"GET /watch HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let got = read_until(&mut s, |g| g.len() >= 12);
    (String::from_utf8_lossy(&got[9..12]).into_owned(), s)
}

/// 32 pages may watch at once; the 33rd gets 503; once one leaves, a new
/// one is let in.
#[test]
fn watchers_are_capped() {
    let pair = inmem::Pair::new();
    let _server = ws::start(&pair.b, PORT, config()).unwrap();
    let mut watchers: Vec<TcpStream> = (0..32)
        .map(|i| {
            let (status, s) = watch_status(&pair);
            assert_eq!(status, "101", "watcher {i}");
            s
        })
        .collect();
    let (status, _) = watch_status(&pair);
    assert_eq!(status, "503");
    drop(watchers.pop());
    let deadline = Instant::now() + IO;
    loop {
        let (status, s) = watch_status(&pair);
        if status == "101" {
            watchers.push(s);
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot never came back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The id the table gives the connection whose local end is `local`,
/// once it has at least `segs` segments.
fn conn_id(table: &str, local: &str, segs: u64) -> Option<u64> {
    let at = table.find(&format!("\"local\":\"{local}\""))?;
    let row_start = table[..at].rfind("{\"c\":")?;
    let row = &table[row_start..];
    let row = &row[..row.find('}')?];
    let num = |key: &str| -> Option<u64> {
        let v = row.split(&format!("\"{key}\":")).nth(1)?;
        v.split([',', '}']).next()?.parse().ok()
    };
    (num("segs")? >= segs).then(|| num("c")).flatten()
}

/// A page that takes none of its pushes (here: a connection's ladder,
/// asked for again and again) is dropped once 256 KiB have waited for it
/// 5 s: the server's memory for it stays bounded.
#[test]
fn a_watcher_that_does_not_read_is_dropped() {
    let pair = inmem::Pair::new();
    let _server = ws::start(&pair.b, PORT, config()).unwrap();
    let mut w = connect(&pair);
    let mut wbuf = upgrade(&mut w, "/watch");
    messages_until(&mut w, &mut wbuf, |m| !m.is_empty());
    // A bulk transfer a -> b for the watch to keep segments of.
    let listener = tapstack::api::TcpListener::bind(&pair.b, "0.0.0.0:9000").unwrap();
    let sink = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(IO)).unwrap();
        let mut buf = vec![0u8; 65536];
        let mut n = 0;
        while let Ok(k) = s.read(&mut buf) {
            if k == 0 {
                break;
            }
            n += k;
        }
        n
    });
    let mut c = TcpStream::connect(&pair.a, (inmem::B, 9000)).unwrap();
    c.write_all(&vec![7u8; 8 << 20]).unwrap();
    drop(c);
    assert_eq!(sink.join().unwrap(), 8 << 20);
    let msgs = messages_until(&mut w, &mut wbuf, |m| {
        m.iter()
            .any(|m| conn_id(m, "10.0.0.2:9000", 1000).is_some())
    });
    let id = msgs
        .iter()
        .find_map(|m| conn_id(m, "10.0.0.2:9000", 1000))
        .unwrap();
    // Each selection sends the ladder again (1,000 segments); none is read.
    // (Once dropped, the server resets: a write may fail then.)
    for _ in 0..40 {
        let select = masked_frame(0x81, format!("select {id}").as_bytes());
        if w.write_all(&select).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut chunk = vec![0u8; 65536];
    let mut got = 0;
    loop {
        match w.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
        assert!(
            Instant::now() < deadline,
            "the watcher was never dropped ({got} bytes read)"
        );
    }
}

fn v4(a: std::net::SocketAddr) -> std::net::SocketAddrV4 {
    match a {
        std::net::SocketAddr::V4(a) => a,
        other => panic!("not IPv4: {other}"),
    }
}

/// `Net::tcp_connections`, what the watch samples the connections it
/// keeps with every 100 ms, finds each connection by its 4-tuple as
/// `Net::sockets` lists it (TIME-WAIT included), and nothing for the
/// reversed pair or a pair without a connection.
#[test]
fn a_connection_is_found_by_its_four_tuple() {
    let pair = inmem::Pair::new();
    let listener = tapstack::api::TcpListener::bind(&pair.b, "0.0.0.0:9100").unwrap();
    let clients: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(&pair.a, (inmem::B, 9100)).unwrap())
        .collect();
    let servers: Vec<TcpStream> = (0..3).map(|_| listener.accept().unwrap().0).collect();
    let ends: Vec<_> = servers
        .iter()
        .map(|s| (v4(s.local_addr().unwrap()), v4(s.peer_addr().unwrap())))
        .collect();
    // b closes its first connection first: b's end goes to TIME-WAIT.
    let mut servers = servers.into_iter();
    drop(servers.next());
    let mut clients = clients.into_iter();
    drop(clients.next());
    let deadline = Instant::now() + IO;
    while pair.b.tcp_connections(&ends[..1])[0]
        .as_ref()
        .is_none_or(|s| s.state != "TIME-WAIT")
    {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            pair.b.tcp_connections(&ends[..1])
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (local, peer) = ends[1];
    let mut asked = ends.clone();
    asked.push((peer, local));
    asked.push((local, std::net::SocketAddrV4::new(inmem::A, 1)));
    let found = pair.b.tcp_connections(&asked);
    let all = pair.b.sockets();
    assert_eq!(found.len(), asked.len());
    for (i, (local, peer)) in ends.iter().enumerate() {
        let listed = all
            .iter()
            .find(|s| s.local == *local && s.remote == Some(*peer))
            .expect("listed");
        let got = found[i].as_ref().expect("found");
        assert_eq!(
            (got.id, got.state, got.local, got.remote),
            (listed.id, listed.state, listed.local, listed.remote),
            "connection {i}"
        );
        assert_eq!(got.tcp.is_some(), i > 0, "connection {i}: TCP details");
    }
    assert_eq!(found[0].as_ref().map(|s| s.state), Some("TIME-WAIT"));
    assert!(found[3].is_none() && found[4].is_none(), "{found:?}");
}
