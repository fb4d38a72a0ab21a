//! Unmodified programs moving data under `tapstack run`: curl, an HTTP
//! server, nc over TCP and UDP, asyncio, iperf3.

use super::*;

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
