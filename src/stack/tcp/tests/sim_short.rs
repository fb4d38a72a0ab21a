//! Many short request/response connections on a lossless link (issue 12
//! (d): `wrk -c100` against the web page made 31,854 retransmissions in
//! 145k connections, nearly all loss probes the peer already had).
//! Every retransmission on a link that loses nothing is spurious.

use std::net::SocketAddrV4;
use std::time::Duration;

use super::sim::{A, B, Faults, Sim, pattern};
use crate::stack::counters::Counters;
use crate::stack::rng::Rng;
use crate::stack::tcp::{TcpConfig, TcpHandle, TcpLayer};
use crate::stack::time::Instant;

const PORT: u16 = 8080;
const REQUEST: usize = 100;
const REQUESTS_PER_CONN: usize = 3;

/// One keep-alive client connection: request, whole response, a pause
/// (think time), again; then it closes.
struct Client {
    h: TcpHandle,
    done_requests: usize,
    /// Response length expected for the current request, and bytes read.
    want: usize,
    got: usize,
    /// Not before this instant does the next request go out.
    next_at: Instant,
    closed: bool,
}

/// The server side of one connection.
struct Server {
    h: TcpHandle,
    req_got: usize,
    resp: Vec<u8>,
    resp_sent: usize,
    closed: bool,
}

fn response_len(rng: &mut Rng) -> usize {
    // A page and its assets: one segment to a dozen.
    rng.range(100, 18_000) as usize
}

impl Client {
    fn run(&mut self, layer: &mut TcpLayer, now: Instant, rng: &mut Rng, buf: &mut [u8]) {
        if self.closed {
            return;
        }
        if self.want == 0 && now >= self.next_at {
            if self.done_requests == REQUESTS_PER_CONN {
                layer.close(self.h);
                self.closed = true;
                return;
            }
            // The request says how long a response it wants.
            let want = response_len(rng);
            let mut req = [0u8; REQUEST];
            req[..8].copy_from_slice(&(want as u64).to_le_bytes());
            if layer.send(self.h, &req).ok() == Some(REQUEST) {
                self.want = want;
                self.got = 0;
            }
        }
        while self.want > 0 {
            match layer.recv(self.h, buf) {
                Ok(0) => panic!("server closed mid-response"),
                Ok(n) => {
                    let expect = pattern(self.want as u64, self.want);
                    assert_eq!(&buf[..n], &expect[self.got..self.got + n], "response bytes");
                    self.got += n;
                    if self.got == self.want {
                        self.want = 0;
                        self.done_requests += 1;
                        self.next_at = now + Duration::from_millis(rng.range(0, 300));
                    }
                }
                Err(_) => break,
            }
        }
    }
}

impl Server {
    fn run(&mut self, layer: &mut TcpLayer, buf: &mut [u8]) {
        if self.closed {
            return;
        }
        while self.resp_sent < self.resp.len() {
            match layer.send(self.h, &self.resp[self.resp_sent..]) {
                Ok(n) => self.resp_sent += n,
                Err(_) => return,
            }
        }
        loop {
            match layer.recv(self.h, &mut buf[..REQUEST - self.req_got]) {
                Ok(0) => {
                    layer.close(self.h);
                    self.closed = true;
                    return;
                }
                Ok(n) => {
                    if self.req_got == 0 {
                        let len = u64::from_le_bytes(buf[..8].try_into().unwrap()) as usize;
                        self.resp = pattern(len as u64, len);
                        self.resp_sent = 0;
                    }
                    self.req_got = (self.req_got + n) % REQUEST;
                    if self.req_got == 0 {
                        return self.run(layer, buf);
                    }
                }
                Err(_) => return,
            }
        }
    }
}

/// `total` connections, `parallel` at a time, from A to B's server over a
/// lossless link with a 50 us RTT. A's delayed ACK is 120 ms: Linux's
/// grows from 40 ms up to 200 ms. Returns both layers' counters.
fn short_connections(seed: u64, total: usize, parallel: usize) -> (Counters, Counters) {
    let clean = Faults {
        loss: 0.0,
        dup: 0.0,
        reorder: 0.0,
        delay: Duration::from_micros(25),
        a_only: false,
    };
    let client_cfg = TcpConfig {
        delayed_ack: Duration::from_millis(120),
        ..TcpConfig::default()
    };
    let mut s = Sim::with_configs(seed, clean, client_cfg, TcpConfig::default());
    let l = s.b.listen(SocketAddrV4::new(B, PORT), 1024).unwrap();
    let mut rng = Rng::new(seed);
    let (mut clients, mut servers) = (Vec::<Client>::new(), Vec::<Server>::new());
    let mut started = 0;
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..5_000_000u64 {
        while clients.iter().filter(|c| !c.closed).count() < parallel && started < total {
            let h =
                s.a.connect(s.now, None, SocketAddrV4::new(B, PORT))
                    .unwrap();
            clients.push(Client {
                h,
                done_requests: 0,
                want: 0,
                got: 0,
                next_at: s.now,
                closed: false,
            });
            started += 1;
        }
        while let Ok((h, peer)) = s.b.accept(l) {
            assert_eq!(*peer.ip(), A);
            servers.push(Server {
                h,
                req_got: 0,
                resp: Vec::new(),
                resp_sent: 0,
                closed: false,
            });
        }
        for c in &mut clients {
            c.run(&mut s.a, s.now, &mut rng, &mut buf);
        }
        for v in &mut servers {
            v.run(&mut s.b, &mut buf);
        }
        clients.retain(|c| !c.closed);
        servers.retain(|v| !v.closed);
        let finished = started == total && clients.iter().all(|c| c.closed);
        if finished && s.a.active_connections() == 0 && s.b.active_connections() == 0 {
            return (s.a.counters.clone(), s.b.counters.clone());
        }
        let wake = clients
            .iter()
            .filter(|c| !c.closed && c.want == 0 && c.next_at > s.now)
            .map(|c| c.next_at)
            .min();
        assert!(s.step_until(wake), "deadlock at {:?}", s.now);
        assert!(
            s.now < Instant::from_secs(3600),
            "no completion: {started} started"
        );
    }
    panic!("iteration bound reached");
}

/// On a lossless link, retransmissions (loss probes included) stay under
/// 0.1% of the segments sent, and D-SACKs report no more spurious ones.
#[test]
fn lossless_short_connections_retransmit_almost_nothing() {
    let (a, b) = short_connections(1, 1500, 50);
    let get = |n: &str| a.get(n) + b.get(n);
    let sent = get("tcp.segments_sent");
    let rtx = get("tcp.retransmitted_segments");
    let spurious = get("tcp.spurious_rtx");
    eprintln!(
        "short connections: {sent} segments, {rtx} retransmitted, {spurious} spurious (D-SACK), \
         {} loss probes, {} RTOs",
        get("tcp.tlp_probe"),
        get("tcp.rto")
    );
    assert!(sent > 20_000, "{sent} segments");
    assert!(
        rtx * 1000 < sent,
        "{rtx} retransmissions in {sent} segments"
    );
    assert!(
        spurious * 1000 < sent,
        "{spurious} spurious in {sent} segments"
    );
}
