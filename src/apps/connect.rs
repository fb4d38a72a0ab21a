//! `tapstack connect`: a netcat-like client over the stack, so the stack
//! can be the client and the kernel the server.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::api::{Net, TcpStream, UdpSocket};

/// Largest datagram sent per stdin read: fits one Ethernet frame, as nc
/// keeps its reads small.
const UDP_CHUNK: usize = 1472;

/// stdin → datagrams to `target`, datagrams → stdout. After stdin ends,
/// waits until `linger` passes with no datagram, then returns.
pub fn udp(net: &Net, target: &str, linger: Duration) -> Result<(), String> {
    let sock = UdpSocket::bind(net, "0.0.0.0:0").map_err(|e| format!("bind: {e}"))?;
    sock.connect(target)
        .map_err(|e| format!("bad target {target:?}: {e} (write it like 10.0.0.1:9000)"))?;
    // The receiver wakes every 100 ms to see whether stdin has ended.
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let stdin_done = Arc::new(AtomicBool::new(false));
    let (reader, done) = (sock.clone(), stdin_done.clone());
    let printer = std::thread::spawn(move || print_datagrams(&reader, &done, linger));
    let mut stdin = io::stdin().lock();
    let mut buf = vec![0u8; UDP_CHUNK];
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading stdin: {e}")),
        };
        if let Err(e) = sock.send(&buf[..n]) {
            eprintln!("tapstack: send: {e}");
        }
    }
    stdin_done.store(true, Ordering::SeqCst);
    printer
        .join()
        .map_err(|_| "receiver thread failed".to_string())?
}

fn print_datagrams(
    sock: &UdpSocket,
    stdin_done: &AtomicBool,
    linger: Duration,
) -> Result<(), String> {
    let mut buf = vec![0u8; 65_536];
    let mut out = io::stdout();
    let mut last = Instant::now();
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => {
                last = Instant::now();
                out.write_all(&buf[..n]).map_err(|e| e.to_string())?;
                out.flush().map_err(|e| e.to_string())?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if stdin_done.load(Ordering::SeqCst) && last.elapsed() >= linger {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                eprintln!("tapstack: connection refused (ICMP port unreachable)");
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// stdin → the connection, the connection → stdout. When stdin ends we
/// half-close (FIN) and keep printing until the server closes too.
pub fn tcp(net: &Net, target: &str) -> Result<(), String> {
    let stream = TcpStream::connect(net, target).map_err(|e| match e.kind() {
        io::ErrorKind::ConnectionRefused => format!("{target}: connection refused"),
        io::ErrorKind::TimedOut => format!("{target}: connection timed out (no answer to SYN)"),
        _ => format!("cannot connect to {target:?}: {e} (write it like 10.0.0.1:9000)"),
    })?;
    let writer = stream.try_clone().map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        let mut w = &writer;
        let result = io::copy(&mut io::stdin().lock(), &mut w);
        if let Err(e) = result {
            eprintln!("tapstack: sending: {e}");
        }
        let _ = writer.shutdown(std::net::Shutdown::Write);
    });
    let mut r = &stream;
    let mut out = io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                out.write_all(&buf[..n]).map_err(|e| e.to_string())?;
                out.flush().map_err(|e| e.to_string())?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("receiving: {e}")),
        }
    }
}
