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

/// Runs `tests/py/http_client.py args...` in `ns`; asserts a clean exit.
fn http_py(ns: &Netns, args: &[&str], timeout: Duration) -> Output {
    let script = py("http_client.py");
    let mut argv = vec!["python3", script.as_str()];
    argv.extend_from_slice(args);
    let out = ns.run(&argv, timeout);
    assert!(out.success(), "http_client.py {args:?} failed: {out:#?}");
    out
}

/// Persistent connections (RFC 9112 section 9.3): many requests on one
/// connection, each answered `Connection: keep-alive`; a request with
/// `Connection: close` is answered and the connection closed.
#[test]
fn http_keep_alive_serves_many_requests_on_one_connection() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("httpka");
    let stack = StackProc::echo(&ns, &[]);
    let out = http_py(&ns, &["keepalive", STACK_IP, "8080", "20"], SECS(60));
    assert_eq!(out.num("ok"), 20, "{out:#?}");
    assert_eq!(out.num("last_status"), 404, "{out:#?}");
    assert_eq!(out.kv()["last_connection"], "close", "{out:#?}");
    assert_eq!(out.num("closed_after"), 1, "{out:#?}");
    // ab -k (HTTP/1.0 with Connection: Keep-Alive) counts the persistent
    // answers.
    let ab = ns.run(
        &[
            "ab",
            "-k",
            "-n",
            "500",
            "-c",
            "5",
            &format!("http://{STACK_IP}:8080/"),
        ],
        SECS(60),
    );
    assert!(
        ab.success(),
        "ab failed (apache2-utils installed?): {ab:#?}"
    );
    let field = |name: &str| -> u64 {
        ab.stdout
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name:?} in ab's output: {ab:#?}"))
    };
    assert_eq!(field("Complete requests:"), 500, "{ab:#?}");
    assert_eq!(field("Failed requests:"), 0, "{ab:#?}");
    assert_eq!(field("Keep-Alive requests:"), 500, "{ab:#?}");
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
}

/// Pipelined requests are answered in order (RFC 9112 section 9.3.2);
/// the absolute form of a target is accepted (section 3.2.2); two Host
/// headers get 400 (section 3.2).
#[test]
fn http_pipelining_absolute_form_and_duplicate_host() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("httppipe");
    let stack = StackProc::echo(&ns, &[]);
    let out = http_py(&ns, &["pipeline", STACK_IP, "8080"], SECS(30));
    assert_eq!(out.kv()["statuses"], "200,404,200,405", "{out:#?}");
    let out = http_py(&ns, &["absolute", STACK_IP, "8080"], SECS(30));
    assert_eq!(out.num("status"), 200, "{out:#?}");
    assert_eq!(out.num("html"), 1, "{out:#?}");
    let out = http_py(&ns, &["duphost", STACK_IP, "8080"], SECS(30));
    assert_eq!(out.num("status"), 400, "{out:#?}");
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
}

/// 2,000 WebSocket clients at once over a limit of 1,024: every one gets
/// an answer, its echo or 503; none is closed without one.
#[test]
fn ws_clients_over_the_limit_all_get_503() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("wslimit");
    let stack = StackProc::echo(&ns, &[]);
    let out = http_py(&ns, &["overlimit", &url(), "2000"], SECS(180));
    assert_eq!(out.num("no_answer"), 0, "{out:#?}");
    assert_eq!(out.num("bad_echo"), 0, "{out:#?}");
    assert_eq!(out.num("served"), 1024, "{out:#?}");
    assert_eq!(out.num("refused_503"), 976, "{out:#?}");
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
    // Refusals are logged once per second with a count, not per client.
    let lines = stderr.lines().filter(|l| l.contains("refused")).count();
    assert!(lines <= 5, "{lines} refusal lines:\n{stderr}");
}

/// SIGTERM: every WebSocket client gets close 1001 (going away) before
/// the stack stops.
#[test]
fn ws_clients_get_1001_when_the_stack_stops() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("wsgoaway");
    let stack = StackProc::echo(&ns, &[]);
    let script = py("http_client.py");
    let mut clients = ns.spawn(&["python3", &script, "goaway", &url(), "50"]);
    clients.wait_line("ready", SECS(60));
    let (status, stderr) = stack.stop();
    let out = clients.finish(SECS(60));
    assert!(out.success(), "{out:#?}");
    assert_eq!(out.num("closed_1001"), 50, "{out:#?}");
    assert_clean_exit(status, &stderr);
}

/// Autobahn|Testsuite (run by kosoku) against the pushless echo endpoint:
/// every case passes, compression (12.*, 13.*) included.
#[test]
fn autobahn_every_case_passes() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("autobahn");
    let stack = StackProc::echo(&ns, &[]);
    let outdir = scratch(&format!("{}-autobahn", ns.name));
    let echo = format!("ws://{STACK_IP}:8080/echo");
    let out = ns.run(
        &[
            "python3",
            "-c",
            "import sys; from kosoku._cli import main; sys.argv[0] = 'kosoku'; main()",
            "-p",
            "8",
            "-o",
            outdir.to_str().unwrap(),
            &echo,
        ],
        SECS(900),
    );
    let failed: Vec<&str> = out
        .stdout
        .lines()
        .chain(out.stderr.lines())
        .filter(|l| l.contains("behavior="))
        .collect();
    assert!(
        out.success() && failed.is_empty(),
        "Autobahn cases failed ({}):\n{}\n{out:#?}",
        failed.len(),
        failed.join("\n")
    );
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
}

/// Slowloris: 3,000 clients that send their request head one byte every
/// 2 s (over 1,024 slots) while plain requests are timed: at least 99% get
/// the page within 1 s. `reconnect`: dropped slow clients come back.
fn slowloris(reconnect: bool) {
    let ns = Netns::new(if reconnect { "slowre" } else { "slow" });
    let stack = StackProc::echo(&ns, &[]);
    let mut args = vec!["slowloris", STACK_IP, "8080", "3000", "20"];
    if reconnect {
        args.push("reconnect");
    }
    let out = http_py(&ns, &args, SECS(180));
    let requests = out.num("requests");
    let fast = out.num("within_1s");
    assert!(requests >= 20, "too few requests timed: {out:#?}");
    assert!(
        fast * 100 >= requests * 99,
        "{fast} of {requests} requests within 1 s: {out:#?}"
    );
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
}

#[test]
fn slowloris_does_not_starve_plain_requests() {
    if !require_root() {
        return;
    }
    slowloris(false);
}

#[test]
fn reconnecting_slowloris_does_not_starve_plain_requests() {
    if !require_root() {
        return;
    }
    slowloris(true);
}
