//! Other ways in: the C and Python examples, the Rust client library,
//! `echo`'s own daemon API, control connections per thread.

use super::*;

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
    example_echoes("tokio_echo", "ready", "dtokio", 7900);
}

/// `examples/daemon_echo.rs` (a thread per connection on the client
/// library) under a daemon, as the tokio example: it shares that example's
/// argument and `TAPSTACK_API` set-up (`examples/common/daemon.rs`).
#[test]
fn daemon_example_echoes_for_concurrent_kernel_clients() {
    if !require_root() {
        return;
    }
    example_echoes("daemon_echo", "echo on port 7901", "dexample", 7901);
}

/// Runs example `name` on `port` under a daemon in namespace `ns`, waits
/// for `ready` in its output, and checks the echo of 16 kernel clients.
fn example_echoes(name: &str, ready: &str, ns: &str, port: u16) {
    // scripts/test.sh builds it beside the binaries.
    let example = Path::new(bin()).with_file_name("examples").join(name);
    assert!(
        example.exists(),
        "{} is missing: cargo build --release -p tapstack --example {name}",
        example.display()
    );
    let d = Daemon::start(ns);
    // Through sh only to see its stderr too (where daemon_echo says it is
    // ready); exec keeps the example the process that is killed.
    let script = format!(
        "exec env TAPSTACK_API='{}' '{}' {port} 2>&1",
        d.api,
        example.display()
    );
    let mut srv = d.ns.spawn(&["sh", "-c", &script]);
    srv.wait_line(ready, Duration::from_secs(10));
    let port = port.to_string();
    let out = d.ns.run(
        &[
            "python3",
            &py("tcp.py"),
            "many",
            STACK_IP,
            &port,
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
