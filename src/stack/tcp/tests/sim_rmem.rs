//! Several connections into one layer whose receive account
//! (`TcpConfig::tcp_mem`) is smaller than their windows together, on the
//! simulated link: the receiving application reads one connection at a
//! time, so the others fill. Data past the hard limit is dropped and the
//! senders (our own stack) recover; the account passes the limit by no
//! more than one forced segment per connection, and every byte arrives.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::time::Duration;

use super::sim::{B, Faults, Sim, pattern};
use crate::stack::tcp::{TcpConfig, TcpHandle, TcpMem};
use crate::stack::time::Instant;

const CONNS: usize = 6;
const LEN: usize = 192 * 1024;
/// How long the receiving application stays with one connection.
const TURN: Duration = Duration::from_millis(30);

/// The receiving stack's `tcp_mem.high` (`pressed_pair`'s b).
const HIGH: usize = 128 << 10;

/// Two stacks with `loss` and 2 ms of delay, the receiver (b) with a
/// small `tcp_mem` (high `HIGH`).
fn pressed_pair(seed: u64, loss: f64) -> Sim {
    let receiver = TcpConfig {
        tcp_mem: TcpMem {
            low: 64 << 10,
            pressure: 96 << 10,
            high: HIGH,
        },
        time_wait: Duration::from_secs(1),
        ..TcpConfig::default()
    };
    let sender = TcpConfig {
        time_wait: Duration::from_secs(1),
        ..TcpConfig::default()
    };
    let faults = Faults {
        loss,
        dup: 0.0,
        reorder: 0.0,
        delay: Duration::from_millis(2),
        a_only: false,
    };
    Sim::with_configs(seed, faults, sender, receiver)
}

/// Returns the receiver's (rcvq_drop, ofo_drop).
fn round_robin_reader(seed: u64, loss: f64) -> (u64, u64) {
    let mut s = pressed_pair(seed, loss);
    let l = s.b.listen(SocketAddrV4::new(B, 5000), 16).unwrap();
    // Sender i: its handle, its bytes, how many it queued.
    let mut tx: Vec<(TcpHandle, Vec<u8>, usize)> = (0..CONNS)
        .map(|i| {
            let h = s.a.connect(s.now, None, SocketAddrV4::new(B, 5000));
            (h.unwrap(), pattern(seed * 100 + i as u64, LEN), 0)
        })
        .collect();
    let ports: HashMap<u16, usize> = tx
        .iter()
        .enumerate()
        .map(|(i, (h, _, _))| (s.a.local_addr(*h).unwrap().port(), i))
        .collect();
    // Receiver i: its handle (once accepted) and what it read.
    let mut rx: Vec<(Option<TcpHandle>, Vec<u8>)> = vec![(None, Vec::new()); CONNS];
    let mut buf = vec![0u8; 64 * 1024];
    let mut turn = 0;
    let mut next_turn = s.now + TURN;
    loop {
        while let Ok((h, peer)) = s.b.accept(l) {
            rx[ports[&peer.port()]].0 = Some(h);
        }
        for (h, out, sent) in &mut tx {
            while *sent < LEN {
                match s.a.send(*h, &out[*sent..]) {
                    Ok(n) if n > 0 => *sent += n,
                    _ => break,
                }
            }
        }
        if s.now >= next_turn {
            turn = (turn + 1) % CONNS;
            next_turn = s.now + TURN;
        }
        if let (Some(h), got) = &mut rx[turn] {
            while let Ok(n) = s.b.recv(*h, &mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
        }
        let (held, _) = s.b.rcv_mem();
        // Past `high` by at most the forced in-order segment (an MSS: one
        // page) of each connection whose queue was empty.
        let bound = HIGH + CONNS * 4096;
        assert!(held <= bound, "seed {seed}: account {held} past {bound}");
        assert_eq!(held, s.b.rcv_mem_recount(), "seed {seed}: account drifted");
        if rx.iter().all(|(_, got)| got.len() == LEN) {
            break;
        }
        assert!(
            s.now < Instant::from_secs(600),
            "seed {seed}: stuck: read {:?}",
            rx.iter().map(|(_, g)| g.len()).collect::<Vec<_>>()
        );
        assert!(s.step_until(Some(next_turn)), "seed {seed}: nothing to do");
    }
    for (i, ((_, out, _), (_, got))) in tx.iter().zip(&rx).enumerate() {
        assert!(got == out, "seed {seed}: connection {i} bytes differ");
    }
    let c = &s.b.counters;
    eprintln!(
        "seed {seed} loss {loss}: {:?} virtual; rcvq_drop {} ofo_drop {} mem_pressure {} lost {}",
        s.now - Instant::ZERO,
        c.get("tcp.rcvq_drop"),
        c.get("tcp.ofo_drop"),
        c.get("tcp.mem_pressure"),
        s.lost
    );
    assert!(
        c.get("tcp.mem_pressure") > 0,
        "seed {seed}: never under pressure"
    );
    (c.get("tcp.rcvq_drop"), c.get("tcp.ofo_drop"))
}

#[test]
fn senders_recover_from_hard_limit_drops_byte_exact() {
    let mut drops = 0;
    for (seed, loss) in [(1, 0.0), (2, 0.0), (3, 0.02), (4, 0.02)] {
        let (rcvq, ofo) = round_robin_reader(seed, loss);
        drops += rcvq + ofo;
    }
    // The windows (256 KiB each) are wider than the account: the limit
    // must have refused data somewhere.
    assert!(drops > 0);
}
