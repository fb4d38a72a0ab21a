//! Kernel tests of the daemon: unmodified programs (curl, nc, python3,
//! iperf3) run under `tapstack run` with their sockets on the stack, the
//! kernel's own tools on the other side of the TAP, each test in its own
//! network namespace. Transfers are checked byte for byte (SHA-256).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(60);

/// A stack with its daemon on a control socket of its own.
struct Daemon {
    ns: Netns,
    stack: Option<StackProc>,
    api: String,
}

impl Daemon {
    /// `tapstack --api /tmp/<ns>.sock --syn-retries 2 up` (2 SYN retries:
    /// an unanswered connect times out in ~7 s rather than ~2 min).
    fn start(test: &str) -> Daemon {
        let shim = Path::new(bin()).with_file_name("libtapstack_preload.so");
        assert!(
            shim.exists(),
            "{} is missing: build it first (cargo build --release)",
            shim.display()
        );
        let ns = Netns::new(test);
        // Short and unique (unix socket paths are limited to 107 bytes).
        let api = format!("/tmp/{}.sock", ns.name);
        let mut stack = StackProc::spawn(&ns, TAP, &["--api", &api, "--syn-retries", "2", "up"]);
        stack.wait_ready(&ns);
        assert!(
            wait_for_file(Path::new(&api), Duration::from_secs(10)),
            "no control socket at {api}; stderr:\n{}",
            stack.stderr_now()
        );
        Daemon {
            ns,
            stack: Some(stack),
            api,
        }
    }

    /// `tapstack --api API run -- prog...` as argument list.
    fn run_args<'a>(&'a self, prog: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec![bin(), "--api", &self.api, "run", "--"];
        v.extend_from_slice(prog);
        v
    }

    fn run(&self, prog: &[&str], timeout: Duration) -> Output {
        self.ns.run(&self.run_args(prog), timeout)
    }

    fn spawn(&self, prog: &[&str]) -> Bg {
        self.ns.spawn(&self.run_args(prog))
    }

    fn stderr(&self) -> String {
        self.stack
            .as_ref()
            .map(|s| s.stderr_now())
            .unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.api);
    }
}

/// A file of `len` bytes from a fixed xorshift stream.
fn data_file(name: &str, len: usize) -> PathBuf {
    let dir = scratch(name);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("big.bin");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.extend_from_slice(&x.to_le_bytes());
    }
    buf.truncate(len);
    std::fs::write(&path, &buf).unwrap();
    path
}

fn sha256(path: &Path) -> String {
    let out = run_cmd(
        {
            let mut c = Command::new("sha256sum");
            c.arg(path);
            c
        },
        b"",
        T,
    );
    assert!(out.success(), "sha256sum failed: {out:?}");
    out.stdout.split_whitespace().next().unwrap().to_string()
}

const MIB10: usize = 10 * 1024 * 1024;

#[test]
fn curl_under_run_fetches_10mib_from_kernel_http_server() {
    if !require_root() {
        return;
    }
    let d = Daemon::start("dcurl");
    let file = data_file("dcurl-www", MIB10);
    let dir = file.parent().unwrap().to_str().unwrap().to_string();
    let mut server = d.ns.spawn(&[
        "python3",
        "-u",
        "-m",
        "http.server",
        "--bind",
        HOST_IP,
        "--directory",
        &dir,
        "8000",
    ]);
    server.wait_line("Serving HTTP", Duration::from_secs(10));
    let out_path = scratch("dcurl-got.bin");
    let _ = std::fs::remove_file(&out_path);
    let out = d.run(
        &[
            "curl",
            "-sS",
            "--max-time",
            "60",
            "-o",
            out_path.to_str().unwrap(),
            "http://10.0.0.1:8000/big.bin",
        ],
        T,
    );
    assert!(
        out.success(),
        "curl failed: {out:#?}\nstack:\n{}",
        d.stderr()
    );
    assert_eq!(sha256(&out_path), sha256(&file), "fetched file differs");
}

#[test]
fn http_server_under_run_serves_50_parallel_kernel_curls() {
    if !require_root() {
        return;
    }
    let d = Daemon::start("dhttp");
    let file = data_file("dhttp-www", MIB10);
    let want = sha256(&file);
    let dir = file.parent().unwrap().to_str().unwrap().to_string();
    let mut server = d.spawn(&[
        "python3",
        "-u",
        "-m",
        "http.server",
        "--bind",
        "0.0.0.0",
        "--directory",
        &dir,
        "8080",
    ]);
    server.wait_line("Serving HTTP", Duration::from_secs(10));
    let outs: Vec<PathBuf> = (0..50)
        .map(|i| scratch(&format!("dhttp-{i}.bin")))
        .collect();
    let mut children: Vec<_> = outs
        .iter()
        .map(|p| {
            let _ = std::fs::remove_file(p);
            d.ns.command(&[
                "curl",
                "-sS",
                "--max-time",
                "120",
                "-o",
                p.to_str().unwrap(),
                "http://10.0.0.2:8080/big.bin",
            ])
            .spawn()
            .expect("start curl")
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(150);
    for c in &mut children {
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                assert!(
                    s.success(),
                    "a kernel curl failed: {s}\nstack:\n{}",
                    d.stderr()
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "kernel curls did not finish in time"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for p in &outs {
        assert_eq!(sha256(p), want, "{} differs", p.display());
    }
}

/// Runs a kernel-side client until it connects (the program under
/// `tapstack run` may not be listening yet: a refusal is retried, bounded).
fn kernel_client(d: &Daemon, args: &[&str], stdin: &[u8]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = d.ns.run_stdin(args, stdin, T);
        if out.success() || Instant::now() >= deadline || !out.stdout.is_empty() {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `args` in the namespace on a thread, with `stdin`, bounded.
fn run_bg(
    ns_name: &str,
    args: Vec<String>,
    stdin: &'static [u8],
) -> std::thread::JoinHandle<Output> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns_name]).args(args);
    std::thread::spawn(move || run_cmd(cmd, stdin, T))
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn nc_under_run_both_ways_with_half_close() {
    if !require_root() {
        return;
    }
    let d = Daemon::start("dnc");
    // Shim client, kernel server: each side sends, half-closes (-N) and
    // reads the other's bytes to end-of-file.
    let ksrv = run_bg(
        &d.ns.name,
        owned(&["nc", "-N", "-l", "10.0.0.1", "9000"]),
        b"from kernel",
    );
    std::thread::sleep(Duration::from_millis(300));
    let out = d.ns.run_stdin(
        &d.run_args(&["nc", "-N", "10.0.0.1", "9000"]),
        b"from shim",
        T,
    );
    assert!(out.success(), "shim nc failed: {out:#?}");
    assert_eq!(out.stdout, "from kernel");
    let k = ksrv.join().unwrap();
    assert_eq!(k.stdout, "from shim", "kernel nc: {k:#?}");

    // Shim server, kernel client.
    let ssrv = run_bg(
        &d.ns.name,
        owned(&d.run_args(&["nc", "-N", "-l", "9001"])),
        b"from shim",
    );
    let out = kernel_client(&d, &["nc", "-N", "10.0.0.2", "9001"], b"from kernel");
    assert!(out.success(), "kernel nc failed: {out:#?}");
    assert_eq!(out.stdout, "from shim");
    let s = ssrv.join().unwrap();
    assert_eq!(s.stdout, "from kernel", "shim nc: {s:#?}");
}

/// A program whose stdin stays open (nc quits reading the network once
/// its stdin ends): fed `input`, its stdout collected; killed on drop.
struct Session {
    child: std::process::Child,
    _stdin: std::process::ChildStdin,
    out: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Session {
    fn start(mut cmd: Command, input: &[u8]) -> Session {
        use std::io::{Read, Write};
        use std::process::Stdio;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("start session");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let out = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Session {
            child,
            _stdin: stdin,
            out,
        }
    }

    /// Waits (bounded) until stdout contains `want`; returns all of it.
    fn wait_for(&self, want: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.out.lock().unwrap().clone();
            if got.contains(want) || Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn nc_udp_under_run_both_ways() {
    if !require_root() {
        return;
    }
    let d = Daemon::start("dncu");
    let script = py("daemon.py");
    // nc under the shim as the client: a kernel UDP server answers.
    let mut ksrv =
        d.ns.spawn(&["python3", &script, "udpserver", "10.0.0.1", "9002"]);
    ksrv.wait_line("ready=1", Duration::from_secs(10));
    let client = Session::start(
        d.ns.command(&d.run_args(&["nc", "-u", "10.0.0.1", "9002"])),
        b"from shim",
    );
    let got = client.wait_for("from kernel", Duration::from_secs(10));
    let k = ksrv.finish(Duration::from_secs(5));
    assert!(k.stdout.contains("got=from shim"), "kernel side: {k:#?}");
    assert_eq!(got, "from kernel", "shim nc's output");

    // nc under the shim as the server: it answers the first sender.
    let server = Session::start(
        d.ns.command(&d.run_args(&["nc", "-u", "-l", "9003"])),
        b"from shim",
    );
    let k =
        d.ns.run(&["python3", &script, "udpclient", STACK_IP, "9003"], T);
    assert_eq!(
        k.kv().get("reply").map(String::as_str),
        Some("from shim"),
        "{k:#?}"
    );
    let got = server.wait_for("from kernel", Duration::from_secs(10));
    assert!(got.starts_with("from kernel"), "shim nc's output: {got:?}");
}

#[test]
fn asyncio_echo_under_run_serves_200_concurrent_kernel_clients() {
    if !require_root() {
        return;
    }
    let d = Daemon::start("dasync");
    let script = py("daemon.py");
    let mut srv = d.spawn(&["python3", &script, "asyncecho", "7000", "120"]);
    srv.wait_line("ready=1", Duration::from_secs(10));
    let out = d.ns.run(
        &[
            "python3",
            &py("tcp.py"),
            "many",
            STACK_IP,
            "7000",
            "200",
            "20000",
            "7",
        ],
        Duration::from_secs(90),
    );
    assert_eq!(out.num("ok"), 200, "{out:#?}\nstack:\n{}", d.stderr());
    assert_eq!(out.num("failed"), 0, "{out:#?}");
}

#[test]
fn iperf3_server_under_run() {
    if !require_root() {
        return;
    }
    let d = Daemon::start("diperf");
    let mut srv = d.spawn(&["iperf3", "-s", "-4", "-1", "--forceflush", "-p", "5201"]);
    srv.wait_line("Server listening", Duration::from_secs(10));
    let out = d.ns.run(
        &["iperf3", "-c", STACK_IP, "-p", "5201", "-t", "5"],
        Duration::from_secs(60),
    );
    assert!(
        out.success(),
        "iperf3 client failed: {out:#?}\nstack:\n{}",
        d.stderr()
    );
    assert!(out.stdout.contains("receiver"), "{out:#?}");
    let s = srv.finish(Duration::from_secs(10));
    assert!(s.success(), "iperf3 server failed: {s:#?}");
    let line = out
        .stdout
        .lines()
        .rfind(|l| l.contains("receiver"))
        .unwrap_or("");
    println!("iperf3 kernel -> program under tapstack run: {line}");
}

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

/// The seed's flows as programs: `server` under `tapstack run` with the
/// kernel's copy of `client`, and `client` under `tapstack run` with the
/// kernel's copy of `server`. Both print the echo they get.
fn seed_flows(d: &Daemon, server: &[&str], client: &[&str], ports: (&str, &str), msg: &str) {
    let mut args: Vec<&str> = server.to_vec();
    args.extend([ports.0, "1"]);
    let mut srv = d.spawn(&args);
    srv.wait_line("listening", Duration::from_secs(10));
    let mut cargs: Vec<&str> = client.to_vec();
    cargs.extend([STACK_IP, ports.0, msg]);
    let out = d.ns.run(&cargs, T);
    assert_eq!(
        out.stdout, msg,
        "kernel {client:?} -> {server:?} under run: {out:#?}"
    );
    let s = srv.finish(Duration::from_secs(10));
    assert!(s.success(), "{server:?} under run: {s:#?}");

    let mut args: Vec<&str> = server.to_vec();
    args.extend([ports.1, "1"]);
    let mut srv = d.ns.spawn(&args);
    srv.wait_line("listening", Duration::from_secs(10));
    let mut cargs: Vec<&str> = client.to_vec();
    cargs.extend([HOST_IP, ports.1, msg]);
    let out = d.run(&cargs, T);
    assert_eq!(
        out.stdout, msg,
        "{client:?} under run -> kernel {server:?}: {out:#?}"
    );
    assert!(srv.finish(Duration::from_secs(10)).success());
}

#[test]
fn c_and_python_examples_under_run() {
    if !require_root() {
        return;
    }
    let d = Daemon::start("dexamples");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut bins = Vec::new();
    for name in [
        "tcp_echo_server",
        "tcp_echo_client",
        "udp_echo_server",
        "udp_echo_client",
    ] {
        let out_bin = scratch(&format!("example-{name}"));
        let out = run_cmd(
            {
                let mut c = Command::new("cc");
                c.args(["-O2", "-Wall", "-Werror", "-o"])
                    .arg(&out_bin)
                    .arg(src.join("c").join(format!("{name}.c")));
                c
            },
            b"",
            T,
        );
        assert!(out.success(), "cc {name}.c: {out:#?}");
        bins.push(out_bin.to_str().unwrap().to_string());
    }
    let py_ex = |n: &str| src.join("python").join(n).to_str().unwrap().to_string();
    let msg = "hello, seed";
    seed_flows(&d, &[&bins[0]], &[&bins[1]], ("7700", "7701"), msg);
    seed_flows(&d, &[&bins[2]], &[&bins[3]], ("7702", "7703"), msg);
    let (ts, tc) = (py_ex("tcp_echo_server.py"), py_ex("tcp_echo_client.py"));
    seed_flows(
        &d,
        &["python3", &ts],
        &["python3", &tc],
        ("7704", "7705"),
        msg,
    );
    let (us, uc) = (py_ex("udp_echo_server.py"), py_ex("udp_echo_client.py"));
    seed_flows(
        &d,
        &["python3", &us],
        &["python3", &uc],
        ("7706", "7707"),
        msg,
    );
}

/// The Rust client library from this (host-namespace) process: only the
/// control socket file is shared; all traffic is the stack's, inside
/// the test's namespace.
#[test]
fn rust_client_library_talks_to_the_daemon() {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use tapstack::client::{Api, TcpListener, TcpStream, UdpSocket};

    if !require_root() {
        return;
    }
    let d = Daemon::start("dclient");
    let api = Api::connect(&d.api).expect("connect to the daemon");

    // TcpStream to a kernel server: data, half-close, reply.
    let mut ksrv =
        d.ns.spawn(&["python3", &py("tcp.py"), "server", "7800", "20"]);
    ksrv.wait_line("ready=1", Duration::from_secs(10));
    let mut s = TcpStream::connect(&api, "10.0.0.1:7800").expect("connect");
    assert!(s.as_raw_fd() >= 0);
    assert_eq!(s.peer_addr().unwrap().to_string(), "10.0.0.1:7800");
    s.write_all(b"from the client library").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    assert_eq!(got, "reply:from the client library");
    assert_eq!(
        ksrv.finish(Duration::from_secs(5)).kv()["eof_before_reply"],
        "1"
    );

    // TcpListener: a kernel client's echo through an accepted stream.
    let l = TcpListener::bind(&api, "0.0.0.0:7801").expect("bind");
    let server = std::thread::spawn(move || {
        let (mut c, peer) = l.accept().expect("accept");
        let mut buf = Vec::new();
        c.read_to_end(&mut buf).unwrap();
        c.write_all(&buf).unwrap();
        peer
    });
    let out = d.ns.run(
        &[
            "python3",
            &py("tcp.py"),
            "halfclose",
            STACK_IP,
            "7801",
            "100000",
            "3",
        ],
        T,
    );
    assert_eq!(out.num("equal"), 1, "{out:#?}");
    assert_eq!(server.join().unwrap().ip().to_string(), HOST_IP);

    // UdpSocket: a datagram to a kernel server and its answer.
    let mut usrv =
        d.ns.spawn(&["python3", &py("daemon.py"), "udpserver", "10.0.0.1", "7802"]);
    usrv.wait_line("ready=1", Duration::from_secs(10));
    let u = UdpSocket::bind(&api, "0.0.0.0:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    u.send_to(b"from rust", "10.0.0.1:7802").unwrap();
    let mut buf = [0u8; 100];
    let (n, from) = u.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"from kernel");
    assert_eq!(from.to_string(), "10.0.0.1:7802");
    assert!(
        usrv.finish(Duration::from_secs(5))
            .stdout
            .contains("got=from rust")
    );
}

/// `tapstack echo` serves one demo service through its own daemon API
/// (the client library, as another process would).
#[test]
fn echo_serves_a_service_through_the_daemon_api() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("dapiecho");
    let api = format!("/tmp/{}.sock", ns.name);
    let _stack = StackProc::echo(&ns, &["--api", &api]);
    let out = kernel_client_ns(&ns, &["nc", "-N", STACK_IP, "2007"], b"through the api");
    assert_eq!(out.stdout, "through the api", "{out:#?}");
    let _ = std::fs::remove_file(&api);
}

fn kernel_client_ns(ns: &Netns, args: &[&str], stdin: &[u8]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = ns.run_stdin(args, stdin, T);
        if out.success() || Instant::now() >= deadline || !out.stdout.is_empty() {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Each thread has its own control connection; it closes when the thread
/// ends (a thread-per-request server must not leak one per request).
#[test]
fn thread_control_connections_close_and_dups_work() {
    if !require_root() {
        return;
    }
    let d = Daemon::start("dthreads");
    let mut usrv =
        d.ns.spawn(&["python3", &py("daemon.py"), "udpserver", "10.0.0.1", "7999"]);
    usrv.wait_line("ready=1", Duration::from_secs(10));
    let out = d.run(&["python3", &py("daemon.py"), "threads", "100"], T);
    assert!(out.success(), "{out:#?}");
    assert_eq!(
        out.kv()["dup_udp"],
        "reply",
        "a dup()ed UDP socket: {out:#?}"
    );
    let (before, after) = (out.num("fds_before"), out.num("fds_after"));
    assert!(
        after <= before + 2,
        "descriptors grew from {before} to {after}"
    );
}

/// `examples/tokio_echo.rs` (a tokio server on the client library's
/// descriptors, `AsyncFd`) under a daemon: 16 concurrent kernel clients
/// each send 256 KiB and half-close; each must read back exactly its bytes.
#[test]
fn tokio_example_echoes_for_concurrent_kernel_clients() {
    if !require_root() {
        return;
    }
    // scripts/test.sh builds it beside the binaries.
    let example = Path::new(bin())
        .with_file_name("examples")
        .join("tokio_echo");
    assert!(
        example.exists(),
        "{} is missing: cargo build --release -p tapstack --example tokio_echo",
        example.display()
    );
    let d = Daemon::start("dtokio");
    let env_api = format!("TAPSTACK_API={}", d.api);
    let mut srv =
        d.ns.spawn(&["env", &env_api, example.to_str().unwrap(), "7900"]);
    srv.wait_line("ready", Duration::from_secs(10));
    let out = d.ns.run(
        &[
            "python3",
            &py("tcp.py"),
            "many",
            STACK_IP,
            "7900",
            "16",
            "262144",
            "11",
            "60",
            "15",
        ],
        Duration::from_secs(90),
    );
    assert_eq!(out.num("ok"), 16, "{out:#?}\nstack:\n{}", d.stderr());
    assert_eq!(out.num("failed"), 0, "{out:#?}");
}
