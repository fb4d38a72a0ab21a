//! Shared by the in-memory tests (no root): stack configurations with a
//! fixed MAC and seed, and two full stacks joined by an in-memory link.
#![allow(dead_code)] // each test binary uses part of it

use std::net::Ipv4Addr;
use std::sync::Arc;

use smoltcp::wire::{EthernetAddress, Ipv4Cidr};
use tapstack::api::Net;
use tapstack::device::{Device, pair};
use tapstack::runtime::link::LinkOptions;
use tapstack::stack::StackConfig;

pub const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// `ip`/24 with MAC 02:00:00:00:00:`last` and seed `last`.
pub fn config(ip: Ipv4Addr, last: u8) -> StackConfig {
    let mut c = StackConfig::new(
        EthernetAddress([0x02, 0, 0, 0, 0, last]),
        Ipv4Cidr::new(ip, 24),
    );
    c.seed = Some(u64::from(last));
    c
}

/// Two stacks, 10.0.0.1 (a) and 10.0.0.2 (b), each with its stack thread,
/// on one in-memory link.
pub struct Pair {
    pub a: Net,
    pub b: Net,
}

impl Pair {
    pub fn new() -> Pair {
        Pair::with_links(LinkOptions::default(), LinkOptions::default())
    }

    pub fn with_links(la: LinkOptions, lb: LinkOptions) -> Pair {
        let (da, db) = pair::link().expect("socketpair");
        Pair::start(Arc::new(da), Arc::new(db), &la, &lb)
    }

    /// The two stacks on devices of the caller's (e.g. a wrapped pair end).
    pub fn on(da: Arc<dyn Device>, db: Arc<dyn Device>) -> Pair {
        let links = LinkOptions::default();
        Pair::start(da, db, &links, &links)
    }

    fn start(da: Arc<dyn Device>, db: Arc<dyn Device>, la: &LinkOptions, lb: &LinkOptions) -> Pair {
        let a = Net::start(da, config(A, 1), la).expect("start a");
        let b = Net::start(db, config(B, 2), lb).expect("start b");
        Pair { a, b }
    }
}

impl Drop for Pair {
    /// Shuts both stacks down at the end of every test, pass or fail (a
    /// failing test must not leave a thread blocked on a live stack).
    fn drop(&mut self) {
        self.a.shutdown();
        self.b.shutdown();
    }
}
