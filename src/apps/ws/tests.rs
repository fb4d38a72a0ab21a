//! Loopback tests: the server on `std::net` at 127.0.0.1, tungstenite's
//! client (or raw bytes) as the peer. Every wait is bounded by a socket
//! timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::{Bytes, Error, Message, WebSocket};

use super::{StatsFn, WsConfig, counters_json, serve};

/// Bound on every blocking socket call of a test client.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

type Client = WebSocket<TcpStream>;

/// Starts a server on an ephemeral loopback port; its thread lives until
/// the test process ends.
fn start(config: WsConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stats: StatsFn = Arc::new(|| counters_json([("test.counter", 7), ("test.other", 0)]));
    std::thread::spawn(move || serve(listener, stats, config));
    addr
}

/// A server without pushes, so replies are exactly the echoes.
fn start_quiet() -> SocketAddr {
    start(WsConfig {
        push_interval: Duration::ZERO,
        ..WsConfig::default()
    })
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

fn client(addr: SocketAddr) -> Client {
    let (ws, response) = tungstenite::client(format!("ws://{addr}/ws"), tcp(addr)).unwrap();
    assert_eq!(response.status(), 101);
    assert!(response.headers().get("sec-websocket-extensions").is_none());
    ws
}

/// Sends `request` and returns the whole response (the server closes).
fn http(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = tcp(addr);
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

fn is_push(message: &Message) -> bool {
    matches!(message, Message::Text(t) if t.starts_with(r#"{"type":"stats""#))
}

/// The next message that is not a stats push.
fn next_reply(ws: &mut Client) -> Message {
    loop {
        let message = ws.read().unwrap();
        if !is_push(&message) {
            return message;
        }
    }
}

fn close_code(message: Message) -> CloseCode {
    match message {
        Message::Close(Some(frame)) => frame.code,
        other => panic!("expected a close frame, got {other:?}"),
    }
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

const SIZES: [usize; 6] = [0, 125, 126, 65_535, 65_536, 1 << 20];

#[test]
fn text_messages_echo_byte_for_byte() {
    let mut ws = client(start_quiet());
    for (i, &len) in SIZES.iter().enumerate() {
        // Printable ASCII, so the length in bytes is exact.
        let text: String = pattern(len, i as u32)
            .iter()
            .map(|b| (b' ' + b % 95) as char)
            .collect();
        ws.send(Message::text(text.clone())).unwrap();
        match next_reply(&mut ws) {
            Message::Text(echo) => assert!(echo.as_str() == text, "text of {len} bytes differs"),
            other => panic!("expected text of {len} bytes, got {other:?}"),
        }
    }
    let multibyte = "héllo wörld ✓ 🦀".repeat(1000);
    ws.send(Message::text(multibyte.clone())).unwrap();
    assert_eq!(next_reply(&mut ws), Message::text(multibyte));
}

#[test]
fn binary_messages_echo_byte_for_byte() {
    let mut ws = client(start_quiet());
    for (i, &len) in SIZES.iter().enumerate() {
        let data = pattern(len, 100 + i as u32);
        ws.send(Message::binary(data.clone())).unwrap();
        match next_reply(&mut ws) {
            Message::Binary(echo) => assert!(echo[..] == data[..], "binary of {len} bytes differs"),
            other => panic!("expected binary of {len} bytes, got {other:?}"),
        }
    }
}

#[test]
fn fragmented_message_echoes_whole() {
    let mut ws = client(start_quiet());
    let first = Frame::message(Bytes::from_static(b"frag"), OpCode::Data(Data::Text), false);
    let last = Frame::message(
        Bytes::from_static(b"ment"),
        OpCode::Data(Data::Continue),
        true,
    );
    ws.send(Message::Frame(first)).unwrap();
    ws.send(Message::Frame(last)).unwrap();
    assert_eq!(next_reply(&mut ws), Message::text("fragment"));
}

#[test]
fn ping_gets_pong_with_same_payload() {
    let mut ws = client(start_quiet());
    for payload in [&b""[..], b"hello", &[0xAB; 125]] {
        ws.send(Message::Ping(Bytes::copy_from_slice(payload)))
            .unwrap();
        assert_eq!(
            next_reply(&mut ws),
            Message::Pong(Bytes::copy_from_slice(payload))
        );
    }
}

#[test]
fn close_1000_completes_with_1000() {
    let mut ws = client(start_quiet());
    let bye = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    ws.close(Some(bye)).unwrap();
    assert_eq!(close_code(next_reply(&mut ws)), CloseCode::Normal);
    // The server then closes the TCP connection.
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed)));
}

#[test]
fn fifty_concurrent_clients_get_their_own_echoes() {
    const CLIENTS: usize = 50;
    const MESSAGES: usize = 20;
    let addr = start_quiet();
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut ws = client(addr);
                barrier.wait();
                for n in 0..MESSAGES {
                    let text = format!("client {id} message {n}");
                    ws.send(Message::text(text.clone())).unwrap();
                    assert_eq!(next_reply(&mut ws), Message::text(text));
                }
                ws.close(None).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn silent_clients_do_not_block_others() {
    let addr = start_quiet();
    // One connects and sends nothing; one sends half a request head; one
    // completes the upgrade and then sends half a frame.
    let _silent = tcp(addr);
    let mut half_head = tcp(addr);
    half_head
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut half_frame = client(addr);
    half_frame
        .get_mut()
        .write_all(&[0x82, 0x85, 1, 2, 3])
        .unwrap();
    let started = Instant::now();
    let mut ws = client(addr);
    ws.send(Message::text("still served")).unwrap();
    assert_eq!(next_reply(&mut ws), Message::text("still served"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn malformed_request_gets_400() {
    let addr = start_quiet();
    assert!(http(addr, b"NOT HTTP AT ALL\r\n\r\n").starts_with("HTTP/1.1 400 "));
    // HTTP/1.1 without Host.
    assert!(http(addr, b"GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400 "));
}

#[test]
fn oversized_request_head_gets_431() {
    let addr = start_quiet();
    let mut request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', 9000));
    request.extend_from_slice(b"\r\n\r\n");
    assert!(http(addr, &request).starts_with("HTTP/1.1 431 "));
}

#[test]
fn get_root_serves_the_page() {
    let response = http(start_quiet(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("Content-Type: text/html"));
    assert!(response.contains("<html"));
    assert!(response.contains("/ws"));
    assert!(
        !response.contains("src=\"http"),
        "the page must be self-contained"
    );
}

#[test]
fn unknown_path_404_wrong_method_405_plain_get_ws_426() {
    let addr = start_quiet();
    assert!(http(addr, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 404 "));
    let post = http(
        addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(
        post.starts_with("HTTP/1.1 405 ") && post.contains("Allow: GET"),
        "{post}"
    );
    let plain = http(addr, b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(plain.starts_with("HTTP/1.1 426 "), "{plain}");
    let bad_key = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n";
    assert!(http(addr, bad_key).starts_with("HTTP/1.1 400 "));
}

/// Frames sent in the same segment as the upgrade request are not lost,
/// and an offered permessage-deflate is declined.
#[test]
fn frame_pipelined_after_upgrade_request_is_echoed() {
    let addr = start_quiet();
    let mut stream = tcp(addr);
    let mut bytes = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                      Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                      Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        .to_vec();
    bytes.extend_from_slice(&masked_frame(0x81, b"early"));
    stream.write_all(&bytes).unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.ends_with(b"\x81\x05early") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
    // The example key from RFC 6455 section 1.3.
    assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    // permessage-deflate is offered but not accepted (see the module doc).
    assert!(
        !text
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions")
    );
}

/// A client frame with mask key 0x01020304 (`len` up to 125).
fn masked_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() <= 125);
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![first_byte, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[test]
fn push_arrives_within_push_interval() {
    let interval = Duration::from_millis(200);
    let addr = start(WsConfig {
        push_interval: interval,
        ..WsConfig::default()
    });
    let mut ws = client(addr);
    let connected = Instant::now();
    let first = ws.read().unwrap();
    let waited = connected.elapsed();
    assert!(is_push(&first), "{first:?}");
    // Due one interval after the handshake; allow scheduling slack.
    assert!(
        waited < interval + Duration::from_millis(500),
        "first push after {waited:?}"
    );
    let text = first.into_text().unwrap();
    assert!(
        text.contains(r#""data":{"test.counter":7,"test.other":0}"#),
        "{text}"
    );
    assert!(text.contains(r#""connections":1"#), "{text}");
    // Echoes keep working with pushes interleaved, and pushes keep coming.
    ws.send(Message::text("between pushes")).unwrap();
    assert_eq!(next_reply(&mut ws), Message::text("between pushes"));
    let second = Instant::now();
    assert!(is_push(&ws.read().unwrap()));
    assert!(second.elapsed() < interval + Duration::from_millis(500));
}

/// A frame cut by the server's read timeout (it wakes for a push in the
/// middle) is resumed, not lost or misparsed.
#[test]
fn frame_split_across_read_timeouts_is_resumed() {
    let addr = start(WsConfig {
        push_interval: Duration::from_millis(50),
        ..WsConfig::default()
    });
    let mut ws = client(addr);
    let frame = masked_frame(0x82, b"split across timeouts");
    let (head, tail) = frame.split_at(9);
    ws.get_mut().write_all(head).unwrap();
    // Two pushes after the first half prove the server timed out mid-frame.
    for _ in 0..2 {
        assert!(is_push(&ws.read().unwrap()));
    }
    ws.get_mut().write_all(tail).unwrap();
    assert_eq!(
        next_reply(&mut ws),
        Message::binary(&b"split across timeouts"[..])
    );
}

/// Sends raw `frame`, expects a close with `code`, while a bystander
/// connection keeps echoing.
fn expect_failure(addr: SocketAddr, send: impl FnOnce(&mut Client), code: CloseCode) {
    let mut bystander = client(addr);
    let mut ws = client(addr);
    send(&mut ws);
    assert_eq!(close_code(next_reply(&mut ws)), code);
    bystander.send(Message::text("unaffected")).unwrap();
    assert_eq!(next_reply(&mut bystander), Message::text("unaffected"));
}

#[test]
fn unmasked_client_frame_is_closed_with_1002() {
    let send = |ws: &mut Client| ws.get_mut().write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
    expect_failure(start_quiet(), send, CloseCode::Protocol);
}

#[test]
fn reserved_opcode_and_rsv_bits_are_closed_with_1002() {
    let addr = start_quiet();
    // Opcode 0x3 is reserved; RSV1 without a negotiated extension.
    for first_byte in [0x83, 0xC1] {
        let frame = masked_frame(first_byte, b"x");
        expect_failure(
            addr,
            |ws| ws.get_mut().write_all(&frame).unwrap(),
            CloseCode::Protocol,
        );
    }
}

#[test]
fn bad_utf8_text_is_closed_with_1007() {
    let send = |ws: &mut Client| {
        let frame = Frame::message(vec![b'o', b'k', 0xFF, 0xFE], OpCode::Data(Data::Text), true);
        ws.send(Message::Frame(frame)).unwrap();
    };
    expect_failure(start_quiet(), send, CloseCode::Invalid);
}

#[test]
fn oversized_message_is_closed_with_1009() {
    let addr = start(WsConfig {
        push_interval: Duration::ZERO,
        max_message_bytes: 1000,
        ..WsConfig::default()
    });
    let mut ws = client(addr);
    ws.send(Message::binary(vec![7u8; 1000])).unwrap();
    assert_eq!(next_reply(&mut ws), Message::binary(vec![7u8; 1000]));
    drop(ws);
    let send = |ws: &mut Client| ws.send(Message::binary(vec![7u8; 1001])).unwrap();
    expect_failure(addr, send, CloseCode::Size);
}

#[test]
fn connections_over_the_limit_get_503() {
    let addr = start(WsConfig {
        push_interval: Duration::ZERO,
        max_connections: 2,
        ..WsConfig::default()
    });
    // The accept loop takes connections in order, so these two hold both
    // places (each waits up to head_timeout for its request head).
    let _a = tcp(addr);
    let _b = tcp(addr);
    assert!(http(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 503 "));
}

#[test]
fn counters_json_escapes_names() {
    assert_eq!(
        counters_json([("a", 1), ("b\"c", 2)]),
        r#"{"a":1,"b\"c":2}"#
    );
    assert_eq!(counters_json([]), "{}");
}
