//! Kernel tests of the daemon: unmodified programs (curl, nc, python3,
//! iperf3) run under `tapstack run` with their sockets on the stack, the
//! kernel's own tools on the other side of the TAP, each test in its own
//! network namespace. Transfers are checked byte for byte (SHA-256).
//!
//! By theme: `transfers` (programs moving data), `lifecycle` (errnos,
//! killed clients, hostile control messages, daemon shutdown), `clients`
//! (the examples, the Rust client library, the daemon API of `echo`).

#[path = "../common/mod.rs"]
mod common;

mod clients;
mod lifecycle;
mod transfers;

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

/// Runs a kernel-side client until it connects (the program under
/// `tapstack run` may not be listening yet: a refusal is retried, bounded).
fn kernel_client(d: &Daemon, args: &[&str], stdin: &[u8]) -> Output {
    kernel_client_ns(&d.ns, args, stdin)
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

/// `kernel_client` in a namespace without a `Daemon`.
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
