//! Harness for the kernel tests: the stack runs on a TAP inside a network
//! namespace that the test creates, and the kernel's own tools (ping, nc,
//! tcpdump, python3 sockets) are the peers.
//!
//! Everything here is bounded: every wait has a deadline, every child is
//! killed in `Drop`, and every namespace is removed in `Drop` (with any
//! process still inside it). Nothing touches the host namespace.
//!
//! Adding a test: `if !require_root() { return; }`, then
//! `let ns = Netns::new("name"); let stack = StackProc::echo(&ns);` and run
//! peers with `ns.run(&[...], timeout)`. TCP tests use the same pieces.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The stack's address, the kernel side's address and the stack's MAC
/// (the CLI defaults).
pub const STACK_IP: &str = "10.0.0.2";
pub const HOST_IP: &str = "10.0.0.1";
pub const STACK_MAC: &str = "02:74:61:70:00:02";
/// TAP name the tests use inside their namespaces.
pub const TAP: &str = "ts0";

/// How long `wait_ready` waits for the stack to answer ping.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tapstack")
}

/// Path of a helper script under `tests/py/`.
pub fn py(script: &str) -> String {
    format!("{}/tests/py/{script}", env!("CARGO_MANIFEST_DIR"))
}

/// A scratch directory for this test binary (under `target/`).
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kernel-tests");
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir.join(name)
}

/// True if the kernel tests can run. Under `CI=true` they must run, so
/// not being root is a failure there; elsewhere the test is skipped.
pub fn require_root() -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "kernel tests need root and CI=true says they must run: run them as root (sudo scripts/test.sh)"
        );
    }
    println!("skipping: needs root (run: sudo scripts/test.sh)");
    false
}

/// Panics, naming `tool` and the package that has it, unless `tool` is a
/// program on PATH: a missing tool must fail the test by name, not as a
/// timeout further on (a `ping` that cannot run looks like a stack that
/// does not answer).
pub fn need_tool(tool: &str) {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(tool)).is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
    });
    if !found {
        panic!(
            "this test needs `{tool}`, which is not on PATH: install {} \
             (sudo scripts/test.sh installs everything scripts/deps.txt lists)",
            package_of(tool)
        );
    }
}

/// Panics, naming `module`, unless python3 can import it.
pub fn need_python_module(module: &str) {
    need_tool("python3");
    let out = run_cmd(
        Command::new_with("python3", &["-c", &format!("import {module}")]),
        b"",
        Duration::from_secs(20),
    );
    if !out.success() {
        panic!(
            "this test needs the python module `{module}`, which python3 cannot import: \
             install {} (sudo scripts/test.sh installs everything scripts/deps.txt lists)",
            package_of(module)
        );
    }
}

/// Where `name` comes from, per scripts/deps.txt (`KIND NAME PACKAGE`).
fn package_of(name: &str) -> String {
    let deps = std::fs::read_to_string(format!("{}/scripts/deps.txt", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_default();
    deps.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                ["cmd", n, pkg, ..] if *n == name => Some(format!("Debian package {pkg}")),
                ["py", n, pkg, ..] if *n == name => Some(format!("pip install '{pkg}'")),
                ["cargo", n, pkg, ..] if *n == name => Some(format!("cargo install {pkg}")),
                _ => None,
            }
        })
        .unwrap_or_else(|| "it (and add it to scripts/deps.txt)".to_string())
}

/// Whether we run as root (the kernel tests need it).
pub fn is_root() -> bool {
    effective_uid() == Some(0)
}

/// The effective uid, from /proc (the second field of `Uid:`).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// What a finished command left behind.
#[derive(Debug)]
pub struct Output {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl Output {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }

    /// `key=value` lines of stdout (what the python helpers print).
    pub fn kv(&self) -> BTreeMap<String, String> {
        self.stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    }

    /// A number from `kv()`; panics with the whole output if missing.
    pub fn num(&self, key: &str) -> u64 {
        self.kv()
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no numeric {key:?} in output: {self:#?}"))
    }
}

/// Runs `cmd` with `stdin` as its input, killing it after `timeout`.
/// Waits up to `timeout` for `child` to exit, killing it then. Returns
/// its status (None if it could not be had) and whether it was killed.
fn wait_or_kill(child: &mut Child, timeout: Duration) -> (Option<ExitStatus>, bool) {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return (Some(s), false),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                return (child.wait().ok(), true);
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(_) => return (None, false),
        }
    }
}

pub fn run_cmd(mut cmd: Command, stdin: &[u8], timeout: Duration) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_t = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let (status, timed_out) = wait_or_kill(&mut child, timeout);
    let _ = writer.join();
    // A grandchild could hold the pipes open: do not wait on it forever.
    let stdout = join_bounded(out_t);
    let stderr = join_bounded(err_t);
    Output {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        timed_out,
    }
}

fn join_bounded(t: thread::JoinHandle<Vec<u8>>) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !t.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    if t.is_finished() {
        t.join().unwrap_or_default()
    } else {
        Vec::new()
    }
}

/// A network namespace owned by one test, removed in `Drop`.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates `ts<pid>-<n>-<test>` with loopback up.
    pub fn new(test: &str) -> Netns {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let tag: String = test
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(16)
            .collect();
        let name = format!("ts{}-{n}-{tag}", std::process::id());
        let out = run_cmd(
            Command::new_with("ip", &["netns", "add", &name]),
            b"",
            Duration::from_secs(10),
        );
        assert!(
            out.success(),
            "`ip netns add {name}` failed (kernel tests need network namespaces): {out:?}"
        );
        let ns = Netns { name };
        let lo = ns.run(&["ip", "link", "set", "lo", "up"], Duration::from_secs(10));
        assert!(lo.success(), "lo up failed: {lo:?}");
        ns
    }

    /// `ip netns exec NAME args...` as a Command (the program is exec'd
    /// directly, so the child's pid is the program's pid). A program not on
    /// PATH fails the test here, by name.
    pub fn command(&self, args: &[&str]) -> Command {
        if let Some(prog) = args.first().filter(|p| !p.contains('/')) {
            need_tool(prog);
        }
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(args);
        cmd
    }

    /// Runs a command in the namespace with a timeout and captures output.
    pub fn run(&self, args: &[&str], timeout: Duration) -> Output {
        run_cmd(self.command(args), b"", timeout)
    }

    pub fn run_stdin(&self, args: &[&str], stdin: &[u8], timeout: Duration) -> Output {
        run_cmd(self.command(args), stdin, timeout)
    }

    /// Starts a long-running helper in the namespace (stdout piped, so the
    /// caller can wait for a "ready" line); killed in `Drop` of `Bg`.
    pub fn spawn(&self, args: &[&str]) -> Bg {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {args:?}: {e}"));
        Bg::new(child)
    }

    /// `ping -c1 -W1` to `ip` from the namespace.
    pub fn ping_once(&self, ip: &str) -> bool {
        self.run(&["ping", "-n", "-c1", "-W1", ip], Duration::from_secs(3))
            .success()
    }

    fn pids(&self) -> Vec<i32> {
        let out = run_cmd(
            Command::new_with("ip", &["netns", "pids", &self.name]),
            b"",
            Duration::from_secs(5),
        );
        out.stdout
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Same as `ip netns pids NAME | xargs -r kill -9`, a few rounds in
        // case something forked meanwhile.
        for _ in 0..5 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = run_cmd(
            Command::new_with("ip", &["netns", "del", &self.name]),
            b"",
            Duration::from_secs(10),
        );
    }
}

trait CommandExt {
    fn new_with(prog: &str, args: &[&str]) -> Command;
}

impl CommandExt for Command {
    fn new_with(prog: &str, args: &[&str]) -> Command {
        let mut c = Command::new(prog);
        c.args(args);
        c
    }
}

/// A background helper process, killed in `Drop`. Its stdout is collected
/// by a thread so it never blocks on a full pipe.
pub struct Bg {
    child: Option<Child>,
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Bg {
    fn new(mut child: Child) -> Bg {
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut pipe = child.stdout.take().expect("piped stdout");
        let sink = stdout.clone();
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Bg {
            child: Some(child),
            stdout,
            reader: Some(reader),
        }
    }

    /// Waits (bounded) until stdout has a line containing `marker`;
    /// returns that line. Panics with the helper's output if it never comes.
    pub fn wait_line(&mut self, marker: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self
                .stdout
                .lock()
                .unwrap()
                .lines()
                .find(|l| l.contains(marker))
            {
                return line.to_string();
            }
            let exited = matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(Some(_))));
            if exited || Instant::now() >= deadline {
                let out = self.finish(Duration::from_millis(100));
                panic!("helper never printed {marker:?}: {out:#?}");
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits up to `timeout` for the helper to exit by itself (then kills
    /// it) and returns everything it printed.
    pub fn finish(&mut self, timeout: Duration) -> Output {
        let mut child = self.child.take().expect("already finished");
        let (status, timed_out) = wait_or_kill(&mut child, timeout);
        if let Some(r) = self.reader.take() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !r.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
        }
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        Output {
            status,
            stdout: self.stdout.lock().unwrap().clone(),
            stderr,
            timed_out,
        }
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A running `tapstack` inside a namespace; SIGTERM (then SIGKILL) in
/// `Drop`. Its stderr goes to a file so the exit counters can be read.
pub struct StackProc {
    child: Option<Child>,
    stderr_path: PathBuf,
    api: String,
    pub ns: String,
    pub tap: String,
}

impl StackProc {
    /// Spawns `tapstack --tap TAP <args...>` in `ns` without waiting.
    /// `args` are global flags followed by the subcommand.
    pub fn spawn(ns: &Netns, tap: &str, args: &[&str]) -> StackProc {
        StackProc::spawn_via(ns, &[], tap, args)
    }

    /// As `spawn`, started through `prefix` (e.g. `setpriv ...`), which
    /// must exec tapstack so that the child's pid is tapstack's.
    pub fn spawn_via(ns: &Netns, prefix: &[&str], tap: &str, args: &[&str]) -> StackProc {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let stderr_path = scratch(&format!("{}-{tap}-{n}.stderr", ns.name));
        let file = std::fs::File::create(&stderr_path).expect("create stderr file");
        let mut argv = prefix.to_vec();
        argv.extend_from_slice(&[bin(), "--tap", tap]);
        // The default control socket path is per TAP name, and every test
        // uses the same TAP name in its own namespace: give each stack its
        // own path (in /tmp, which an unprivileged stack can write).
        let default_api = format!("/tmp/tapstack-test-{}-{n}.sock", ns.name);
        let given = args
            .iter()
            .position(|a| *a == "--api")
            .map(|i| args.get(i + 1).copied().unwrap_or_default());
        if given.is_none() {
            argv.extend_from_slice(&["--api", &default_api]);
        }
        let api = given.map_or_else(|| default_api.clone(), str::to_string);
        let mut cmd = ns.command(&argv);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start tapstack: {e}"));
        StackProc {
            child: Some(child),
            stderr_path,
            api,
            ns: ns.name.clone(),
            tap: tap.to_string(),
        }
    }

    /// `tapstack --tap ts0 [extra...] echo`, waited until it answers ping.
    pub fn echo(ns: &Netns, extra: &[&str]) -> StackProc {
        let mut args: Vec<&str> = extra.to_vec();
        args.push("echo");
        let mut s = StackProc::spawn(ns, TAP, &args);
        s.wait_ready(ns);
        s
    }

    /// `tapstack ss -tia` against this stack, as a shell command line (for
    /// a client script to run when it sees a stall).
    pub fn ss_command(&self) -> String {
        format!("{} ss -tia --api {}", bin(), self.api)
    }

    pub fn stderr_now(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Polls (bounded) until the kernel side can ping the stack. Panics
    /// with the stack's stderr if it exits or never answers.
    pub fn wait_ready(&mut self, ns: &Netns) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().ok().flatten() {
                panic!(
                    "tapstack exited early ({status}); stderr:\n{}",
                    self.stderr_now()
                );
            }
            if ns.ping_once(STACK_IP) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "tapstack did not answer ping within {READY_TIMEOUT:?}; stderr:\n{}",
                    self.stderr_now()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGTERM, wait (bounded), and return the exit status and stderr.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let status = self.terminate();
        (status, self.stderr_now())
    }

    fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("stack already stopped");
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Some(s)) = child.try_wait() {
                return s;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                return child.wait().expect("wait for tapstack");
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for StackProc {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.terminate();
        }
    }
}

/// The `  name   value` lines after `tapstack: counters` in stderr.
pub fn counters(stderr: &str) -> BTreeMap<String, u64> {
    stderr
        .lines()
        .skip_while(|l| !l.starts_with("tapstack: counters"))
        .skip(1)
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (k, v) = (it.next()?, it.next()?);
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

pub fn counter(stderr: &str, name: &str) -> u64 {
    counters(stderr).get(name).copied().unwrap_or(0)
}

/// Asserts a clean exit: status 0, counters printed, no panic.
pub fn assert_clean_exit(status: ExitStatus, stderr: &str) {
    assert!(
        status.success(),
        "tapstack exited with {status}; stderr:\n{stderr}"
    );
    assert_no_panic(stderr);
    assert!(
        stderr.contains("tapstack: counters"),
        "no counters in stderr:\n{stderr}"
    );
}

pub fn assert_no_panic(stderr: &str) {
    let lower = stderr.to_lowercase();
    assert!(
        !lower.contains("panicked") && !lower.contains("backtrace"),
        "tapstack panicked:\n{stderr}"
    );
}

/// `(transmitted, received)` from ping's summary line.
pub fn ping_summary(out: &str) -> (u64, u64) {
    let line = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary in:\n{out}"));
    let nums: Vec<u64> = line
        .split(',')
        .filter_map(|part| part.split_whitespace().next()?.parse().ok())
        .collect();
    (nums[0], nums[1])
}

/// Runs ping in `ns` and asserts every echo came back.
pub fn assert_ping_all(ns: &Netns, target: &str, args: &[&str], timeout: Duration) {
    let mut cmd = vec!["ping", "-n"];
    cmd.extend_from_slice(args);
    cmd.push(target);
    let out = ns.run(&cmd, timeout);
    let (tx, rx) = ping_summary(&out.stdout);
    assert!(
        tx > 0 && tx == rx && out.success(),
        "ping {args:?} {target}: {tx} sent, {rx} received: {out:#?}"
    );
}

/// Waits (bounded) until `path` exists.
pub fn wait_for_file(path: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}
