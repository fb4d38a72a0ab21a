//! Kernel tests for the web page and WebSocket echo (issue 6) that
//! `tapstack echo` serves on port 8080: curl, nc and python `websockets`
//! (tests/py/ws_client.py) in the namespace as clients. Need root; see
//! tests/common/mod.rs.

mod common;

use std::time::Duration;

use common::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn url() -> String {
    format!("ws://{STACK_IP}:8080/ws")
}

/// Runs `tests/py/ws_client.py args...` in `ns`; asserts a clean exit.
fn ws_py(ns: &Netns, args: &[&str], timeout: Duration) -> Output {
    need_python_module("websockets.sync.client");
    let script = py("ws_client.py");
    let mut argv = vec!["python3", script.as_str()];
    argv.extend_from_slice(args);
    let out = ns.run(&argv, timeout);
    assert!(out.success(), "ws_client.py {args:?} failed: {out:#?}");
    out
}

#[test]
fn ws_text_and_binary_echo_all_sizes() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("wssizes");
    let stack = StackProc::echo(&ns, &[]);
    let out = ws_py(&ns, &["sizes", &url()], SECS(60));
    assert_eq!(out.num("bad"), 0, "{out:#?}");
    // 6 sizes x (text, binary).
    assert_eq!(out.num("ok"), 12, "{out:#?}");
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
}

#[test]
fn ws_ping_gets_pong() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("wsping");
    let stack = StackProc::echo(&ns, &[]);
    let out = ws_py(&ns, &["ping", &url()], SECS(30));
    assert_eq!(out.num("pong"), 1, "{out:#?}");
    assert_eq!(out.num("echo_after"), 1, "{out:#?}");
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
}

#[test]
fn ws_close_1000_completes() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("wsclose");
    let stack = StackProc::echo(&ns, &[]);
    let out = ws_py(&ns, &["close", &url()], SECS(30));
    assert_eq!(out.num("close_code"), 1000, "{out:#?}");
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
}

#[test]
fn ws_200_concurrent_clients() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("wsmany");
    let stack = StackProc::echo(&ns, &[]);
    let out = ws_py(&ns, &["many", &url(), "200"], SECS(120));
    assert_eq!(out.num("ok"), 200, "{out:#?}");
    assert_eq!(out.num("failed"), 0, "{out:#?}");
    eprintln!(
        "200 concurrent WebSocket clients x 6 echoes in {} s",
        out.kv()["secs"]
    );
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
}

#[test]
fn ws_stats_push_arrives() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("wsstats");
    let stack = StackProc::echo(&ns, &[]);
    // The push interval is 5 s: wait up to 8 s.
    let out = ws_py(&ns, &["stats", &url(), "8"], SECS(30));
    assert_eq!(out.num("stats"), 1, "no stats push within 8 s: {out:#?}");
    assert_eq!(out.num("has_data"), 1, "{out:#?}");
    assert!(out.num("connections") >= 1, "{out:#?}");
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
}

#[test]
fn http_page_and_malformed_request() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("http");
    let stack = StackProc::echo(&ns, &[]);
    let page = format!("http://{STACK_IP}:8080/");
    let code = ns.run(
        &[
            "curl",
            "-s",
            "-m",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &page,
        ],
        SECS(20),
    );
    assert_eq!(code.stdout, "200", "{code:#?}");
    let body = ns.run(&["curl", "-s", "-m", "10", &page], SECS(20));
    assert!(body.success(), "{body:#?}");
    assert!(body.stdout.contains("<html"), "{body:#?}");

    let bad = ns.run_stdin(
        &["nc", "-N", "-w", "5", STACK_IP, "8080"],
        b"GARBAGE\r\n\r\n",
        SECS(15),
    );
    let status_line = bad.stdout.lines().next().unwrap_or_default();
    assert!(
        status_line.starts_with("HTTP/1.1 400"),
        "malformed request got {status_line:?}: {bad:#?}"
    );
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
}
