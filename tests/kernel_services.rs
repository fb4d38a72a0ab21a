//! Kernel tests for the demo services under load (issue 13): 20,000
//! concurrent echo connections, the connection limit's refusals, and
//! memory given back after a burst.
//! Need root; see tests/common/mod.rs.

mod common;

use std::time::Duration;

use common::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Starts `processes` clients of `each` connections to echo (open files
/// are capped at 20,000 per process here), lets them all open, then has
/// every connection echo a message of its own. Client `i` binds to
/// `sources[i]` if given. Returns the total opened and each process's
/// output.
fn many_echo(ns: &Netns, processes: usize, each: usize, sources: &[&str]) -> (u64, Vec<Output>) {
    let sysctl = ns.run(
        &["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000"],
        SECS(10),
    );
    assert!(sysctl.success(), "{sysctl:#?}");
    let go = scratch(&format!("{}-go", ns.name));
    let _ = std::fs::remove_file(&go);
    let script = py("many_echo.py");
    let each = each.to_string();
    let mut clients: Vec<Bg> = (0..processes)
        .map(|i| {
            let id = i.to_string();
            let mut argv = vec![
                "python3",
                &script,
                STACK_IP,
                "7",
                &each,
                go.to_str().unwrap(),
                &id,
            ];
            argv.extend(sources.get(i));
            ns.spawn(&argv)
        })
        .collect();
    let mut opened = 0;
    for c in &mut clients {
        let line = c.wait_line("open=", SECS(240));
        opened += line.trim_start_matches("open=").parse::<u64>().unwrap();
    }
    // Every connection is open now; let them talk.
    std::fs::write(&go, b"go").unwrap();
    let outs = clients.iter_mut().map(|c| c.finish(SECS(240))).collect();
    (opened, outs)
}

/// The stack's active TCP connections, from the web page's stats push
/// (which counts the WebSocket that reads it).
fn active_tcp(ns: &Netns) -> Option<u64> {
    need_python_module("websockets.sync.client");
    let script = py("ws_client.py");
    let url = format!("ws://{STACK_IP}:8080/ws");
    let out = ns.run(&["python3", &script, "stats", &url, "8"], SECS(30));
    out.kv().get("active_tcp")?.parse().ok()
}

/// 20,000 connections from four kernel addresses at once, every echo
/// checked; then the stack's active-connection count returns to 0.
#[test]
fn echo_serves_20000_concurrent_connections() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("echo20k");
    let stack = StackProc::echo(&ns, &[]);
    let sources = ["10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.14"];
    for src in sources {
        let add = ns.run(
            &["ip", "addr", "add", &format!("{src}/24"), "dev", TAP],
            SECS(10),
        );
        assert!(add.success(), "{add:#?}");
    }
    let (opened, outs) = many_echo(&ns, 4, 5000, &sources);
    assert_eq!(opened, 20_000, "{outs:#?}");
    let ok: u64 = outs.iter().map(|o| o.num("echo_ok")).sum();
    for o in &outs {
        assert!(o.success(), "{o:#?}");
        assert_eq!(o.num("echo_bad"), 0, "{o:#?}");
        assert_eq!(o.num("echo_missing"), 0, "{o:#?}");
    }
    assert_eq!(ok, 20_000, "{outs:#?}");
    // The clients closed every connection; the stack's side closes as
    // each EOF is read. 1 is the WebSocket asking.
    let mut active = None;
    for _ in 0..10 {
        active = active_tcp(&ns);
        if active == Some(1) {
            break;
        }
    }
    assert_eq!(active, Some(1), "active TCP connections after all closed");
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
}

/// Over `--max-connections`, a connection is refused with RST and the
/// refusals are logged once per second with a count.
#[test]
fn echo_refuses_over_the_limit_with_rst_and_one_log_line() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("echolimit");
    let mut stack = StackProc::spawn(&ns, TAP, &["echo", "--max-connections", "100"]);
    stack.wait_ready(&ns);
    let (opened, outs) = many_echo(&ns, 1, 300, &[]);
    let o = &outs[0];
    assert!(o.success(), "{o:#?}");
    // 100 are served; the other 200 are reset, during the handshake as
    // the client sees it or before their echo.
    assert_eq!(o.num("echo_ok"), 100, "{o:#?}");
    assert_eq!(opened + o.num("connect_failed"), 300, "{o:#?}");
    let refused = o.num("connect_failed") + o.num("echo_bad") + o.num("echo_missing");
    assert_eq!(refused, 200, "{o:#?}");
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
    let lines = stderr.lines().filter(|l| l.contains("refused")).count();
    assert!((1..=3).contains(&lines), "{lines} refusal lines:\n{stderr}");
}

/// Resident memory of `pid` in KiB (VmRSS).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// How far above its before-burst figure the stack may stay after 5,000
/// connections came and went. Measured (KiB): 5,600-5,700 before (after a
/// 200-connection warm-up), 13,900 with the 5,000 open, 87,000-110,000
/// after their echoes and closes without the stack's trim
/// (`src/runtime/trim.rs`: glibc keeps the freed chunks in its arenas),
/// 7,200-10,500 with it: 16 MiB is three times what stays, and a fifth of
/// what stayed without the trim. It failed 1 run in 4 when the TCP buffer
/// pool kept its 32 MiB of spares for good (up to 38,700 after), or when
/// glibc's own heap shrink hid the frees from the trimmer.
const RSS_MARGIN_KIB: u64 = 16 * 1024;

#[test]
fn memory_returns_after_a_burst_of_5000_connections() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("echoburst");
    // TIME-WAIT (if the stack closes first anywhere) ends within the wait.
    let stack = StackProc::echo(&ns, &["--time-wait", "1"]);
    let pid = stack.pid().expect("stack pid");
    // Warm-up: what the first connections allocate for good (buffers,
    // pools, the services' tables) belongs to the baseline.
    let (opened, outs) = many_echo(&ns, 1, 200, &[]);
    assert_eq!((opened, outs[0].num("echo_ok")), (200, 200), "{outs:#?}");
    std::thread::sleep(SECS(2));
    let before = rss_kib(pid);
    let (opened, outs) = many_echo(&ns, 1, 5000, &[]);
    assert_eq!(opened, 5000, "{outs:#?}");
    assert_eq!(outs[0].num("echo_ok"), 5000, "{outs:#?}");
    // The burst is over: wait (bounded) for the memory to come back.
    let deadline = std::time::Instant::now() + SECS(30);
    let mut after = rss_kib(pid);
    while after > before + RSS_MARGIN_KIB && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        after = rss_kib(pid);
    }
    println!("rss: before {before} KiB, after the burst {after} KiB");
    assert!(
        after <= before + RSS_MARGIN_KIB,
        "resident memory {after} KiB, {before} KiB before 5,000 connections \
         (margin {RSS_MARGIN_KIB} KiB)"
    );
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
}
