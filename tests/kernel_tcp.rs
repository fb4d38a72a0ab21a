//! Kernel tests for TCP (issue 4): nc and python3 sockets against the
//! stack's echo/discard/chargen, and `tapstack connect` against kernel
//! servers. Every check is byte-exact; throughput is printed, never
//! asserted. Need root; see tests/common/mod.rs.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const MIB: u64 = 1 << 20;

/// Runs `tests/py/tcp.py args...` in `ns`; asserts it exited cleanly.
fn tcp_py(ns: &Netns, args: &[&str], timeout: Duration) -> Output {
    tcp_py_env(ns, &[], args, timeout)
}

/// As `tcp_py`, with `(name, value)` pairs added to its environment.
fn tcp_py_env(ns: &Netns, env: &[(&str, &str)], args: &[&str], timeout: Duration) -> Output {
    let script = py("tcp.py");
    let mut argv = vec!["python3", script.as_str()];
    argv.extend_from_slice(args);
    let mut cmd = ns.command(&argv);
    cmd.envs(env.iter().copied());
    let out = run_cmd(cmd, b"", timeout);
    assert!(out.success(), "tcp.py {args:?} failed: {out:#?}");
    out
}

/// SHA-256 of the seeded stream tcp.py sends (computed by tcp.py itself;
/// no traffic).
fn stream_sha(bytes: u64, seed: u64) -> String {
    let mut cmd = Command::new("python3");
    cmd.args([&py("tcp.py"), "sha", &bytes.to_string(), &seed.to_string()]);
    let out = run_cmd(cmd, b"", SECS(60));
    assert!(out.success(), "{out:#?}");
    out.kv()["sha"].clone()
}

fn sha256(data: &[u8]) -> String {
    let mut cmd = Command::new("sha256sum");
    cmd.arg("-");
    let out = run_cmd(cmd, data, SECS(10));
    assert!(out.success(), "{out:#?}");
    out.stdout.split_whitespace().next().unwrap().to_string()
}

fn mbit(bytes: u64, secs: f64) -> f64 {
    bytes as f64 * 8.0 / secs.max(1e-9) / 1e6
}

fn secs_of(out: &Output) -> f64 {
    out.kv()["secs"].parse().expect("secs")
}

/// Checks what `tcp.py echo` printed: `bytes` of the seeded stream went
/// out and the identical bytes came back, then EOF. Returns the seconds.
fn check_echo(out: &Output, bytes: u64, seed: u64) -> f64 {
    let kv = out.kv();
    let expected = stream_sha(bytes, seed);
    assert_eq!(out.num("sent"), bytes, "{out:#?}");
    assert_eq!(kv["sent_sha"], expected, "{out:#?}");
    assert_eq!(out.num("received"), bytes, "{out:#?}");
    assert_eq!(out.num("eof"), 1, "{out:#?}");
    assert_eq!(kv["recv_sha"], expected, "echo differs: {out:#?}");
    secs_of(out)
}

/// `tcp.py echo` of `bytes` (seed 42) from `client` to the stack's echo
/// port; `timeout` bounds the whole run, half of it each socket call.
fn run_echo(client: &Netns, bytes: u64, timeout: u64) -> f64 {
    let out = tcp_py(
        client,
        &[
            "echo",
            STACK_IP,
            "7",
            &bytes.to_string(),
            "42",
            &(timeout / 2).to_string(),
        ],
        SECS(timeout),
    );
    check_echo(&out, bytes, 42)
}

/// Stops the stack, asserts a clean exit, prints its TCP, fault and
/// device counters, and returns all its counters.
fn stop_and_print(stack: StackProc, name: &str) -> BTreeMap<String, u64> {
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
    let all = counters(&stderr);
    let tcp: Vec<String> = all
        .iter()
        .filter(|(k, _)| {
            ["tcp.", "fault.", "tx.", "rx."]
                .iter()
                .any(|p| k.starts_with(p))
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    eprintln!("{name}: {}", tcp.join(" "));
    all
}

fn gso_counters(c: &BTreeMap<String, u64>) -> [u64; 3] {
    ["rx.gso_frames", "tx.gso_frames", "tx.gso_segments"].map(|k| c.get(k).copied().unwrap_or(0))
}

/// The python echo client sends 100 MiB of seeded random data while a
/// second thread hashes the echo: both directions through the stack.
/// Returns the stack's exit counters.
fn echo_100mib(extra: &[&str], name: &str, timeout: u64) -> BTreeMap<String, u64> {
    let ns = Netns::new(name);
    let stack = StackProc::echo(&ns, extra);
    let bytes = 100 * MIB;
    let secs = run_echo(&ns, bytes, timeout);
    eprintln!(
        "{name}: 100 MiB echoed kernel->stack->kernel in {secs:.2} s: {:.0} Mbit/s each way",
        mbit(bytes, secs)
    );
    stop_and_print(stack, name)
}

#[test]
fn nc_echo_round_trip() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("ncecho");
    let stack = StackProc::echo(&ns, &[]);
    let out = ns.run_stdin(
        &["nc", "-N", "-w", "5", STACK_IP, "7"],
        b"hello tapstack over tcp\n",
        SECS(15),
    );
    assert!(out.success(), "{out:#?}");
    assert_eq!(out.stdout, "hello tapstack over tcp\n", "{out:#?}");
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
}

#[test]
fn echo_100mib_both_directions_sha256() {
    if !require_root() {
        return;
    }
    // TAP offloads are on by default: the kernel's TSO super-frames reach
    // the stack whole, and the echo leaves as GSO super-frames.
    let c = echo_100mib(&[], "echo100", 120);
    let [rx, tx, tx_segs] = gso_counters(&c);
    assert!(rx > 0, "no TSO super-frame received: {c:?}");
    assert!(
        tx > 0 && tx_segs >= 2 * tx,
        "no GSO super-frame sent: {c:?}"
    );
}

#[test]
fn echo_100mib_without_offload_sha256() {
    if !require_root() {
        return;
    }
    let c = echo_100mib(&["--no-offload"], "echoplain", 120);
    assert_eq!(gso_counters(&c), [0; 3], "--no-offload: {c:?}");
}

#[test]
fn echo_100mib_with_2pct_loss_sha256() {
    if !require_root() {
        return;
    }
    // Fault injection works on single frames, so it turns offloads off.
    let c = echo_100mib(&["--loss", "0.02", "--seed", "1"], "echoloss", 180);
    assert_eq!(gso_counters(&c), [0; 3], "offloads with --loss: {c:?}");
}

/// Client namespace -> router namespace -> stack, for loss on the router.
///
/// ```text
/// client ns: veth 10.1.0.1 ==== router ns: veth 10.1.0.2, TAP 10.0.0.1 ==== stack 10.0.0.2
/// ```
///
/// A drop in the *sending* host's output or egress hook is no real loss:
/// the kernel reports it back to its own TCP, and those hooks see GSO
/// super-packets of ~44 segments (testing-notes). On a router the
/// `forward` hook sees each frame after it crossed a link, from either
/// sender, and neither TCP can tell the drop from wire loss. The client's
/// veth has `gso_max_segs 1`, so it sends one segment per frame.
struct Routed {
    client: Netns,
    router: Netns,
    /// Veth names (client side, router side): unique per test process so
    /// the root-namespace check below cannot match someone else's.
    veth: (String, String),
}

const ROUTER_VETH_IP: &str = "10.1.0.2";
const NFT_TABLE: &str = "tsloss";

impl Routed {
    fn new(name: &str) -> Routed {
        need_tool("nft");
        let client = Netns::new(&format!("{name}c"));
        let router = Netns::new(&format!("{name}r"));
        let pid = std::process::id();
        let (va, vb) = (format!("tl{pid}a"), format!("tl{pid}b"));
        let ok = |ns: &Netns, args: &[&str]| {
            let out = ns.run(args, SECS(10));
            assert!(out.success(), "{args:?} in {}: {out:#?}", ns.name);
        };
        // Created inside the client namespace with its peer moved straight
        // into the router's: neither end ever exists in the root namespace.
        ok(
            &client,
            &[
                "ip",
                "link",
                "add",
                &va,
                "type",
                "veth",
                "peer",
                "name",
                &vb,
                "netns",
                &router.name,
            ],
        );
        ok(&client, &["ip", "addr", "add", "10.1.0.1/24", "dev", &va]);
        ok(
            &client,
            &["ip", "link", "set", &va, "gso_max_segs", "1", "up"],
        );
        ok(
            &client,
            &["ip", "route", "add", "10.0.0.0/24", "via", ROUTER_VETH_IP],
        );
        ok(
            &router,
            &[
                "ip",
                "addr",
                "add",
                &format!("{ROUTER_VETH_IP}/24"),
                "dev",
                &vb,
            ],
        );
        ok(&router, &["ip", "link", "set", &vb, "up"]);
        ok(&router, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        let mut ip = Command::new("ip");
        ip.args(["-o", "link", "show"]);
        let root = run_cmd(ip, b"", SECS(10));
        assert!(
            root.success() && !root.stdout.contains(&va) && !root.stdout.contains(&vb),
            "a test veth is in the root namespace: {root:#?}"
        );
        Routed {
            client,
            router,
            veth: (va, vb),
        }
    }

    /// Drops `pct`% of the TCP frames the router forwards, each direction
    /// counted separately; also counts forwarded packets longer than the
    /// MTU (a GSO/GRO super-packet would make the loss bursty).
    fn drop_tcp(&self, pct: u32) {
        let vb = &self.veth.1;
        let rules = format!(
            "table ip {NFT_TABLE} {{
  chain lossy {{
    type filter hook forward priority filter; policy accept;
    ip length > 1500 counter comment \"over_mtu\"
    iifname \"{vb}\" meta l4proto tcp counter comment \"k2s_seen\"
    iifname \"{vb}\" meta l4proto tcp numgen random mod 100 < {pct} counter drop comment \"k2s_drop\"
    iifname \"{TAP}\" meta l4proto tcp counter comment \"s2k_seen\"
    iifname \"{TAP}\" meta l4proto tcp numgen random mod 100 < {pct} counter drop comment \"s2k_drop\"
  }}
}}
"
        );
        let out = self
            .router
            .run_stdin(&["nft", "-f", "-"], rules.as_bytes(), SECS(10));
        assert!(out.success(), "nft rules: {out:#?}");
    }

    /// Packet counts of the rules, by comment.
    fn nft_counters(&self) -> BTreeMap<String, u64> {
        let out = self
            .router
            .run(&["nft", "list", "table", "ip", NFT_TABLE], SECS(10));
        assert!(out.success(), "{out:#?}");
        out.stdout
            .lines()
            .filter_map(|l| {
                let (_, comment) = l.split_once("comment \"")?;
                let (_, after) = l.split_once("counter packets ")?;
                let n = after.split_whitespace().next()?.parse().ok()?;
                Some((comment.trim_end_matches('"').to_string(), n))
            })
            .collect()
    }
}

/// Issue 5: 100 MiB each way through the echo service while the router
/// drops 5% of the TCP frames in each direction, byte-exact.
#[test]
fn echo_100mib_with_5pct_routed_loss_sha256() {
    if !require_root() {
        return;
    }
    routed_loss_echo("loss5", &[]);
}

/// The same with BBR as the stack's congestion control.
#[test]
fn echo_100mib_with_5pct_routed_loss_bbr_sha256() {
    if !require_root() {
        return;
    }
    let c = routed_loss_echo("loss5bbr", &["--cc", "bbr"]);
    assert!(c.get("tcp.rack_lost").copied().unwrap_or(0) > 0, "{c:?}");
}

fn routed_loss_echo(name: &str, extra: &[&str]) -> BTreeMap<String, u64> {
    let net = Routed::new(name);
    // Single frames from the stack too: a GSO super-frame would be
    // forwarded (and dropped) whole, i.e. ~40 segments at a time.
    let mut args = vec!["--gateway", HOST_IP, "--no-offload"];
    args.extend_from_slice(extra);
    let stack = StackProc::echo(&net.router, &args);
    // ICMP is not dropped: once ping crosses the router both ways, the
    // route and both ARP entries are in place.
    assert!(
        (0..10).any(|_| net.client.ping_once(STACK_IP)),
        "the client namespace cannot reach the stack through the router; stack stderr:\n{}",
        stack.stderr_now()
    );
    net.drop_tcp(5);
    let bytes = 100 * MIB;
    // Measured 4-6 s here with RACK (176 s before it); the bound leaves
    // room for a slower, busier machine.
    let secs = run_echo(&net.client, bytes, 300);
    let c = net.nft_counters();
    eprintln!(
        "routed 5% loss: 100 MiB echoed in {secs:.1} s: {:.1} Mbit/s each way; nft: {c:?}",
        mbit(bytes, secs)
    );
    assert_eq!(c["over_mtu"], 0, "super-packets were forwarded: {c:?}");
    for dir in ["k2s", "s2k"] {
        let (seen, dropped) = (c[&format!("{dir}_seen")], c[&format!("{dir}_drop")]);
        // At least one full-size frame per MSS of data went this way (so
        // every drop is one frame), and the drop rate is near 5%.
        assert!(seen >= bytes / 1460, "{dir}: only {seen} frames: {c:?}");
        let pct = dropped as f64 * 100.0 / seen as f64;
        assert!(
            (1.0..10.0).contains(&pct),
            "{dir}: {dropped} of {seen} frames dropped ({pct:.2}%): {c:?}"
        );
    }
    stop_and_print(stack, &format!("routed 5% loss {extra:?}"))
}

#[test]
fn discard_and_chargen_100mib() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("dischar");
    let stack = StackProc::echo(&ns, &[]);
    let bytes = 100 * MIB;
    let out = tcp_py(
        &ns,
        &["discard", STACK_IP, "9", &bytes.to_string(), "7"],
        SECS(90),
    );
    assert_eq!(out.num("sent"), bytes, "{out:#?}");
    assert_eq!(out.num("extra"), 0, "discard sent data back: {out:#?}");
    eprintln!(
        "discard: 100 MiB kernel->stack in {:.2} s: {:.0} Mbit/s",
        secs_of(&out),
        mbit(bytes, secs_of(&out))
    );
    let out = tcp_py(
        &ns,
        &["chargen", STACK_IP, "19", &bytes.to_string()],
        SECS(90),
    );
    assert_eq!(out.num("received"), bytes, "{out:#?}");
    assert_eq!(
        out.kv()["bad_at"],
        "-1",
        "chargen stream differs from RFC 864: {out:#?}"
    );
    eprintln!(
        "chargen: 100 MiB stack->kernel in {:.2} s: {:.0} Mbit/s",
        secs_of(&out),
        mbit(bytes, secs_of(&out))
    );
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
}

#[test]
fn connect_to_kernel_server_with_half_close() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("tcpconn");
    let script = py("tcp.py");
    let mut server = ns.spawn(&["python3", &script, "server", "9000", "20"]);
    server.wait_line("ready=1", SECS(10));
    // 300 kB of ASCII (stdout is compared as text): stdin is streamed in
    // many segments, not one.
    let mut input: Vec<u8> = (0..300_000u32)
        .map(|i| {
            if i % 80 == 79 {
                b'\n'
            } else {
                b'!' + (i * 7 % 94) as u8
            }
        })
        .collect();
    input.extend_from_slice(b"\nend of input\n");
    let client = ns.run_stdin(
        &[bin(), "--tap", TAP, "connect", &format!("{HOST_IP}:9000")],
        &input,
        SECS(30),
    );
    let got = server.finish(SECS(10));
    assert!(got.success(), "server: {got:#?}\nclient: {client:#?}");
    let kv = got.kv();
    assert_eq!(got.num("received_len"), input.len() as u64, "{got:#?}");
    assert_eq!(
        kv["received_sha"],
        sha256(&input),
        "server got other bytes: {got:#?}"
    );
    assert_eq!(
        got.num("eof_before_reply"),
        1,
        "the half-close was not seen: {got:#?}"
    );
    assert!(kv["peer"].starts_with(&format!("{STACK_IP}:")), "{got:#?}");
    assert!(client.success(), "client: {client:#?}");
    let mut want = b"reply:".to_vec();
    want.extend_from_slice(&input);
    assert!(
        client.stdout.as_bytes() == want.as_slice(),
        "client stdout ({} bytes) is not the server's reply ({} bytes); stderr:\n{}",
        client.stdout.len(),
        want.len(),
        client.stderr
    );
    assert_no_panic(&client.stderr);
}

#[test]
fn closed_port_refuses_both_ways() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("tcprefused");
    let stack = StackProc::echo(&ns, &[]);
    let out = tcp_py(&ns, &["refused", STACK_IP, "4444"], SECS(15));
    assert_eq!(out.kv()["result"], "refused", "{out:#?}");
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);

    // The stack as client: nothing listens on the kernel's port 4445.
    let client = ns.run_stdin(
        &[bin(), "--tap", TAP, "connect", &format!("{HOST_IP}:4445")],
        b"nobody home\n",
        SECS(20),
    );
    assert!(!client.timed_out, "{client:#?}");
    assert!(
        client.status.is_some_and(|s| !s.success()),
        "connect to a closed port exited 0: {client:#?}"
    );
    let refused: Vec<&str> = client
        .stderr
        .lines()
        .filter(|l| l.to_lowercase().contains("connection refused"))
        .collect();
    assert_eq!(refused.len(), 1, "want one refusal line: {client:#?}");
    assert!(refused[0].starts_with("tapstack: "), "{client:#?}");
    assert_eq!(client.stdout, "", "{client:#?}");
    assert_no_panic(&client.stderr);
}

#[test]
fn half_close_still_reads_full_echo() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("halfclose");
    let stack = StackProc::echo(&ns, &[]);
    // 1 MiB: more than the buffers hold, so most of the echo flows after
    // our FIN.
    let out = tcp_py(
        &ns,
        &["halfclose", STACK_IP, "7", &MIB.to_string(), "3"],
        SECS(30),
    );
    assert_eq!(out.num("received"), MIB, "{out:#?}");
    assert_eq!(out.num("equal"), 1, "{out:#?}");
    assert_eq!(out.num("eof"), 1, "{out:#?}");
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
}

#[test]
fn echo_200_concurrent_connections() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("many");
    let stack = StackProc::echo(&ns, &[]);
    let start = Instant::now();
    let out = tcp_py(
        &ns,
        &["many", STACK_IP, "7", "200", "65536", "11"],
        SECS(120),
    );
    assert_eq!(out.num("ok"), 200, "{out:#?}");
    assert_eq!(out.num("failed"), 0, "{out:#?}");
    eprintln!(
        "200 concurrent echo connections x 64 KiB in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
}

/// The soak's bound on a connection that moves no byte, in seconds.
const STALL: &str = "15";

/// Issue 13 faults soak: 11 rounds of 16 parallel 16 MiB echo transfers
/// through the stack's fault injector (loss 5%, duplication 2%,
/// reordering 5%, corruption 1%): every echo byte-exact, and no connection
/// moves no byte for `STALL` s (its socket timeout). `TAPSTACK_SOAK_ROUNDS`
/// changes the count, `TAPSTACK_SOAK_FIRST` replays from a round (its
/// fault seed). It once stalled about one round in 30: a kernel-side
/// capture showed the kernel waiting out a 3 s RTO (its handshake had
/// needed a retransmission, RFC 6298 5.7) because every ACK of ours rode on
/// a full-sized echo segment with no room for SACK blocks, so it never
/// learnt that later segments had arrived; the blocks now follow in a bare
/// ACK (`src/stack/tcp/output.rs`). Under load the TAP's 1000-frame queue
/// also overflowed; the stack asks for 10,000. Since: 185 rounds, no stall.
#[test]
fn echo_faults_soak_16_parallel_16mib() {
    if !require_root() {
        return;
    }
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    // TAPSTACK_SOAK_FIRST replays from a given round (its fault seed).
    let first = env("TAPSTACK_SOAK_FIRST", 0);
    for round in first..first + env("TAPSTACK_SOAK_ROUNDS", 11) {
        let ns = Netns::new(&format!("soak{round}"));
        let seed = (round + 1).to_string();
        let faults = [
            "--loss",
            "0.05",
            "--dup",
            "0.02",
            "--reorder",
            "0.05",
            "--corrupt",
            "0.01",
        ];
        let stack = StackProc::echo(&ns, &[&faults[..], &["--seed", &seed]].concat());
        let start = Instant::now();
        let bytes = (16 * MIB).to_string();
        // A stalled connection's report includes the stack's view of it.
        let stall_cmd = stack.ss_command();
        // A connection silent for STALL s fails. At these rates a
        // retransmission or its ACK is lost about one time in eight, and
        // a round has ~40 RTOs: five failures in a row (0.2 + 0.4 + 0.8 +
        // 1.6 + 3.2 s of backoff, as Linux's) come about once in a
        // hundred soaks and failed CI with a 5 s bound (both ends' state
        // showed plain backoff); six (12.6 s) about once in a thousand.
        let out = tcp_py_env(
            &ns,
            &[("STALL_CMD", &stall_cmd)],
            &["many", STACK_IP, "7", "16", &bytes, &seed, "600", STALL],
            SECS(660),
        );
        eprintln!(
            "soak round {round}: 16 x 16 MiB echoed in {:.1} s",
            start.elapsed().as_secs_f64()
        );
        let c = stop_and_print(stack, &format!("soak{round}"));
        assert_eq!(out.num("ok"), 16, "round {round}: {out:#?}");
        assert_eq!(out.num("failed"), 0, "round {round}: {out:#?}");
        // Corrupted frames reached TCP and were dropped there.
        assert!(c.get("tcp.bad_checksum").copied().unwrap_or(0) > 0, "{c:?}");
    }
}

/// Our receiver with a slow, then fast, application: `tapstack connect`
/// writes into a pipe whose reader pauses 0.5 s, so the window closes;
/// when the reader drains, the window update must go out at once, not
/// wait for the kernel's persist probe (~200 ms per window, the smoltcp
/// stall). Checked on the wire: no gap >= 150 ms in the kernel's data
/// after the reader resumed.
#[test]
fn slow_reader_gets_prompt_window_updates() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("slowread");
    let script = py("tcp.py");
    let bytes = 64 * MIB;
    let mut server = ns.spawn(&[
        "python3",
        &script,
        "sender",
        "9100",
        &bytes.to_string(),
        "5",
        "60",
    ]);
    server.wait_line("ready=1", SECS(10));
    let pcap = scratch(&format!("{}-slowreader.pcap", ns.name));
    let errfile = scratch(&format!("{}-slowreader.stderr", ns.name));
    let shell = format!(
        "{} --tap {TAP} --pcap {} connect {HOST_IP}:9100 </dev/null 2>{} | python3 {script} slowreader 0.5",
        bin(),
        pcap.display(),
        errfile.display()
    );
    let out = ns.run(&["sh", "-c", &shell], SECS(90));
    let sent = server.finish(SECS(10));
    let stderr = std::fs::read_to_string(&errfile).unwrap_or_default();
    assert!(out.success(), "reader: {out:#?}\nconnect stderr:\n{stderr}");
    assert_eq!(out.num("received"), bytes, "{out:#?}\n{stderr}");
    assert_eq!(out.kv()["sha"], stream_sha(bytes, 5), "{out:#?}\n{sent:#?}");
    assert_no_panic(&stderr);
    // `connect` prints no counters: the window updates are judged on the
    // wire below (without them the kernel waits for its persist timer,
    // a gap of ~200 ms).

    let gaps = tcp_py(
        &ns,
        &[
            "pcapgaps",
            pcap.to_str().unwrap(),
            HOST_IP,
            STACK_IP,
            "0.15",
        ],
        SECS(60),
    );
    let _ = std::fs::remove_file(&pcap);
    let kv = gaps.kv();
    let resumed: f64 = out.kv()["resumed_at"].parse().unwrap();
    let last: f64 = kv["last_data_at"].parse().unwrap();
    eprintln!(
        "slow reader: {:.0} Mbit/s after the pause; gaps >= 150 ms: [{}]",
        mbit(bytes, last - resumed),
        kv["gaps"]
    );
    assert!(gaps.num("data_bytes") >= bytes, "{gaps:#?}");
    // The pause really closed the window (scaled field below 2 MSS).
    let min_wnd: i64 = kv["min_window_field"].parse().unwrap();
    assert!(
        (0..(2 * 1460) >> 3).contains(&min_wnd),
        "the receive window never closed, so nothing was tested: {gaps:#?}"
    );
    // The pause itself makes one gap (it starts before `resumed_at`);
    // none may end later than 150 ms after the reader resumed.
    let late: Vec<&str> = kv["gaps"]
        .split(',')
        .filter(|g| !g.is_empty())
        .filter(|g| {
            let (at, len) = g.split_once('+').unwrap();
            let (at, len): (f64, f64) = (at.parse().unwrap(), len.parse().unwrap());
            at + len > resumed + 0.15
        })
        .collect();
    assert!(
        late.is_empty(),
        "data stalled >= 150 ms after the reader resumed at {resumed:.6}: {late:?}\n{gaps:#?}"
    );
}

/// A receive account (`--tcp-mem`, Linux's tcp_mem) far smaller than the
/// windows of 8 parallel echo connections: data past its hard limit is
/// dropped (`tcp.rcvq_drop`, `tcp.ofo_drop`) and the kernel's
/// retransmissions bring it in; every echo is byte-exact and none is
/// silent for 10 s.
#[test]
fn echo_8_parallel_under_a_small_tcp_mem() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("tcpmem");
    let stack = StackProc::echo(&ns, &["--tcp-mem", "256K,384K,512K"]);
    let start = Instant::now();
    let bytes = (8 * MIB).to_string();
    let out = tcp_py(
        &ns,
        &["many", STACK_IP, "7", "8", &bytes, "5", "300", "10"],
        SECS(330),
    );
    eprintln!(
        "tcp_mem: 8 x 8 MiB echoed in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let c = stop_and_print(stack, "tcpmem");
    assert_eq!(out.num("ok"), 8, "{out:#?}");
    assert_eq!(out.num("failed"), 0, "{out:#?}");
    let get = |k: &str| c.get(k).copied().unwrap_or(0);
    assert!(get("tcp.mem_pressure") > 0, "{c:?}");
    // 8 windows of 256 KiB and TSO super-frames: the limit refused some.
    assert!(get("tcp.rcvq_drop") + get("tcp.ofo_drop") > 0, "{c:?}");
}
