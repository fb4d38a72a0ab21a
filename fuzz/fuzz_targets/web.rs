//! The HTTP head parser and the web/WebSocket server on arbitrary bytes.
//!
//! Each input goes to `http::parse_head` directly, and then, whole, as a
//! client's byte stream to the real server (`ws::start`) on one of two
//! stacks joined by an in-memory link: the client writes it, half-closes
//! and reads the answer to the end (every read bounded by a timeout).
//! Invariants: nothing panics (libFuzzer turns a panic in any thread into
//! a crash), a parsed head never claims more bytes than it was given, and
//! the server always ends the exchange (EOF or reset within the bound).
#![no_main]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use smoltcp::wire::{EthernetAddress, Ipv4Cidr};
use tapstack::api::{Net, TcpStream};
use tapstack::apps::{http, ws};
use tapstack::device::pair;
use tapstack::runtime::link::LinkOptions;
use tapstack::stack::StackConfig;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PORT: u16 = 80;
/// How long one exchange may take before the server counts as stuck.
const EXCHANGE: Duration = Duration::from_secs(20);

fn config(ip: Ipv4Addr, last: u8) -> StackConfig {
    let mut c = StackConfig::new(
        EthernetAddress([0x02, 0, 0, 0, 0, last]),
        Ipv4Cidr::new(ip, 24),
    );
    c.seed = Some(u64::from(last));
    c
}

/// The client's stack; the server runs on the other one for the whole
/// fuzzing run.
fn client_net() -> &'static Net {
    static NETS: OnceLock<(Net, Net)> = OnceLock::new();
    &NETS
        .get_or_init(|| {
            let (da, db) = pair::link().expect("socketpair");
            let links = LinkOptions::default();
            // The client closes first: a short TIME-WAIT keeps its
            // ephemeral ports from running out over millions of runs.
            let mut ca = config(Ipv4Addr::new(10, 0, 0, 1), 1);
            ca.tcp.time_wait = Duration::from_millis(100);
            let a = Net::start(Arc::new(da), ca, &links).expect("client stack");
            let b = Net::start(Arc::new(db), config(SERVER, 2), &links).expect("server stack");
            // Serves for the whole run (a handle it may return is dropped:
            // that leaves the server running).
            ws::start(&b, PORT, ws::WsConfig::default()).expect("web server");
            (a, b)
        })
        .0
}

fn exchange(data: &[u8]) {
    let start = Instant::now();
    let mut s = TcpStream::connect(client_net(), (SERVER, PORT)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    // The server may answer and close before taking it all (431, 400).
    let _ = s.write_all(data);
    let _ = s.shutdown(Shutdown::Write);
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("server never ended the exchange: {e}"),
        }
        assert!(start.elapsed() < EXCHANGE, "server keeps talking");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, used))) = http::parse_head(data) {
        assert!(used <= data.len());
    }
    exchange(data);
});
