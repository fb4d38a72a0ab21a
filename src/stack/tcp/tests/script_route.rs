//! One output route (issue 12): resets, TIME-WAIT ACKs and connection
//! segments leave through the queue `dispatch` drains, in the order the
//! events that produced them happened; receiving sends nothing itself.

use super::harness::*;
use crate::stack::RxChecksum;

/// Feeds a segment without dispatching.
fn receive_only(h: &mut Harness, seg: Seg) {
    let bytes = seg.bytes_for_test();
    h.layer
        .receive(h.now, REMOTE, LOCAL, &bytes, RxChecksum::Verify);
}

#[test]
fn resets_wait_for_dispatch_and_keep_their_order() {
    let mut h = Harness::new(plain_config());
    let (_, c) = h.establish();
    // ABORT queues a reset for the connection...
    h.layer.abort(c);
    // ...then a segment for a closed port earns another; neither leaves
    // while receiving.
    let mut stray = Seg::peer(7, Some(99)).data(b"x");
    stray.src_port = RPORT + 1;
    receive_only(&mut h, stray);
    h.nothing();
    assert_eq!(h.layer.poll_at(), Some(crate::stack::time::Instant::ZERO));
    h.dispatch();
    let out = h.sent();
    assert_eq!(out.len(), 2, "{out:#?}");
    assert!(out[0].rst && out[0].dst_port == RPORT && out[0].seq == ISS + 1);
    assert!(out[1].rst && out[1].dst_port == RPORT + 1 && out[1].seq == 99);
}

#[test]
fn time_wait_ack_waits_for_dispatch() {
    let mut h = Harness::new(plain_config());
    let (_, c) = h.establish();
    h.layer.shutdown(c, std::net::Shutdown::Write).unwrap();
    h.dispatch();
    assert!(h.one().fin);
    h.send(Seg::peer(IRS + 1, Some(ISS + 2)).fin());
    assert_eq!(h.one().ack, Some(IRS + 2));
    // A retransmitted FIN in TIME-WAIT is ACKed again, from the queue.
    receive_only(&mut h, Seg::peer(IRS + 1, Some(ISS + 2)).fin());
    h.nothing();
    h.dispatch();
    let ack = h.one();
    assert_eq!((ack.seq, ack.ack, ack.rst), (ISS + 2, Some(IRS + 2), false));
}
