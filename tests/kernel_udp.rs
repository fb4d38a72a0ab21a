//! Kernel tests for UDP (issue 3): nc and python3 sockets against the
//! stack's echo/discard/chargen, and `tapstack connect -u` against a kernel
//! server. Need root; see tests/common/mod.rs.

mod common;

use std::time::Duration;

use common::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn udp_py(ns: &Netns, args: &[&str], timeout: Duration) -> Output {
    let script = py("udp.py");
    let mut argv = vec!["python3", script.as_str()];
    argv.extend_from_slice(args);
    let out = ns.run(&argv, timeout);
    assert!(out.success(), "udp.py {args:?} failed: {out:#?}");
    out
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The RFC 864 pattern from its first line: 72-character lines of the 95
/// printable characters, each line starting one character further on.
fn rfc864(len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut line = 0;
    while out.len() < len {
        out.extend((0..72).map(|i| b' ' + ((line + i) % 95) as u8));
        out.extend_from_slice(b"\r\n");
        line += 1;
    }
    out.truncate(len);
    out
}

#[test]
fn nc_udp_echo_round_trip() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("ncecho");
    let stack = StackProc::echo(&ns, &[]);
    let out = ns.run_stdin(
        &["nc", "-u", "-w", "1", STACK_IP, "7"],
        b"hello tapstack\n",
        SECS(10),
    );
    assert_eq!(out.stdout, "hello tapstack\n", "{out:#?}");
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
    assert!(counter(&stderr, "udp.tx_datagrams") >= 1, "{stderr}");
}

#[test]
fn echo_10000_random_datagrams_byte_for_byte() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("flood");
    let stack = StackProc::echo(&ns, &[]);
    let out = udp_py(
        &ns,
        &["flood", STACK_IP, "7", "10000", "8000", "7"],
        SECS(90),
    );
    let (sent, ok, bad) = (out.num("sent"), out.num("ok"), out.num("bad"));
    println!("{}", out.stdout);
    assert_eq!(sent, 10_000, "{out:#?}");
    assert_eq!(bad, 0, "replies differ from what was sent: {out:#?}");
    assert!(ok * 100 >= sent * 95, "fewer than 95% came back: {out:#?}");
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
    // Datagrams over 1472 bytes were reassembled and fragmented.
    assert!(counter(&stderr, "ipv4.reassembled") > 1000, "{stderr}");
    assert!(counter(&stderr, "ipv4.fragmented_tx") > 1000, "{stderr}");
}

#[test]
fn closed_port_refuses() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("refused");
    let stack = StackProc::echo(&ns, &[]);
    let out = udp_py(&ns, &["refused", STACK_IP, "4444"], SECS(10));
    assert_eq!(out.kv()["result"], "refused", "{out:#?}");
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
}

#[test]
fn connect_udp_to_kernel_server() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("connect");
    // Binds 0.0.0.0: the kernel-side address appears when tapstack starts.
    let script = py("udp.py");
    let mut server = ns.spawn(&["python3", &script, "server", "9000", "10"]);
    server.wait_line("ready=1", SECS(10));
    let client = ns.run_stdin(
        &[
            bin(),
            "--tap",
            TAP,
            "connect",
            "-u",
            "-q",
            "1",
            &format!("{HOST_IP}:9000"),
        ],
        b"hello from tapstack\n",
        SECS(15),
    );
    let got = server.finish(SECS(5));
    assert!(got.success(), "server: {got:#?}");
    let kv = got.kv();
    assert_eq!(
        unhex(&kv["received_hex"]),
        b"hello from tapstack\n",
        "server: {got:#?}\nclient: {client:#?}"
    );
    assert!(kv["peer"].starts_with(&format!("{STACK_IP}:")), "{got:#?}");
    assert!(client.success(), "client: {client:#?}");
    assert_eq!(client.stdout, "reply:hello from tapstack\n", "{client:#?}");
    assert_no_panic(&client.stderr);
}

#[test]
fn chargen_replies_512_bytes_of_rfc864() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("chargen");
    let stack = StackProc::echo(&ns, &[]);
    let out = udp_py(&ns, &["request", STACK_IP, "19", "2"], SECS(10));
    assert_eq!(out.num("replies"), 2, "{out:#?}");
    let kv = out.kv();
    let pattern = rfc864(1024 + 74 * 2);
    let first = unhex(&kv["reply0_hex"]);
    assert_eq!(first.len(), 512);
    assert_eq!(
        first,
        &pattern[..512],
        "{}",
        String::from_utf8_lossy(&first)
    );
    // The next reply continues with the next line of the pattern.
    let second = unhex(&kv["reply1_hex"]);
    assert_eq!(second.len(), 512);
    let at = 7 * 74;
    assert_eq!(second, &pattern[at..at + 512]);
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
}

#[test]
fn discard_sends_nothing_back() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("discard");
    let stack = StackProc::echo(&ns, &[]);
    let out = udp_py(&ns, &["silent", STACK_IP, "9", "5"], SECS(10));
    assert_eq!(out.kv()["result"], "silent", "{out:#?}");
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
    assert!(counter(&stderr, "udp.rx_datagrams") >= 5, "{stderr}");
    assert_eq!(counter(&stderr, "udp.tx_datagrams"), 0, "{stderr}");
}
