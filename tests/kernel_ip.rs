//! Kernel tests for Ethernet/ARP/IPv4/ICMP and the CLI (issue 2): the
//! kernel's ping and tcpdump against the stack on a TAP in a namespace.
//! Need root; see tests/common/mod.rs.

mod common;

use std::time::Duration;

use common::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn ping_20_quick_no_loss() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("ping20");
    let stack = StackProc::echo(&ns, &[]);
    assert_ping_all(
        &ns,
        STACK_IP,
        &["-c", "20", "-i", "0.05", "-W", "2"],
        SECS(15),
    );
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
    assert!(counter(&stderr, "icmp.echo_replied") >= 20, "{stderr}");
}

/// The kernel side of the TAP gets a 10,000-frame queue (src/device/
/// hostcfg.rs: a 1000-frame queue overflowed whenever the loaded stack
/// thread was off the CPU, dropping whole flights of kernel senders).
#[test]
fn tap_queue_holds_10000_frames() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("tapqlen");
    let mut stack = StackProc::spawn(&ns, TAP, &["up"]);
    stack.wait_ready(&ns);
    let out = ns.run(&["ip", "link", "show", "dev", TAP], SECS(10));
    assert!(out.stdout.contains(" qlen 10000"), "{out:#?}");
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
}

#[test]
fn ping_large_fragmented_both_ways() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("pingbig");
    let stack = StackProc::echo(&ns, &[]);
    for size in ["8000", "65000"] {
        assert_ping_all(
            &ns,
            STACK_IP,
            &["-c", "5", "-i", "0.1", "-W", "2", "-s", size],
            SECS(20),
        );
    }
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
    // 10 fragmented requests in, 10 fragmented replies out.
    assert!(counter(&stderr, "ipv4.reassembled") >= 10, "{stderr}");
    assert!(counter(&stderr, "ipv4.fragmented_tx") >= 10, "{stderr}");
}

#[test]
fn survives_10000_garbage_frames() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("garbage");
    let mut stack = StackProc::echo(&ns, &[]);
    let out = ns.run(
        &[
            "python3",
            &py("inject.py"),
            TAP,
            STACK_MAC,
            STACK_IP,
            HOST_IP,
            "10000",
            "42",
        ],
        SECS(60),
    );
    assert!(out.success(), "inject.py failed: {out:#?}");
    // Frames shorter than an Ethernet header are refused by the kernel.
    assert!(out.num("sent") >= 9000, "too few frames injected: {out:#?}");
    assert!(stack.is_running(), "tapstack died: {}", stack.stderr_now());
    assert_ping_all(
        &ns,
        STACK_IP,
        &["-c", "5", "-i", "0.05", "-W", "2"],
        SECS(10),
    );
    // UDP still works too.
    let echo = ns.run(
        &["python3", &py("udp.py"), "request", STACK_IP, "7", "3"],
        SECS(15),
    );
    assert_eq!(echo.num("replies"), 3, "{echo:#?}");
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
    let c = counters(&stderr);
    let dropped: u64 = c
        .iter()
        .filter(|(k, _)| {
            ["bad_", "malformed", "truncated", "unknown", "not_for_us"]
                .iter()
                .any(|w| k.contains(w))
        })
        .map(|(_, v)| v)
        .sum();
    assert!(dropped >= 1000, "garbage was not counted as dropped: {c:?}");
}

#[test]
fn pcap_is_valid_for_tcpdump() {
    if !require_root() {
        return;
    }
    need_tool("tcpdump");
    let ns = Netns::new("pcap");
    let file = scratch(&format!("{}.pcap", ns.name));
    let _ = std::fs::remove_file(&file);
    let stack = StackProc::echo(&ns, &["--pcap", file.to_str().unwrap()]);
    assert_ping_all(
        &ns,
        STACK_IP,
        &["-c", "3", "-i", "0.05", "-W", "2"],
        SECS(10),
    );
    assert_ping_all(
        &ns,
        STACK_IP,
        &["-c", "1", "-W", "2", "-s", "3000"],
        SECS(10),
    );
    let echo = ns.run(
        &["python3", &py("udp.py"), "request", STACK_IP, "7", "2"],
        SECS(10),
    );
    assert_eq!(echo.num("replies"), 2, "{echo:#?}");
    let refused = ns.run(
        &["python3", &py("udp.py"), "refused", STACK_IP, "4444"],
        SECS(10),
    );
    assert_eq!(refused.kv()["result"], "refused", "{refused:#?}");
    // TCP both ways: with TAP offloads the kernel's TSO super-frames are
    // recorded whole (checksum completed), our segments as sent.
    let tcp = py("tcp.py");
    let mib = (4u64 << 20).to_string();
    let discard = ns.run(
        &["python3", &tcp, "discard", STACK_IP, "9", &mib, "3"],
        SECS(30),
    );
    assert_eq!(discard.num("sent"), 4 << 20, "{discard:#?}");
    let chargen = ns.run(
        &["python3", &tcp, "chargen", STACK_IP, "19", "300000"],
        SECS(30),
    );
    assert_eq!(chargen.kv()["bad_at"], "-1", "{chargen:#?}");
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
    assert!(counter(&stderr, "rx.gso_frames") > 0, "{stderr}");

    let dump = run_cmd(
        {
            let mut c = std::process::Command::new("tcpdump");
            c.args(["-n", "-vv", "-r", file.to_str().unwrap()]);
            c
        },
        b"",
        SECS(20),
    );
    assert!(dump.success(), "tcpdump -r failed: {dump:#?}");
    let text = &dump.stdout;
    for bad in ["bad cksum", "incorrect", "truncated", "bad udp cksum"] {
        assert!(!text.contains(bad), "tcpdump says {bad:?}:\n{text}");
    }
    let largest_tcp = text
        .split("proto TCP (6), length ")
        .skip(1)
        .filter_map(|t| t.split(')').next()?.parse::<u32>().ok())
        .max();
    assert!(
        largest_tcp.is_some_and(|l| l > 1500),
        "no TCP super-frame in the capture (largest IP length {largest_tcp:?})"
    );
    // Our own TCP left in super-segments (TSO), yet the capture shows
    // the segments the kernel cut them into, as the wire carries them.
    assert!(counter(&stderr, "tx.gso_frames") > 0, "{stderr}");
    let ours = format!("{STACK_IP}.");
    let largest_ours = text
        .split("proto TCP (6), length ")
        .skip(1)
        .filter(|t| {
            t.split('\n')
                .nth(1)
                .is_some_and(|l| l.trim_start().starts_with(&ours))
        })
        .filter_map(|t| t.split(')').next()?.parse::<u32>().ok())
        .max();
    assert!(
        largest_ours.is_some_and(|l| l > 1000 && l <= 1500),
        "our TCP frames in the capture are not wire-sized (largest IP length {largest_ours:?})"
    );
    for want in [
        "ICMP echo request",
        "ICMP echo reply",
        "is-at 02:74:61:70:00:02",
        "udp port 4444 unreachable",
        "UDP, length 6",
    ] {
        assert!(text.contains(want), "no {want:?} in the capture:\n{text}");
    }
}

/// Runs the binary (in `ns` if given) and checks the error contract: a
/// non-zero exit, exactly one line `tapstack: ...` on stderr mentioning
/// `hint`, no panic. Returns that line.
fn assert_cli_error(ns: Option<&Netns>, prefix: &[&str], args: &[&str], hint: &str) -> String {
    let mut argv: Vec<&str> = prefix.to_vec();
    argv.push(bin());
    argv.extend_from_slice(args);
    let out = match ns {
        Some(ns) => ns.run(&argv, SECS(10)),
        None => {
            let mut c = std::process::Command::new(argv[0]);
            c.args(&argv[1..]);
            run_cmd(c, b"", SECS(10))
        }
    };
    let what = format!("tapstack {}", args.join(" "));
    assert!(!out.timed_out, "{what}: did not exit: {out:#?}");
    let status = out.status.expect("status");
    assert!(!status.success(), "{what}: exited 0: {out:#?}");
    assert!(
        status.code().is_some(),
        "{what}: killed by a signal: {out:#?}"
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: want one stderr line: {out:#?}");
    assert!(lines[0].starts_with("tapstack: "), "{what}: {out:#?}");
    assert!(
        lines[0].to_lowercase().contains(&hint.to_lowercase()),
        "{what}: stderr does not mention {hint:?}: {out:#?}"
    );
    assert_no_panic(&out.stderr);
    lines[0].to_string()
}

/// Runs as `nobody` when we are root (so the test shows that no privilege
/// is needed), as ourselves otherwise.
fn unprivileged() -> &'static [&'static str] {
    if is_root() {
        need_tool("setpriv");
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ]
    } else {
        &[]
    }
}

/// Usage errors keep clap's whole message (the missing `<TARGET>`, the
/// "similar subcommand" tip) on one line with the usage as the hint; a bad
/// `connect` target is refused before any TAP exists, so without root.
#[test]
fn cli_usage_errors_keep_clap_message_and_need_no_root() {
    let user = unprivileged();
    let line = assert_cli_error(None, user, &["connect"], "<TARGET>");
    assert!(
        line.contains("not provided") && line.contains("usage: tapstack connect <TARGET>"),
        "{line}"
    );
    assert!(line.contains("tapstack connect --help"), "{line}");
    let line = assert_cli_error(None, user, &["conect", "10.0.0.1:9"], "conect");
    assert!(
        line.contains("a similar subcommand exists: 'connect'"),
        "{line}"
    );
    assert_cli_error(None, user, &["connect", "10.0.0.1:99999"], "65535");
    assert_cli_error(None, user, &["connect", "-u", "10.0.0.1"], "IPV4:PORT");
    assert_cli_error(None, user, &["connect", "example.org:80"], "no DNS");
    assert_cli_error(
        None,
        user,
        &["connect", "-q", "soon", "10.0.0.1:9"],
        "--quit-after",
    );
}

/// Help: options grouped under headings, a subcommand's own flags first,
/// and the warning that the stack needs root and changes the current
/// network namespace, with how to run it in its own or without root.
#[test]
fn help_groups_options_and_says_what_it_changes() {
    let help = |args: &[&str]| {
        let mut c = std::process::Command::new(bin());
        c.args(args);
        let out = run_cmd(c, b"", SECS(10));
        assert!(out.success(), "{args:?}: {out:#?}");
        out.stdout
    };
    let top = help(&["--help"]);
    let at = |text: &str, what: &str| {
        text.find(what)
            .unwrap_or_else(|| panic!("no {what:?} in help:\n{text}"))
    };
    let headings = ["Interface:", "Capture:", "Faults:", "TCP:"].map(|h| at(&top, h));
    assert!(headings.is_sorted(), "{top}");
    assert!(at(&top, "--tap <NAME>") > headings[0] && at(&top, "--tap <NAME>") < headings[1]);
    assert!(at(&top, "--pcap <FILE>") > headings[1] && at(&top, "--pcap <FILE>") < headings[2]);
    assert!(at(&top, "--loss <P>") > headings[2] && at(&top, "--loss <P>") < headings[3]);
    assert!(at(&top, "--cc <ALG>") > headings[3], "{top}");
    for want in [
        "Needs root",
        "CURRENT network namespace",
        "ip netns exec demo tapstack echo",
        "ip tuntap add dev tap0 mode tap user",
        "--no-host-config echo",
    ] {
        at(&top, want);
    }
    for (sub, own) in [("connect", "--udp"), ("echo", "--ws-port <PORT>")] {
        let text = help(&[sub, "--help"]);
        assert!(at(&text, own) < at(&text, "Interface:"), "{text}");
        at(&text, "CURRENT network namespace");
    }
}

/// A server stopped by SIGTERM says nothing but its counters, and lists
/// only the ones that moved; `connect` prints none.
#[test]
fn clean_exit_prints_only_non_zero_counters() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("quietexit");
    let stack = StackProc::echo(&ns, &[]);
    assert_ping_all(
        &ns,
        STACK_IP,
        &["-c", "2", "-i", "0.05", "-W", "2"],
        SECS(10),
    );
    let closed = ns.run_stdin(
        &[
            bin(),
            "--tap",
            "tq1",
            "--addr",
            "10.0.1.2/24",
            "--host-addr",
            "10.0.1.1/24",
            "connect",
            "10.0.1.1:9",
        ],
        b"",
        SECS(20),
    );
    assert!(!closed.success(), "{closed:#?}");
    assert!(
        !closed.stderr.contains("counters"),
        "connect printed counters: {closed:#?}"
    );
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
    let mut lines = stderr.lines();
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with("tapstack: echo (7)")),
        "{stderr}"
    );
    assert_eq!(lines.next(), Some("tapstack: counters"), "{stderr}");
    let listed: Vec<&str> = lines.collect();
    assert!(!listed.is_empty(), "{stderr}");
    for l in listed {
        let value = l
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok());
        assert!(
            value.is_some_and(|v| v > 0),
            "not a non-zero counter line: {l:?} in\n{stderr}"
        );
    }
    assert!(counter(&stderr, "icmp.echo_replied") >= 2, "{stderr}");
}

#[test]
fn cli_errors_are_one_line() {
    // As an unprivileged user (nobody when we are root), outside any
    // namespace: each error must come before the TAP is touched (which
    // would fail differently without privilege), so none needs root and
    // none can create anything.
    let user = unprivileged();
    assert_cli_error(None, user, &["--addr", "10.0.0.300/24", "up"], "10.0.0.300");
    assert_cli_error(None, user, &["--addr", "10.0.0.2", "up"], "CIDR");
    assert_cli_error(None, user, &["--mac", "02:zz:00:00:00:01", "up"], "MAC");
    assert_cli_error(
        None,
        user,
        &["--mac", "01:00:00:00:00:01", "up"],
        "multicast",
    );
    assert_cli_error(None, user, &["--mtu", "10", "up"], "mtu");
    assert_cli_error(None, user, &["--loss", "2", "up"], "outside");
    assert_cli_error(
        None,
        user,
        &["echo", "--max-connections", "0"],
        "must be at least 1",
    );
    assert_cli_error(None, user, &["--bogus", "up"], "--bogus");
    assert_cli_error(
        None,
        user,
        &["--tap", "a-very-long-tap-name", "up"],
        "invalid TAP name",
    );
    assert_cli_error(
        None,
        user,
        &["--addr", "10.0.0.2/24", "--host-addr", "10.0.0.2/24", "up"],
        "--host-addr",
    );
}

#[test]
fn cli_error_busy_tap() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("busy");
    let mut first = StackProc::spawn(&ns, "tX", &["echo"]);
    first.wait_ready(&ns);
    assert_cli_error(Some(&ns), &[], &["--tap", "tX", "echo"], "busy");
    // The failed second start must not have disturbed the first.
    assert_ping_all(
        &ns,
        STACK_IP,
        &["-c", "2", "-i", "0.05", "-W", "2"],
        SECS(10),
    );
    let (status, stderr) = first.stop();
    assert_clean_exit(status, &stderr);
}

#[test]
fn cli_error_without_cap_net_admin() {
    if !require_root() {
        return;
    }
    need_tool("setpriv");
    let ns = Netns::new("nocap");
    assert_cli_error(
        Some(&ns),
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
        &["--tap", TAP, "up"],
        "run with sudo",
    );
}

/// An ordinary user runs the stack on a TAP an administrator made for them
/// (`ip tuntap add ... user NAME`, kernel side set up once) with
/// `--no-host-config`: no root, no capability. /dev/net/tun is 0666 on a
/// usual Debian host; where it is not (as in some containers), a private
/// mount namespace gives the test such a node without touching the host.
#[test]
fn ordinary_user_on_an_admin_made_tap() {
    if !require_root() {
        return;
    }
    need_tool("setpriv");
    need_tool("unshare");
    let ns = Netns::new("unpriv");
    let tap = "tu0";
    let owner = ["user", "65534"];
    for cmd in [
        [
            &["ip", "tuntap", "add", "dev", tap, "mode", "tap"][..],
            &owner,
        ]
        .concat(),
        vec!["ip", "addr", "add", "10.0.0.1/24", "dev", tap],
        vec!["ip", "link", "set", tap, "up"],
    ] {
        let out = ns.run(&cmd, SECS(10));
        assert!(out.success(), "{cmd:?}: {out:#?}");
    }
    let as_nobody = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        "mount -t tmpfs -o mode=755 tmpfs /dev/net && mknod -m 666 /dev/net/tun c 10 200 \
         && exec setpriv --reuid=65534 --regid=65534 --clear-groups \"$@\"",
        "sh",
    ];
    let mut stack = StackProc::spawn_via(&ns, &as_nobody, tap, &["--no-host-config", "echo"]);
    stack.wait_ready(&ns);
    let pid = stack.pid().expect("running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["65534"; 4],
        "tapstack is not running as nobody: {uid}"
    );
    let cap = status.lines().find(|l| l.starts_with("CapEff:")).unwrap();
    assert!(cap.ends_with("0000000000000000"), "{cap}");
    assert_ping_all(
        &ns,
        STACK_IP,
        &["-c", "5", "-i", "0.05", "-W", "2"],
        SECS(10),
    );
    let echo = ns.run_stdin(
        &["nc", "-N", "-w", "5", STACK_IP, "7"],
        b"as nobody\n",
        SECS(10),
    );
    assert_eq!(echo.stdout, "as nobody\n", "{echo:#?}");
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
    // The administrator's TAP and its address outlive the stack.
    let addr = ns.run(&["ip", "-o", "-4", "addr", "show", "dev", tap], SECS(5));
    assert!(addr.stdout.contains("10.0.0.1/24"), "{addr:#?}");
}
