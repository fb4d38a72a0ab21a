//! Port-0 `listen` and the layer's count of connections per local port
//! (kept so that a candidate port is tested in O(1), not by a scan).

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::stack::tcp::isn::{EPHEMERAL_HI, EPHEMERAL_LO};
use crate::stack::tcp::{TcpConfig, TcpLayer};
use crate::stack::time::Instant;

const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

#[test]
fn port_zero_listen_skips_ports_connections_use_and_reuses_freed_ones() {
    let cfg = TcpConfig {
        seed: Some(5),
        ..TcpConfig::default()
    };
    let mut layer = TcpLayer::new(cfg, LOCAL);
    let remote = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80);
    let range = usize::from(EPHEMERAL_HI - EPHEMERAL_LO) + 1;
    // Every ephemeral port but one is taken by a connection.
    let conns: Vec<_> = (0..range - 1)
        .map(|_| layer.connect(Instant::ZERO, None, remote).expect("connect"))
        .collect();
    assert_eq!(layer.active_connections(), range - 1);
    let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
    let l = layer.listen(any, 8).expect("the one port left");
    let port = layer.local_addr(l).unwrap().port();
    assert!((EPHEMERAL_LO..=EPHEMERAL_HI).contains(&port));
    for &c in &conns {
        assert_ne!(layer.local_addr(c).unwrap().port(), port);
    }
    let err = layer.listen(any, 8).expect_err("no port left");
    assert_eq!(err.kind(), ErrorKind::AddrInUse);
    // A connection that goes frees its port for the next port-0 listen.
    let freed = layer.local_addr(conns[1234]).unwrap().port();
    layer.abort(conns[1234]);
    assert_eq!(layer.active_connections(), range - 2);
    let l2 = layer.listen(any, 8).expect("the freed port");
    assert_eq!(layer.local_addr(l2).unwrap().port(), freed);
}
