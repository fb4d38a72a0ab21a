//! Watching a running stack: `tapstack ss`, `stats`, `trace`, `pcap`
//! against its daemon, and a `--pcap` file read while it runs. Each test
//! runs the stack (`echo`) on a TAP in its own namespace with the kernel's
//! tools as peers.

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(30);
const SECS: fn(u64) -> Duration = Duration::from_secs;
/// Bound of every wait for a condition.
const WAIT: Duration = Duration::from_secs(20);

/// A stack (`echo`) with a control socket at a known path.
struct Obs {
    ns: Netns,
    api: String,
    _stack: StackProc,
}

impl Obs {
    fn start(test: &str, extra: &[&str]) -> Obs {
        let ns = Netns::new(test);
        let api = format!("/tmp/tapstack-obs-{}.sock", ns.name);
        let mut args = vec!["--api", api.as_str()];
        args.extend_from_slice(extra);
        let stack = StackProc::echo(&ns, &args);
        Obs {
            ns,
            api,
            _stack: stack,
        }
    }

    /// `tapstack --api API ARGS...` in the namespace; its stdout.
    fn tapstack(&self, args: &[&str]) -> String {
        let mut argv = vec![bin(), "--api", self.api.as_str()];
        argv.extend_from_slice(args);
        let out = self.ns.run(&argv, T);
        assert!(out.success(), "tapstack {args:?} failed: {out:#?}");
        out.stdout
    }

    /// Runs `tapstack ARGS` until `pred` holds for its stdout (bounded).
    fn until(&self, args: &[&str], what: &str, pred: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let out = self.tapstack(args);
            if pred(&out) {
                return out;
            }
            assert!(
                t0.elapsed() < WAIT,
                "tapstack {args:?}: never {what}; last output:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Python's verdict on a JSON document: `code` runs with `d` loaded.
    fn json(&self, doc: &str, code: &str) -> Output {
        let script = format!("import json,sys\nd=json.load(sys.stdin)\n{code}");
        let out = self
            .ns
            .run_stdin(&["python3", "-c", &script], doc.as_bytes(), T);
        assert!(
            out.success(),
            "not JSON or not as expected: {out:#?}\n{doc}"
        );
        out
    }
}

/// The lines of `ss` output about the connection with `port` on the peer side.
fn lines_of(out: &str, peer: &str) -> Vec<String> {
    let mut v = Vec::new();
    let mut take_next = false;
    for l in out.lines() {
        if take_next && l.starts_with('\t') {
            v.push(l.to_string());
        }
        take_next = false;
        if l.split_whitespace().any(|w| w == peer) {
            v.push(l.to_string());
            take_next = true;
        }
    }
    v
}

/// A field `name:VALUE` of an `ss -i` line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix(':'))
}

#[test]
fn ss_lists_a_kernel_nc_connection_with_its_internals_and_json() {
    if !require_root() {
        return;
    }
    let o = Obs::start("ssnc", &[]);
    // A kernel nc holding a connection open (-d: it reads no stdin).
    let mut nc = o.ns.spawn(&["nc", "-d", STACK_IP, "7"]);
    // The kernel's own view gives nc's port.
    let kernel = (0..200)
        .find_map(|_| {
            let out = o.ns.run(&["ss", "-Htn", "state", "established"], T).stdout;
            let port = out
                .split_whitespace()
                .find_map(|w| w.strip_prefix("10.0.0.1:"))
                .map(String::from);
            if port.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            port
        })
        .expect("the kernel never had nc's connection");
    let peer = format!("10.0.0.1:{kernel}");
    let out = o.tapstack(&["ss", "-t"]);
    let l = lines_of(&out, &peer);
    assert_eq!(l.len(), 1, "one line for {peer}:\n{out}");
    let cols: Vec<&str> = l[0].split_whitespace().collect();
    assert_eq!(
        &cols[..6],
        ["tcp", "ESTABLISHED", "0", "0", "10.0.0.2:7", peer.as_str()],
        "{out}"
    );
    assert!(out.starts_with("Netid State"), "{out}");
    // -i: cwnd, rtt (srtt/rttvar) and rto on the second line.
    let out = o.tapstack(&["ss", "-ti"]);
    let l = lines_of(&out, &peer);
    assert_eq!(l.len(), 2, "{out}");
    let info = &l[1];
    assert!(
        field(info, "cwnd").is_some_and(|c| c.parse::<u64>().unwrap() >= 1),
        "{info}"
    );
    assert!(
        field(info, "rto").is_some_and(|c| c.parse::<u64>().unwrap() >= 200),
        "{info}"
    );
    assert!(
        field(info, "rtt").is_some_and(|r| r.contains('/')),
        "{info}"
    );
    assert!(info.starts_with("\t cubic "), "{info}");
    // --json parses, with the same connection in it.
    let doc = o.tapstack(&["ss", "-t", "--json"]);
    let v = o.json(
        &doc,
        &format!(
            "s=[s for s in d['sockets'] if s['remote']=='{peer}'][0]\n\
             print('state=' + s['state'])\n\
             print('cwnd=%d' % s['tcp']['cwnd'])\n\
             print('srtt=%d' % (s['tcp']['srtt_us'] is not None))\n\
             print('rto=%d' % s['tcp']['rto_ms'])"
        ),
    );
    assert_eq!(v.kv()["state"], "ESTABLISHED", "{v:#?}");
    assert!(
        v.num("cwnd") >= 1000 && v.num("srtt") == 1 && v.num("rto") >= 200,
        "{v:#?}"
    );
    // Without -a, listeners are not listed; with -l only they are.
    assert!(!out.contains("LISTEN"), "{out}");
    let l = o.tapstack(&["ss", "-tl"]);
    assert!(l.lines().skip(1).all(|x| x.contains("LISTEN")), "{l}");
    assert!(l.contains("0.0.0.0:7 "), "{l}");
    drop(nc.finish(Duration::from_millis(10)));
}

#[test]
fn ss_shows_retransmissions_after_a_bulk_transfer_with_loss() {
    if !require_root() {
        return;
    }
    let o = Obs::start("ssloss", &["--loss", "2%", "--seed", "3"]);
    let mut c = o.ns.spawn(&[
        "python3",
        &py("obs.py"),
        "bulkhold",
        STACK_IP,
        "7",
        &(4 << 20).to_string(),
        "60",
    ]);
    c.wait_line("port=", Duration::from_secs(120));
    let ok = c.wait_line("ok=", Duration::from_secs(1));
    assert_eq!(ok, "ok=1", "echo differs");
    let port = c.wait_line("port=", Duration::from_secs(1));
    let peer = format!("10.0.0.1:{}", port.trim_start_matches("port="));
    // Everything echoed is acknowledged once a lost last ACK is recovered.
    let acked = |out: &str| {
        let l = lines_of(out, &peer);
        l.get(1)
            .and_then(|i| field(i, "bytes_acked"))
            .map(|v| v.to_string())
    };
    let out = o.until(&["ss", "-ti"], "all acked", |out| {
        acked(out).as_deref() == Some("4194304")
    });
    let l = lines_of(&out, &peer);
    assert_eq!(l.len(), 2, "{out}");
    let retrans: u64 = field(&l[1], "retrans").unwrap().parse().unwrap();
    assert!(retrans > 0, "no retransmission at 2% loss: {}", l[1]);
    let doc = o.tapstack(&["ss", "-t", "--json"]);
    let v = o.json(
        &doc,
        &format!(
            "s=[s for s in d['sockets'] if s['remote']=='{peer}'][0]\n\
             print('retrans=%d' % s['tcp']['retrans_segs'])"
        ),
    );
    assert_eq!(v.num("retrans"), retrans, "{v:#?}");
    drop(c.finish(Duration::from_millis(10)));
}

#[test]
fn ss_shows_a_listeners_queues_and_its_owner() {
    if !require_root() {
        return;
    }
    let o = Obs::start("sslisten", &[]);
    // A program under `tapstack run` that listens (backlog 2), never accepts.
    let mut server = o.ns.spawn(&[
        bin(),
        "--api",
        &o.api,
        "run",
        "--",
        "python3",
        &py("obs.py"),
        "listen",
        "7100",
        "2",
        "60",
    ]);
    let pid = server.wait_line("pid=", WAIT);
    let pid = pid.trim_start_matches("pid=").to_string();
    let out = o.tapstack(&["ss", "-tl"]);
    let line = out
        .lines()
        .find(|l| l.contains("0.0.0.0:7100"))
        .unwrap_or_else(|| panic!("no listener on 7100:\n{out}"));
    assert!(line.contains(&format!("pid={pid})")), "{line}");
    assert!(line.contains("users:((\"python3\""), "{line}");
    // Six kernel clients: the daemon hands the program 2 (its backlog),
    // the stack's accept queue fills to its limit of 2.
    let mut many = o.ns.spawn(&[
        "python3",
        &py("obs.py"),
        "many",
        STACK_IP,
        "7100",
        "6",
        "60",
    ]);
    many.wait_line("started=6", WAIT);
    let out = o.until(&["ss", "-tli"], "a full accept queue", |out| {
        out.contains("accept_queue:2/2")
    });
    let lines: Vec<&str> = out.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.contains("0.0.0.0:7100"))
        .unwrap();
    let cols: Vec<&str> = lines[i].split_whitespace().collect();
    assert_eq!(&cols[..4], ["tcp", "LISTEN", "2", "2"], "{out}");
    let q = lines[i + 1];
    let syn: Vec<&str> = field(q, "syn_queue").unwrap().split('/').collect();
    assert_eq!(syn[1], "256", "{q}");
    let doc = o.tapstack(&["ss", "-tl", "--json"]);
    let v = o.json(
        &doc,
        "s=[s for s in d['sockets'] if s['local']=='0.0.0.0:7100'][0]\n\
         print('accept=%d' % s['listen']['accept_queue'])\n\
         print('max=%d' % s['listen']['accept_queue_max'])\n\
         print('pid=%d' % s['pid'])",
    );
    assert_eq!(
        (v.num("accept"), v.num("max"), v.num("pid").to_string()),
        (2, 2, pid)
    );
    drop(many.finish(Duration::from_millis(10)));
    drop(server.finish(Duration::from_millis(10)));
}

#[test]
fn ss_lists_time_wait_after_the_stack_closes_first() {
    if !require_root() {
        return;
    }
    let o = Obs::start("sstw", &[]);
    // `Connection: close`: the web server closes first, so the stack's
    // side of the connection ends in TIME-WAIT (RFC 9293 3.6). The client
    // closes only after the server's FIN (EOF): a client that closes
    // once it has the body (curl) can race the server's FIN, and then the
    // stack closes second and holds no TIME-WAIT (seen once in CI).
    let client = "import socket\n\
        s = socket.create_connection(('10.0.0.2', 8080), timeout=10)\n\
        s.sendall(b'GET / HTTP/1.1\\r\\nHost: t\\r\\nConnection: close\\r\\n\\r\\n')\n\
        while s.recv(65536): pass\n\
        print('port=%d' % s.getsockname()[1])\n\
        s.close()\n";
    let out = o.ns.run(&["python3", "-c", client], T);
    assert!(out.success(), "{out:#?}");
    let peer = format!("10.0.0.1:{}", out.num("port"));
    let all = o.until(&["ss", "-tai"], "TIME-WAIT", |s| {
        lines_of(s, &peer)
            .first()
            .is_some_and(|l| l.contains("TIME-WAIT"))
    });
    let l = lines_of(&all, &peer);
    assert!(l[0].contains("10.0.0.2:8080"), "{all}");
    assert!(l[1].contains("timer:(timewait,"), "{all}");
    // Not among the connected sockets `ss` lists by default (iproute2).
    let default = o.tapstack(&["ss", "-t"]);
    assert!(lines_of(&default, &peer).is_empty(), "{default}");
}

#[test]
fn live_pcap_to_tcpdump_shows_a_later_handshake() {
    if !require_root() {
        return;
    }
    need_tool("tcpdump");
    let o = Obs::start("livepcap", &[]);
    // tapstack pcap -w - | tcpdump -n -l -r -, tcpdump's output in a file.
    let log = scratch(&format!("{}.tcpdump", o.ns.name));
    let sink = std::fs::File::create(&log).unwrap();
    let mut pcap =
        o.ns.command(&[
            bin(),
            "--api",
            &o.api,
            "pcap",
            "-w",
            "-",
            "tcp",
            "and",
            "port",
            "7",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stream = pcap.stdout.take().unwrap();
    let mut td =
        o.ns.command(&["tcpdump", "-n", "-l", "-r", "-"])
            .stdin(Stdio::from(stream))
            .stdout(sink.try_clone().unwrap())
            .stderr(sink)
            .spawn()
            .unwrap();
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    let wait_text = |what: &str| {
        let t0 = Instant::now();
        while !text().contains(what) {
            assert!(
                t0.elapsed() < WAIT,
                "tcpdump never printed {what:?}:\n{}",
                text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // tcpdump prints this once it has the pcap header, which the daemon
    // writes after it subscribed: every later frame is in the stream.
    wait_text("reading from file -");
    let echo = o.ns.run_stdin(&["nc", "-N", STACK_IP, "7"], b"hello\n", T);
    assert_eq!(echo.stdout, "hello\n", "{echo:#?}");
    o.ns.run(&["ping", "-c1", STACK_IP], T);
    wait_text("Flags [F.]");
    wait_text("ack 8,");
    let out = text();
    for child in [&mut pcap, &mut td] {
        let _ = child.kill();
        let _ = child.wait();
    }
    let line = |f: &str| {
        out.lines()
            .find(|l| l.contains(f))
            .unwrap_or_else(|| panic!("no {f:?} in:\n{out}"))
    };
    assert!(line("Flags [S],").contains("> 10.0.0.2.7:"), "{out}");
    assert!(
        line("Flags [S.]").contains("IP 10.0.0.2.7 > 10.0.0.1."),
        "{out}"
    );
    assert!(line("Flags [.], ack 1,").contains("> 10.0.0.2.7:"), "{out}");
    assert!(!out.contains("ICMP"), "the filter let ICMP through:\n{out}");
}

#[test]
fn trace_streams_filtered_lines_with_every_layer() {
    if !require_root() {
        return;
    }
    let o = Obs::start("livetrace", &[]);
    let mut tr = o.ns.spawn(&[
        bin(),
        "--api",
        &o.api,
        "trace",
        "icmp",
        "and",
        "host",
        HOST_IP,
    ]);
    // Pings for 6 s: the stream is live within that (its reply comes
    // after the daemon subscribed).
    let mut ping =
        o.ns.spawn(&["ping", "-n", "-c", "30", "-i", "0.2", STACK_IP]);
    let line = tr.wait_line("ICMP echo reply", WAIT);
    drop(ping.finish(Duration::from_millis(10)));
    // MACs, IPs and the ICMP fields in one line, `>` for a frame sent.
    assert!(line.contains(&format!("> {STACK_MAC} > ")), "{line}");
    assert!(
        line.contains("IPv4 10.0.0.2 > 10.0.0.1 ICMP echo reply"),
        "{line}"
    );
    let echo = o.ns.run_stdin(&["nc", "-N", STACK_IP, "7"], b"x\n", T);
    assert!(echo.success());
    let out = tr.finish(Duration::from_millis(300));
    assert!(
        !out.stdout.contains("[SYN]"),
        "the filter let TCP through: {out:#?}"
    );
    let bad =
        o.ns.run(&[bin(), "--api", &o.api, "trace", "tcp", "or", "udp"], T);
    assert!(
        !bad.success() && bad.stderr.starts_with("tapstack: filter:"),
        "{bad:#?}"
    );
    assert_eq!(bad.stderr.lines().count(), 1, "{bad:#?}");
}

#[test]
fn pcap_file_holds_the_frames_so_far_while_the_stack_runs() {
    if !require_root() {
        return;
    }
    need_tool("tcpdump");
    let file = scratch("obs-running.pcap");
    let _ = std::fs::remove_file(&file);
    let o = Obs::start("pcapfile", &["--pcap", file.to_str().unwrap()]);
    let echo = o.ns.run_stdin(&["nc", "-N", STACK_IP, "7"], b"hello\n", T);
    assert_eq!(echo.stdout, "hello\n", "{echo:#?}");
    // The stack still runs: what tcpdump reads is what it flushed.
    let t0 = Instant::now();
    loop {
        let out =
            o.ns.run(&["tcpdump", "-n", "-r", file.to_str().unwrap()], T);
        let seen = ["Flags [S],", "Flags [S.]", "Flags [P.]", "Flags [F.]"]
            .iter()
            .all(|f| out.stdout.contains(f));
        if seen && !out.stderr.contains("truncated") {
            break;
        }
        assert!(
            t0.elapsed() < WAIT,
            "the pcap file lacks the frames so far: {out:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn stats_json_parses_and_a_counter_moves() {
    if !require_root() {
        return;
    }
    let o = Obs::start("stats", &[]);
    let get = || {
        let doc = o.tapstack(&["stats", "--json"]);
        o.json(
            &doc,
            "print('n=%d' % d['counters'].get('icmp.echo_replied', 0))",
        )
        .num("n")
    };
    let before = get();
    assert_ping_all(&o.ns, STACK_IP, &["-c", "3", "-i", "0.2"], T);
    assert_eq!(get(), before + 3);
    let text = o.tapstack(&["stats"]);
    assert!(
        text.lines().any(|l| l.starts_with("icmp.echo_replied ")),
        "{text}"
    );
    // --watch prints the counters with a rate, then again.
    let mut w =
        o.ns.spawn(&[bin(), "--api", &o.api, "stats", "--watch", "0.2"]);
    let line = w.wait_line("icmp.echo_replied", WAIT);
    assert_eq!(line.split_whitespace().count(), 3, "{line}");
    drop(w.finish(Duration::from_millis(10)));
}

#[test]
fn without_a_daemon_each_command_says_so_in_one_line() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("nodaemon");
    for args in [
        &["ss"][..],
        &["stats", "--json"],
        &["trace"],
        &["pcap", "-w", "-"],
    ] {
        let mut argv = vec![bin(), "--api", "/tmp/tapstack-obs-none.sock"];
        argv.extend_from_slice(args);
        let out = ns.run(&argv, T);
        assert!(!out.success() && !out.timed_out, "{args:?}: {out:#?}");
        assert_eq!(out.stdout, "", "{args:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {out:#?}");
        assert!(
            out.stderr
                .starts_with("tapstack: no tapstack daemon at /tmp/tapstack-obs-none.sock"),
            "{args:?}: {out:#?}"
        );
    }
}

#[test]
fn streams_are_bounded_and_a_closed_reader_ends_its_stream() {
    if !require_root() {
        return;
    }
    let o = Obs::start("streams", &[]);
    // A filter nothing matches: the streams stay idle, so only noticing
    // a closed reader (not a failed write) can end them.
    let pcap = [
        bin(),
        "--api",
        o.api.as_str(),
        "pcap",
        "-w",
        "/dev/null",
        "tcp",
        "and",
        "port",
        "1",
    ];
    // 16 live streams hold every writer slot the daemon has.
    let held: Vec<Bg> = (0..16).map(|_| o.ns.spawn(&pcap)).collect();
    let t0 = Instant::now();
    let refused = loop {
        let out = o.ns.run(&pcap, Duration::from_secs(2));
        if out.stderr.contains("too many observers") {
            break out;
        }
        assert!(
            t0.elapsed() < WAIT,
            "a 17th stream was never refused: {out:#?}"
        );
    };
    assert!(!refused.success(), "{refused:#?}");
    assert_eq!(
        refused.stderr.trim(),
        "tapstack: the daemon serves too many observers; try again"
    );
    // Their readers gone, the streams end and free their slots: a new
    // stream gets its pcap header (24 bytes) again.
    drop(held);
    let file = scratch(&format!("{}.pcap", o.ns.name));
    let mut again = pcap.to_vec();
    again[5] = file.to_str().unwrap();
    let t0 = Instant::now();
    loop {
        let _ = std::fs::remove_file(&file);
        let out = o.ns.run(&again, Duration::from_secs(1));
        let len = std::fs::metadata(&file).map_or(0, |m| m.len());
        if len >= 24 {
            break;
        }
        assert!(t0.elapsed() < WAIT, "slots never freed: {out:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The stack still answers.
    assert_ping_all(&o.ns, STACK_IP, &["-c", "2", "-i", "0.2"], T);
}

/// `key:value` tokens and bare flags of `ss -tin` output.
fn ss_info(text: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for tok in text.split_whitespace() {
        match tok.split_once(':') {
            Some((k, v)) => m.insert(k.to_string(), v.to_string()),
            None => m.insert(tok.to_string(), String::new()),
        };
    }
    m
}

/// The `info_*` lines the `hold` client printed from TCP_INFO.
fn hold_info(hold: &mut Bg) -> BTreeMap<String, String> {
    ["info_ts", "info_sack", "info_wscale", "info_snd_wscale"]
        .iter()
        .map(|k| {
            let line = hold.wait_line(&format!("{k}="), SECS(1));
            let (_, v) = line.split_once('=').unwrap();
            (k.to_string(), v.trim().to_string())
        })
        .collect()
}

#[test]
fn ss_shows_negotiated_options() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("ss");
    let stack = StackProc::echo(&ns, &[]);
    let script = py("tcp.py");
    let mut hold = ns.spawn(&["python3", &script, "hold", STACK_IP, "7", "10"]);
    hold.wait_line("ready=1", SECS(10));
    let out = ns.run(
        &["ss", "-tinH", "state", "established", "dst", STACK_IP],
        SECS(10),
    );
    assert!(out.success(), "{out:#?}");
    eprintln!("ss -tin: {}", out.stdout.trim());
    let info = ss_info(&out.stdout);
    // wscale:<the stack's shift>,<the kernel's shift>. The stack's 256 KiB
    // receive buffer may grow to 6 MiB, which needs shift 7 (as Linux's
    // own 6 MiB tcp_rmem maximum does).
    let ws = info
        .get("wscale")
        .unwrap_or_else(|| panic!("no wscale in ss output:\n{}", out.stdout));
    let snd: u32 = ws.split(',').next().unwrap().parse().unwrap();
    assert_eq!(snd, 7, "stack's advertised window scale:\n{}", out.stdout);
    // `ts` and `sack`: iproute2 6.1's ss on Linux 6.18 prints neither,
    // even between two kernel sockets, so when they are missing the same
    // bits are read from TCP_INFO (tcpi_options) by the client itself.
    let bits = hold_info(&mut hold);
    for (flag, key) in [("sack", "info_sack"), ("ts", "info_ts")] {
        assert!(
            info.contains_key(flag) || bits[key] == "1",
            "{flag} not negotiated: ss:\n{}\nTCP_INFO: {bits:?}",
            out.stdout
        );
    }
    assert_eq!(bits["info_snd_wscale"], "7", "TCP_INFO: {bits:?}");
    // The MSS option the stack sent is 1460 (MTU 1500 - 40). ss's `mss:`
    // is the kernel's send MSS, which also leaves room for the 12-byte
    // timestamp option.
    let mss: u32 = info["mss"].parse().unwrap();
    assert!(
        mss == 1460 || mss == 1460 - 12,
        "mss:{mss} does not come from a 1460 MSS option:\n{}",
        out.stdout
    );
    drop(hold);
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
}

/// `--trace` prints the handshake's segments and every state change.
#[test]
fn trace_shows_handshake_and_state_changes() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("trace");
    let stack = StackProc::echo(&ns, &["--trace"]);
    let out = ns.run_stdin(
        &["nc", "-N", "-w", "5", STACK_IP, "7"],
        b"traced\n",
        SECS(15),
    );
    assert_eq!(out.stdout, "traced\n", "{out:#?}");
    // The client's FIN may be processed after nc exits: wait (bounded)
    // for the last transition before stopping the stack.
    let until = Instant::now() + WAIT;
    while !stack.stderr_now().contains("ESTABLISHED -> CLOSE-WAIT") && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let has = |pat: &str| lines.iter().any(|l| l.contains(pat));
    assert!(has("[SYN]"), "no [SYN] line:\n{stderr}");
    assert!(has("[SYN,ACK]"), "no [SYN,ACK] line:\n{stderr}");
    for t in [
        "LISTEN -> SYN-RECEIVED",
        "SYN-RECEIVED -> ESTABLISHED",
        "ESTABLISHED -> CLOSE-WAIT",
    ] {
        assert!(has(t), "no {t:?} transition:\n{stderr}");
    }
}
