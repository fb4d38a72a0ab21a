//! Scripts for the differences from Linux that the same-script test
//! (`tests/packetimpact.rs`) found (issue 12): each answer is Linux's
//! unless an RFC says otherwise.

use std::net::SocketAddrV4;

use super::harness::*;
use crate::stack::tcp::{TcpConfig, TcpHandle, TcpState};

fn sack_config() -> TcpConfig {
    TcpConfig {
        sack: true,
        ..plain_config()
    }
}

/// Passive open with SACK offered when `sack`.
fn establish(h: &mut Harness, sack: bool) -> TcpHandle {
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 8).unwrap();
    let mut syn = Seg::peer(IRS, None).syn();
    syn.sack_perm = sack;
    syn.mss = Some(1460);
    h.send(syn);
    assert_eq!(h.one().sack_perm, sack);
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)));
    let c = h.layer.accept(l).unwrap().0;
    h.layer.set_nodelay(c, true).unwrap();
    c
}

/// RFC 2883 4: a duplicate FIN is a duplicate segment too, and its
/// sequence space (the FIN's one number) is reported in a D-SACK block,
/// as Linux does (tcp_send_dupack with the segment's end_seq).
#[test]
fn duplicate_fin_is_reported_by_dsack() {
    let mut h = Harness::new(sack_config());
    let c = establish(&mut h, true);
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).data(b"ab").fin());
    assert_eq!(h.one().ack, Some(IRS + 4));
    assert_eq!(h.layer.state(c), TcpState::CloseWait);
    h.send(Seg::peer(IRS + 3, Some(ISS + 1)).fin());
    let a = h.one();
    assert_eq!((a.ack, a.sack), (Some(IRS + 4), vec![(IRS + 3, IRS + 4)]));
    // The data and FIN again: the whole segment is the duplicate.
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).data(b"ab").fin());
    assert_eq!(h.one().sack, vec![(IRS + 1, IRS + 4)]);
}
