//! The runtime's hand-off between application threads and the stack thread,
//! over an in-memory link whose far end the test reads itself. No root.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod inmem;

use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol};
use tapstack::api::{Net, UdpSocket};
use tapstack::device::fault::{FaultConfig, REORDER_HOLD};
use tapstack::device::{Device, pair};
use tapstack::runtime::link::LinkOptions;

/// Waits up to `within` for an ARP request for `target` at the far end of
/// the link (skipping the stack's own announcement).
fn arp_request_for(far: &dyn Device, target: Ipv4Addr, within: Duration) -> Option<Instant> {
    let mut buf = vec![0u8; 2048];
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match far.recv(&mut buf) {
            Ok(n) => {
                let Ok(eth) = EthernetFrame::new_checked(&buf[..n]) else {
                    continue;
                };
                if eth.ethertype() != EthernetProtocol::Arp {
                    continue;
                }
                if let Ok(ArpRepr::EthernetIpv4 {
                    operation: ArpOperation::Request,
                    target_protocol_addr,
                    ..
                }) = ArpPacket::new_checked(eth.payload()).and_then(|p| ArpRepr::parse(&p))
                    && target_protocol_addr == target
                {
                    return Some(Instant::now());
                }
            }
            // Bounded by the deadline; the nap keeps the loop from spinning.
            Err(_) => std::thread::sleep(Duration::from_micros(200)),
        }
    }
    None
}

/// An application thread's send makes a frame that the link's fault
/// injector holds for REORDER_HOLD (2 ms): a new deadline, earlier than the
/// one the sleeping stack thread computed (its next timer is ~1 s away).
/// Application threads wake the stack thread only when they move its
/// deadline earlier; if that check were wrong, the frame would wait for the
/// stack thread's own timer.
#[test]
fn a_deadline_set_by_an_application_thread_wakes_the_stack_thread() {
    let (near, far) = pair::link().expect("socketpair");
    let cfg = inmem::config(inmem::A, 1);
    let link = LinkOptions {
        fault: FaultConfig {
            reorder: 1.0,
            seed: 1,
            ..FaultConfig::default()
        },
        ..LinkOptions::default()
    };
    let net = Net::start(Arc::new(near), cfg, &link).expect("start");
    let sock = UdpSocket::bind(&net, "0.0.0.0:0").unwrap();
    // The start-up announcement is itself held 2 ms; once it is out, the
    // injector holds nothing and the stack thread's next deadline is far.
    arp_request_for(&far, Ipv4Addr::new(10, 0, 0, 1), Duration::from_secs(3))
        .expect("no ARP announcement");
    let asleep_by = Instant::now() + Duration::from_secs(3);
    while !net.stack_thread_sleeping() {
        assert!(
            Instant::now() < asleep_by,
            "the stack thread never went to sleep"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let sent = Instant::now();
    // No neighbour answers: the datagram waits for ARP, whose request is
    // the frame held by the injector.
    let target = Ipv4Addr::new(10, 0, 0, 9);
    sock.send_to(b"x", (target, 9)).unwrap();
    let arrived = arp_request_for(&far, target, Duration::from_secs(3));
    net.shutdown();
    let took = arrived.expect("no ARP request within 3 s") - sent;
    assert!(
        took < Duration::from_millis(300),
        "the held frame left after {took:?}, not about {REORDER_HOLD:?}"
    );
}
