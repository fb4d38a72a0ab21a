//! The web page in a real browser (issue 14): headless Chromium in the
//! test's namespace, driven over the DevTools protocol by
//! tests/py/web_page.py, watches `tapstack echo` while a kernel client
//! connects to the echo port and closes. Needs root; see
//! tests/common/mod.rs.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const DEVTOOLS_PORT: &str = "9222";

/// One segment: direction (`in` = to the stack), flags as a sorted set,
/// seq, ack (absolute; ack 0 when the ACK flag is off), payload length.
/// tcpdump prints no seq for a bare ACK: its seq is 0 on both sides.
type Seg = (String, Vec<String>, u64, u64, u64);

fn bare_ack(flags: &[String], len: u64) -> bool {
    flags == ["ACK"] && len == 0
}

/// The `ladder=` JSON objects the driver printed.
fn ladder(out: &Output) -> Vec<BTreeMap<String, String>> {
    out.stdout
        .lines()
        .filter_map(|l| l.strip_prefix("ladder="))
        .map(|j| parse_flat_json(j).unwrap_or_else(|| panic!("bad ladder row {j}")))
        .collect()
}

/// A flat JSON object of string values (what the driver prints).
fn parse_flat_json(j: &str) -> Option<BTreeMap<String, String>> {
    let body = j.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut map = BTreeMap::new();
    for field in body.split("\",\"") {
        let (k, v) = field.split_once("\":\"")?;
        map.insert(
            k.trim_matches('"').to_string(),
            v.trim_matches('"').to_string(),
        );
    }
    Some(map)
}

fn ladder_seg(r: &BTreeMap<String, String>) -> Seg {
    let num = |k: &str| r[k].parse::<u64>().unwrap_or(0);
    let mut flags: Vec<String> = r["flags"].split(',').map(str::to_string).collect();
    flags.sort();
    let ack = if flags.iter().any(|f| f == "ACK") {
        num("ack")
    } else {
        0
    };
    let len = num("len");
    let seq = if bare_ack(&flags, len) { 0 } else { num("seq") };
    (r["dir"].clone(), flags, seq, ack, len)
}

/// A tcpdump -S line: `IP 10.0.0.1.P > 10.0.0.2.7: Flags [S.], seq A[:B],
/// ack C, win ..., length N`.
fn tcpdump_seg(line: &str) -> Option<Seg> {
    let dir = if line.contains(&format!("> {STACK_IP}.7:")) {
        "in"
    } else {
        "out"
    };
    let flags_s = line.split("Flags [").nth(1)?.split(']').next()?;
    let mut flags: Vec<String> = flags_s
        .chars()
        .filter_map(|c| {
            Some(
                match c {
                    'S' => "SYN",
                    'F' => "FIN",
                    'R' => "RST",
                    'P' => "PSH",
                    'U' => "URG",
                    'E' => "ECE",
                    'W' => "CWR",
                    '.' => "ACK",
                    _ => return None,
                }
                .to_string(),
            )
        })
        .collect();
    flags.sort();
    let field = |name: &str| -> Option<u64> {
        let rest = line.split(&format!(" {name} ")).nth(1)?;
        rest.split([',', ':']).next()?.trim().parse().ok()
    };
    let len = field("length").unwrap_or(0);
    let seq = if bare_ack(&flags, len) {
        0
    } else {
        field("seq")?
    };
    let ack = field("ack").unwrap_or(0);
    Some((dir.to_string(), flags, seq, ack, len))
}

/// The page opens; a kernel client connects to the echo port, echoes a
/// line and closes; the page's table shows the connection ESTABLISHED
/// with cwnd, srtt and rto, and its ladder shows exactly the segments
/// tcpdump saw on the TAP (flags, absolute seq and ack, length), the
/// handshake and the close labelled with the states each side enters and
/// numbers relative to each ISN. Text that looks like a push, sent through
/// the echo box, comes back as an echo and never reaches the table. A
/// screenshot is saved (target/tmp/kernel-tests/web-page.png). Then a
/// bulk transfer from chargen gets its cwnd plot and a ladder of its
/// segments (target/tmp/kernel-tests/web-page-bulk.png).
#[test]
fn browser_shows_the_table_and_the_ladder_of_a_connection() {
    if !require_root() {
        return;
    }
    need_tool("chromium");
    need_tool("tcpdump");
    need_python_module("websockets.sync.client");
    let ns = Netns::new("webpage");
    let stack = StackProc::echo(&ns, &[]);
    let profile = scratch(&format!("{}-chromium", ns.name));
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::create_dir_all(&profile).unwrap();
    let user_data = format!("--user-data-dir={}", profile.display());
    let devtools = format!("--remote-debugging-port={DEVTOOLS_PORT}");
    let browser = ns.spawn(&[
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        &user_data,
        &devtools,
        "about:blank",
    ]);
    let shot = scratch("web-page.png");
    let bulk_shot = scratch("web-page-bulk.png");
    let _ = std::fs::remove_file(&shot);
    let _ = std::fs::remove_file(&bulk_shot);
    let page = format!("http://{STACK_IP}:8080/");
    let script = py("web_page.py");
    let out = ns.run(
        &[
            "python3",
            &script,
            DEVTOOLS_PORT,
            &page,
            STACK_IP,
            TAP,
            shot.to_str().unwrap(),
        ],
        SECS(240),
    );
    drop(browser);
    let _ = std::fs::remove_dir_all(&profile);
    assert!(out.success(), "web_page.py failed: {out:#?}");
    let kv = out.kv();

    // The echo box: an echo, not a push.
    assert_eq!(out.num("echoed"), 1, "{out:#?}");
    assert_eq!(
        out.num("injected_seen"),
        0,
        "text typed in the echo box reached the table: {out:#?}"
    );

    // The table row of the client's connection.
    let port = out.num("client_port");
    let row = &kv["table_row"];
    assert!(
        row.contains(&format!("\"remote\":\"{HOST_IP}:{port}\""))
            && row.contains(&format!("\"local\":\"{STACK_IP}:7\""))
            && row.contains("\"state\":\"ESTABLISHED\""),
        "{row}"
    );
    // Cells: proto, state, local, peer, recv-q, send-q, cwnd, ssthresh,
    // in flight, srtt, rto, retrans, segs, cc (algorithm, phase, state).
    let cells: Vec<&str> = row
        .split("\"cells\":[")
        .nth(1)
        .and_then(|c| c.strip_suffix("]}"))
        .unwrap_or_else(|| panic!("no cells in {row}"))
        .split(',')
        .map(|c| c.trim_matches('"'))
        .collect();
    assert_eq!(cells.len(), 14, "{row}");
    assert!(
        cells[13].starts_with("cubic ")
            || cells[13].starts_with("reno ")
            || cells[13].starts_with("bbr "),
        "{row}"
    );
    let cwnd: u64 = cells[6].parse().unwrap_or(0);
    let srtt: f64 = cells[9].parse().unwrap_or(-1.0);
    let rto: f64 = cells[10].parse().unwrap_or(0.0);
    assert!(cwnd >= 1000, "cwnd {cwnd}: {row}");
    assert!(srtt >= 0.0 && rto >= 200.0, "srtt {srtt} rto {rto}: {row}");

    // The ladder, against what tcpdump saw on the TAP.
    let rows = ladder(&out);
    let drawn: Vec<Seg> = rows.iter().map(ladder_seg).collect();
    let dumped: Vec<Seg> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("tcpdump="))
        .map(|l| tcpdump_seg(l).unwrap_or_else(|| panic!("unparsed tcpdump line {l}")))
        .collect();
    assert!(dumped.len() >= 7, "tcpdump saw too little: {out:#?}");
    assert_eq!(drawn, dumped, "ladder vs tcpdump; {out:#?}");

    // The story, with the states each side enters and relative numbers.
    let f = |i: usize| rows[i]["flags"].as_str();
    let at = |i: usize, k: &str| rows[i][k].as_str();
    assert_eq!((f(0), at(0, "dir")), ("SYN", "in"));
    assert_eq!((at(0, "ss"), at(0, "rs")), ("SYN-SENT", "SYN-RECEIVED"));
    assert_eq!((at(0, "rseq"), at(0, "rack")), ("0", ""));
    assert_eq!((f(1), at(1, "dir")), ("SYN,ACK", "out"));
    assert_eq!(
        (at(1, "rseq"), at(1, "rack"), at(1, "rs")),
        ("0", "1", "ESTABLISHED")
    );
    assert_eq!((f(2), at(2, "dir")), ("ACK", "in"));
    assert_eq!(
        (at(2, "rseq"), at(2, "rack"), at(2, "rs")),
        ("1", "1", "ESTABLISHED")
    );
    let fin_in = rows
        .iter()
        .position(|r| r["dir"] == "in" && r["flags"].contains("FIN"))
        .expect("the client's FIN");
    assert_eq!(rows[fin_in]["ss"], "FIN-WAIT-1");
    assert_eq!(rows[fin_in]["rs"], "CLOSE-WAIT");
    let fin_rel: u64 = rows[fin_in]["rseq"].parse().unwrap();
    let fin_out = rows
        .iter()
        .position(|r| r["dir"] == "out" && r["flags"].contains("FIN"))
        .expect("the stack's FIN");
    assert!(fin_out > fin_in, "the client closed first");
    assert_eq!(rows[fin_out]["ss"], "LAST-ACK");
    // The client's FIN is acknowledged (alone, or with the stack's FIN).
    assert!(
        rows[fin_in + 1..=fin_out]
            .iter()
            .any(|r| r["dir"] == "out" && r["rack"] == (fin_rel + 1).to_string()),
        "no ACK of the client's FIN: {rows:#?}"
    );
    let last = rows.last().unwrap();
    assert_eq!(
        (last["flags"].as_str(), last["dir"].as_str()),
        ("ACK", "in")
    );
    assert_eq!(last["rs"], "CLOSED");
    assert_eq!(
        last["rack"],
        (rows[fin_out]["rseq"].parse::<u64>().unwrap() + 1).to_string()
    );

    // The bulk transfer: samples plotted, segments drawn.
    assert!(out.num("bulk_samples") >= 10, "{out:#?}");
    assert!(out.num("bulk_segs") >= 100, "{out:#?}");
    assert!(out.num("bulk_cwnd_max") >= 1000, "{out:#?}");
    eprintln!(
        "bulk: {} bytes read, {} samples, {} segments drawn",
        out.num("bulk_bytes"),
        out.num("bulk_samples"),
        out.num("bulk_segs")
    );

    for path in [&shot, &bulk_shot] {
        let png = std::fs::read(path).expect("screenshot");
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{path:?}"
        );
        eprintln!("screenshot: {}", path.display());
    }
    let (status, stderr) = stack.stop();
    assert_clean_exit(status, &stderr);
}
