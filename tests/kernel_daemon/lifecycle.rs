//! The daemon's contract around the data: Linux's errnos, a client
//! killed mid-way, hostile control messages, no daemon, daemon shutdown.

use super::*;

#[test]
fn programs_see_linux_errnos() {
    if !require_root() {
        return;
    }
    let d = Daemon::start("derr");
    let script = py("daemon.py");
    let mut rst =
        d.ns.spawn(&["python3", &script, "rstserver", "7001", "120"]);
    rst.wait_line("ready=1", Duration::from_secs(10));
    // Nobody answers SYNs to port 9999 (the kernel drops them).
    for rule in [
        "add table inet dt",
        "add chain inet dt input { type filter hook input priority 0; }",
        "add rule inet dt input tcp dport 9999 drop",
    ] {
        let mut args = vec!["nft"];
        args.extend(rule.split(' '));
        let out = d.ns.run(&args, Duration::from_secs(10));
        assert!(out.success(), "nft {rule}: {out:?}");
    }
    let out = d.run(
        &[
            "python3", &script, "errors", HOST_IP, "7002", "7001", "9999",
        ],
        Duration::from_secs(60),
    );
    let kv = out.kv();
    let want = [
        ("refused", "ECONNREFUSED"),
        ("nonblocking_refused", "ECONNREFUSED"),
        ("nonblocking_ok", "OK"),
        ("unreachable", "ENETUNREACH"),
        ("in_use", "EADDRINUSE"),
        ("reset_recv", "ECONNRESET"),
        ("reset_send", "EPIPE"),
        ("udp_refused", "ECONNREFUSED"),
        ("timeout", "ETIMEDOUT"),
    ];
    for (k, v) in want {
        assert_eq!(
            kv.get(k).map(String::as_str),
            Some(v),
            "{k}: {out:#?}\nstack:\n{}",
            d.stderr()
        );
    }
    let secs: f64 = kv["unreachable_secs"].parse().unwrap();
    assert!(
        secs < 1.0,
        "ENETUNREACH took {secs} s: it must come at once"
    );
}

#[test]
fn sigkilled_client_leaves_nothing_behind() {
    if !require_root() {
        return;
    }
    let d = Daemon::start("dkill");
    let script = py("daemon.py");
    for (port, unread, end) in [("7400", "1", "ECONNRESET"), ("7401", "0", "EOF")] {
        let bytes = if unread == "1" { "1000" } else { "0" };
        let mut w =
            d.ns.spawn(&["python3", &script, "watcher", port, bytes, "30"]);
        w.wait_line("ready=1", Duration::from_secs(10));
        let mut k = d.spawn(&["python3", &script, "killee", HOST_IP, port, unread]);
        k.wait_line("ready=1", Duration::from_secs(10));
        drop(k); // SIGKILL
        let got = w.wait_line("end=", Duration::from_secs(10));
        assert_eq!(got, format!("end={end}"), "unread={unread}");
    }
    // A killed listener's port is free again (bounded wait for the
    // daemon to see the descriptor close).
    let mut l = d.spawn(&["python3", &script, "listener", "7500"]);
    l.wait_line("ready=1", Duration::from_secs(10));
    let busy = d.run(&["python3", &script, "bindonce", "7500"], T);
    assert_eq!(
        busy.kv().get("bound").map(String::as_str),
        Some("EADDRINUSE")
    );
    drop(l);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let out = d.run(&["python3", &script, "bindonce", "7500"], T);
        if out.kv().get("bound").map(String::as_str) == Some("1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "port 7500 still in use: {out:#?}"
        );
    }
    // Everyone else is still served.
    let ksrv = run_bg(
        &d.ns.name,
        owned(&["nc", "-N", "-l", "10.0.0.1", "9010"]),
        b"ok",
    );
    std::thread::sleep(Duration::from_millis(300));
    let out =
        d.ns.run_stdin(&d.run_args(&["nc", "-N", "10.0.0.1", "9010"]), b"", T);
    assert_eq!(out.stdout, "ok", "{out:#?}");
    assert!(ksrv.join().unwrap().success());
}

#[test]
fn hostile_control_messages_and_a_thousand_clients() {
    if !require_root() {
        return;
    }
    let d = Daemon::start("dhostile");
    let out =
        d.ns.run(&["python3", &py("daemon.py"), "hostile", &d.api], T);
    assert!(out.success(), "{out:#?}\nstack:\n{}", d.stderr());
    let kv = out.kv();
    for k in [
        "short_closed",
        "magic_closed",
        "version_closed",
        "length_closed",
        "oversized_closed",
        "still_served",
        "after_all",
    ] {
        assert_eq!(kv.get(k).map(String::as_str), Some("1"), "{k}: {out:#?}");
    }
    assert_eq!(kv["unknown_op"], "EINVAL", "{out:#?}");
    assert_eq!(kv["bad_kind"], "EPROTONOSUPPORT", "{out:#?}");
    assert_eq!(kv["foreign_fd"], "EBADF", "{out:#?}");
    assert_eq!(kv["no_fd"], "EBADF", "{out:#?}");
    assert_eq!(out.num("thousand_answered"), 1000, "{out:#?}");
    let growth = out.num("rss_growth_kb");
    assert!(
        growth < 64 * 1024,
        "1,000 control connections grew the daemon by {growth} KiB"
    );
    assert_no_panic(&d.stderr());
}

#[test]
fn no_daemon_fails_at_once_with_one_line() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("dnone");
    let out = ns.run(
        &[
            bin(),
            "--api",
            "/tmp/no-such-tapstack.sock",
            "run",
            "--",
            "true",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{out:#?}");
    assert!(
        out.stderr.starts_with("tapstack: no tapstack daemon at")
            && out.stderr.lines().count() == 1,
        "{out:#?}"
    );
    // The shim itself, pointed at nothing: socket() fails, one message.
    let shim = Path::new(bin()).with_file_name("libtapstack_preload.so");
    let preload = format!("LD_PRELOAD={}", shim.display());
    let out = ns.run(
        &[
            "env", &preload, "TAPSTACK_API=/tmp/no-such-tapstack.sock", "python3", "-c",
            "import socket\nfor i in range(3):\n  try: socket.socket()\n  except OSError as e: print('errno', e.errno)",
        ],
        Duration::from_secs(10),
    );
    assert!(!out.timed_out, "{out:#?}");
    assert_eq!(out.stdout.matches("errno 100").count(), 3, "{out:#?}"); // ENETDOWN
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{out:#?}");
    assert!(
        lines[0].starts_with("tapstack-preload: cannot reach the tapstack daemon"),
        "{out:#?}"
    );
}

#[test]
fn sigterm_to_the_daemon_wakes_blocked_programs() {
    if !require_root() {
        return;
    }
    let mut d = Daemon::start("dterm");
    let mut hold =
        d.ns.spawn(&["python3", &py("daemon.py"), "watcher", "9020", "0", "30"]);
    hold.wait_line("ready=1", Duration::from_secs(10));
    let mut r = d.spawn(&["python3", &py("daemon.py"), "blockread", HOST_IP, "9020"]);
    r.wait_line("ready=1", Duration::from_secs(10));
    let (_, stderr) = d.stack.take().unwrap().stop();
    assert_no_panic(&stderr);
    let line = r.wait_line("read=", Duration::from_secs(5));
    assert!(line == "read=EOF" || line.starts_with("read=E"), "{line}");
    drop(hold.finish(Duration::from_millis(100)));
}
