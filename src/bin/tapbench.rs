//! Benchmark client and kernel-side servers, on the kernel's own sockets
//! (`std::net`). The clients print one JSON line per run; every loop is
//! bounded in time.
//!
//!   tapbench bulk-send 10.0.0.2:9 3      write to discard, report goodput
//!   tapbench bulk-recv 10.0.0.2:19 3     read from chargen
//!   tapbench rr 10.0.0.2:7 3 --size 1    ping-pong round trips per second
//!   tapbench cps 10.0.0.2:7 3            connect, 1 byte there and back, close
//!   tapbench serve-discard 9             kernel-side servers (for the
//!   tapbench serve-chargen 19            kernel<->kernel baseline); they
//!   tapbench serve-echo 7                print "ready" once listening

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use nix::libc;
use nix::sys::socket::{setsockopt, sockopt};
use tapstack::apps::services::Chargen;
use tapstack::apps::workers::Workers;

#[derive(Parser, Debug)]
#[command(
    name = "tapbench",
    about = "TCP benchmark client and kernel-side servers (std::net)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Write to a discard server for SECS; print the goodput (bytes acknowledged)
    BulkSend { target: String, secs: f64 },
    /// Read from a chargen server for SECS; print the goodput
    BulkRecv { target: String, secs: f64 },
    /// Request/response on an echo server for SECS; print round trips per second
    Rr {
        target: String,
        secs: f64,
        /// Bytes per request (and per response)
        #[arg(long, default_value_t = 1)]
        size: usize,
    },
    /// Connect, send 1 byte, read the echo, close; for SECS; print connections per second
    Cps { target: String, secs: f64 },
    /// Kernel-side discard server
    ServeDiscard {
        port: u16,
        /// Exit after this many seconds whatever happens
        #[arg(long, default_value_t = 900.0)]
        max_secs: f64,
    },
    /// Kernel-side chargen server
    ServeChargen {
        port: u16,
        #[arg(long, default_value_t = 900.0)]
        max_secs: f64,
    },
    /// Kernel-side echo server
    ServeEcho {
        port: u16,
        #[arg(long, default_value_t = 900.0)]
        max_secs: f64,
    },
}

/// How long one blocking call may wait before the loop looks at the clock.
const TICK: Duration = Duration::from_millis(100);
/// How long a request/response or a connection may take before it counts as
/// failed.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the server may take to read what is still queued after a bulk
/// send, and close.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection attempt may take: room for the SYN to be sent
/// again twice (at 1 s and 3 s), so one lost frame on a lossy link does not
/// fail a bulk run.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most connections served at once by the kernel-side servers.
const MAX_CONNECTIONS: usize = 4096;

fn resolve(target: &str) -> Result<SocketAddr, String> {
    target
        .to_socket_addrs()
        .map_err(|e| format!("{target:?} is not HOST:PORT: {e}"))?
        .next()
        .ok_or_else(|| format!("{target:?} resolves to nothing"))
}

fn check_secs(secs: f64) -> Result<Duration, String> {
    if !(secs.is_finite() && secs > 0.0 && secs <= 3600.0) {
        return Err(format!("SECS must be in (0, 3600], not {secs}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| format!("connect {addr}: {e}"))
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Closes with an RST (SO_LINGER 0): nothing lingers in the kernel after the
/// measurement, e.g. a send queue still crawling through a lossy link.
fn abort(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let _ = setsockopt(&stream, sockopt::Linger, &linger);
    drop(stream);
}

fn json_line(test: &str, target: SocketAddr, fields: &[(&str, f64)]) {
    let mut s = format!("{{\"test\":\"{test}\",\"target\":\"{target}\"");
    for (k, v) in fields {
        if v.fract() == 0.0 && v.abs() < 1e15 {
            s.push_str(&format!(",\"{k}\":{}", *v as i64));
        } else {
            s.push_str(&format!(",\"{k}\":{v:.6}"));
        }
    }
    s.push('}');
    println!("{s}");
}

fn bulk_send(target: &str, secs: f64) -> Result<(), String> {
    let addr = resolve(target)?;
    let dur = check_secs(secs)?;
    let mut s = connect(addr)?;
    s.set_write_timeout(Some(TICK)).map_err(|e| e.to_string())?;
    let buf = vec![0xa5u8; 128 * 1024];
    let mut written = 0u64;
    let start = Instant::now();
    let end = start + dur;
    while Instant::now() < end {
        match s.write(&buf) {
            Ok(n) => written += n as u64,
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(format!("write to {addr}: {e}")),
        }
    }
    // Goodput: everything written has reached the server once it answers
    // our FIN with its own (a discard server closes at end of stream).
    s.shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown to {addr}: {e}"))?;
    s.set_read_timeout(Some(DRAIN_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut sink = [0u8; 4096];
    match s.read(&mut sink) {
        Ok(0) => {}
        Ok(_) => return Err(format!("{addr} sent data back to a bulk send")),
        Err(e) => return Err(format!("{addr} did not close after the data: {e}")),
    }
    let elapsed = start.elapsed().as_secs_f64();
    json_line(
        "bulk-send",
        addr,
        &[
            ("seconds", elapsed),
            ("bytes", written as f64),
            ("written", written as f64),
            ("bytes_per_s", written as f64 / elapsed),
            ("gbit_per_s", written as f64 * 8.0 / elapsed / 1e9),
        ],
    );
    Ok(())
}

fn bulk_recv(target: &str, secs: f64) -> Result<(), String> {
    let addr = resolve(target)?;
    let dur = check_secs(secs)?;
    let mut s = connect(addr)?;
    s.set_read_timeout(Some(TICK)).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    let start = Instant::now();
    let end = start + dur;
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => return Err(format!("{addr} closed the connection after {got} bytes")),
            Ok(n) => got += n as u64,
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(format!("read from {addr}: {e}")),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    abort(s);
    json_line(
        "bulk-recv",
        addr,
        &[
            ("seconds", elapsed),
            ("bytes", got as f64),
            ("bytes_per_s", got as f64 / elapsed),
            ("gbit_per_s", got as f64 * 8.0 / elapsed / 1e9),
        ],
    );
    Ok(())
}

fn rr(target: &str, secs: f64, size: usize) -> Result<(), String> {
    let addr = resolve(target)?;
    let dur = check_secs(secs)?;
    if size == 0 || size > 1 << 20 {
        return Err(format!("--size must be 1..=1048576, not {size}"));
    }
    let mut s = connect(addr)?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(OP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(OP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let req = vec![b'x'; size];
    let mut resp = vec![0u8; size];
    let mut n = 0u64;
    let start = Instant::now();
    let end = start + dur;
    while Instant::now() < end {
        s.write_all(&req)
            .map_err(|e| format!("write to {addr}: {e}"))?;
        s.read_exact(&mut resp)
            .map_err(|e| format!("read from {addr} after {n} round trips: {e}"))?;
        n += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let _ = s.shutdown(Shutdown::Both);
    json_line(
        "rr",
        addr,
        &[
            ("seconds", elapsed),
            ("size", size as f64),
            ("round_trips", n as f64),
            ("per_s", n as f64 / elapsed),
            ("mean_us", elapsed * 1e6 / (n.max(1) as f64)),
        ],
    );
    Ok(())
}

fn one_connection(addr: SocketAddr) -> io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, OP_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(OP_TIMEOUT))?;
    s.write_all(b"x")?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    Ok(()) // dropping closes gracefully (FIN)
}

fn cps(target: &str, secs: f64) -> Result<(), String> {
    let addr = resolve(target)?;
    let dur = check_secs(secs)?;
    let (mut ok, mut failed, mut failed_in_a_row) = (0u64, 0u64, 0u32);
    let mut last_error = String::new();
    let start = Instant::now();
    let end = start + dur;
    while Instant::now() < end {
        match one_connection(addr) {
            Ok(()) => {
                ok += 1;
                failed_in_a_row = 0;
            }
            Err(e) => {
                failed += 1;
                failed_in_a_row += 1;
                last_error = e.to_string();
                if failed_in_a_row >= 20 {
                    return Err(format!(
                        "{failed_in_a_row} connections to {addr} failed in a row: {last_error}"
                    ));
                }
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    if failed > 0 {
        eprintln!(
            "tapbench: {failed} of {} connections failed (last: {last_error})",
            ok + failed
        );
    }
    json_line(
        "cps",
        addr,
        &[
            ("seconds", elapsed),
            ("connections", ok as f64),
            ("failed", failed as f64),
            ("per_s", ok as f64 / elapsed),
        ],
    );
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Service {
    Discard,
    Chargen,
    Echo,
}

fn serve_connection(mut s: TcpStream, service: Service, buf: &mut [u8]) -> io::Result<()> {
    match service {
        Service::Discard => while s.read(buf)? > 0 {},
        Service::Echo => {
            s.set_nodelay(true)?;
            loop {
                let n = s.read(buf)?;
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n])?;
            }
        }
        Service::Chargen => {
            let mut reader = s.try_clone()?;
            thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let mut sink = [0u8; 4096];
                    while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
                })?;
            let mut block = Vec::new();
            Chargen::new().fill(&mut block, 74 * 95 * 16);
            loop {
                s.write_all(&block)?;
            }
        }
    }
    Ok(())
}

fn serve(port: u16, service: Service, max_secs: f64) -> Result<(), String> {
    let life = check_secs(max_secs)?;
    let listener =
        TcpListener::bind(("0.0.0.0", port)).map_err(|e| format!("bind port {port}: {e}"))?;
    // Bounded: the process ends by itself even if nobody stops it.
    thread::spawn(move || {
        thread::sleep(life);
        eprintln!("tapbench: served for {life:?}, exiting");
        std::process::exit(0);
    });
    println!("ready");
    let _ = io::stdout().flush();
    // The same worker pool as tapstack's own services, so connections/s
    // compares the stacks and not the servers.
    let workers = Workers::new(
        MAX_CONNECTIONS,
        64 * 1024,
        move |s: TcpStream, buf: &mut [u8]| {
            let _ = serve_connection(s, service, buf);
        },
    );
    for stream in listener.incoming() {
        let s = match stream {
            Ok(s) => s,
            Err(e) => {
                eprintln!("tapbench: accept: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if let Err(why) = workers.submit(s) {
            eprintln!("tapbench: connection closed at once: {why:?}");
        }
    }
    Ok(())
}

fn main() {
    let cli: Cli = tapstack::apps::cli::parse_or_exit("tapbench");
    let result = match cli.command {
        Cmd::BulkSend { target, secs } => bulk_send(&target, secs),
        Cmd::BulkRecv { target, secs } => bulk_recv(&target, secs),
        Cmd::Rr { target, secs, size } => rr(&target, secs, size),
        Cmd::Cps { target, secs } => cps(&target, secs),
        Cmd::ServeDiscard { port, max_secs } => serve(port, Service::Discard, max_secs),
        Cmd::ServeChargen { port, max_secs } => serve(port, Service::Chargen, max_secs),
        Cmd::ServeEcho { port, max_secs } => serve(port, Service::Echo, max_secs),
    };
    if let Err(e) = result {
        eprintln!("tapbench: {e}");
        std::process::exit(1);
    }
}
