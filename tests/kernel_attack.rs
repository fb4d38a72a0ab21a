//! Kernel tests under attack (issue 13): a SYN flood from the kernel side
//! with a legitimate client alongside. Need root; see tests/common/mod.rs.

mod common;

use std::time::Duration;

use common::*;

/// 50,000 spoofed SYNs at full speed (an AF_PACKET socket on the kernel
/// side of the TAP) fill the 256-entry SYN queue at once; SYN cookies keep
/// the echo port open: at least 90% of the legitimate connects made during
/// the flood succeed, and every one after it succeeds within 1 s.
#[test]
fn syn_flood_leaves_room_for_legitimate_clients() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("synflood");
    // The spoofed sources are off the subnet: the cookie SYN,ACKs go to
    // the gateway (the kernel side, which does not forward them), so no
    // ARP request is needed for any of them.
    let stack = StackProc::echo(&ns, &["--gateway", HOST_IP]);
    // A TAP queue that holds the whole flood: every SYN reaches the stack
    // (the default 1000 frames would drop most of them before it) and so
    // does every legitimate SYN, however far behind the flood it queues.
    let qlen = ns.run(
        &["ip", "link", "set", TAP, "txqueuelen", "60000"],
        Duration::from_secs(10),
    );
    assert!(qlen.success(), "{qlen:?}");
    let script = py("synflood.py");
    let out = ns.run(
        &[
            "python3", &script, TAP, STACK_MAC, STACK_IP, "7", "50000", "13", "2",
        ],
        Duration::from_secs(120),
    );
    assert!(out.success(), "synflood.py failed: {out:#?}");
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
    let c = counters(&stderr);
    let get = |k: &str| c.get(k).copied().unwrap_or(0);
    eprintln!(
        "syn flood: {} sent in {} s; during: {} ok {} failed (worst {} s); after: {} ok {} failed \
         (worst {} s); stack: syn_queue_full={} syncookies_sent={} validated={} failed={} \
         evicted={} passive_open={}",
        out.num("sent"),
        out.kv()["flood_secs"],
        out.num("during_ok"),
        out.num("during_fail"),
        out.kv()["during_max_secs"],
        out.num("after_ok"),
        out.num("after_fail"),
        out.kv()["after_max_secs"],
        get("tcp.syn_queue_full"),
        get("tcp.syncookies_sent"),
        get("tcp.syncookies_validated"),
        get("tcp.syncookies_failed"),
        get("tcp.syn_queue_evicted"),
        get("tcp.passive_open"),
    );
    assert_eq!(out.num("sent"), 50_000, "{out:#?}");
    // The whole flood reached the stack and overflowed the SYN queue.
    assert!(
        get("tcp.syncookies_sent") >= 45_000,
        "flood did not reach the stack: {c:?}"
    );
    let (ok, fail) = (out.num("during_ok"), out.num("during_fail"));
    assert!(ok > 0, "no legitimate connect during the flood: {out:#?}");
    assert!(
        ok * 10 >= (ok + fail) * 9,
        "only {ok} of {} legitimate connects succeeded during the flood: {out:#?}",
        ok + fail
    );
    assert!(out.num("after_ok") > 0, "{out:#?}");
    assert_eq!(out.num("after_fail"), 0, "after the flood: {out:#?}");
    // Some legitimate handshakes completed through cookies.
    assert!(get("tcp.syncookies_validated") > 0, "{c:?}");
}
