//! A tokio echo server on the daemon through the Rust client library. The
//! client library's sockets are real descriptors (`AsRawFd`/`AsFd`), so
//! tokio's `AsyncFd` drives them like any socket: one current-thread
//! runtime, one task per connection, no thread per connection.
//!
//! ```sh
//! sudo tapstack --api /tmp/ts.sock up &
//! sudo TAPSTACK_API=/tmp/ts.sock cargo run --release --example tokio_echo -- 7000
//! nc 10.0.0.2 7000
//! ```
//!
//! Each connection's bytes come back as sent; when the peer half-closes,
//! the server sends what is left and half-closes too (a FIN), so a client
//! that shuts down its side reads the whole echo and then end-of-file.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;

use tapstack::client::{TcpListener, TcpStream};
use tokio::io::unix::AsyncFd;

#[path = "common/daemon.rs"]
mod daemon;

fn main() -> io::Result<()> {
    let (port, listener) = daemon::listen_on_port_arg()?;
    // AsyncFd wants non-blocking descriptors: a call that would block
    // returns WouldBlock, and the task waits for readiness instead.
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async move {
        let listener = register(listener)?;
        // A line the tests wait for before they connect.
        println!("tokio echo on port {port} through the daemon: ready");
        loop {
            let (stream, peer) = accept(&listener).await?;
            tokio::spawn(async move {
                if let Err(e) = echo(stream).await {
                    eprintln!("tokio_echo: {peer}: {e}");
                }
            });
        }
    })
}

/// Registers a client-library socket with tokio's reactor.
fn register<T: AsRawFd>(socket: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: tokio requires (I/O safety) that `as_raw_fd` names the same
    // open descriptor for as long as the AsyncFd lives. The client
    // library's sockets own their descriptor (an OwnedFd or UnixStream
    // field, never replaced) and close it only when dropped, which the
    // AsyncFd does after deregistering it.
    unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)
}

/// Waits until the listening descriptor is readable (a connection waits)
/// and accepts it.
async fn accept(listener: &AsyncFd<TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    loop {
        let mut ready = listener.readable().await?;
        // Err(_) here is WouldBlock: readiness is cleared, wait again.
        if let Ok(r) = ready.try_io(|l| l.get_ref().accept()) {
            return r;
        }
    }
}

/// Echoes until end-of-file, then half-closes.
async fn echo(stream: TcpStream) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    let s = register(stream)?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = loop {
            let mut ready = s.readable().await?;
            if let Ok(r) = ready.try_io(|s| {
                let mut s: &TcpStream = s.get_ref();
                s.read(&mut buf)
            }) {
                break r?;
            }
        };
        if n == 0 {
            return s.get_ref().shutdown(Shutdown::Write);
        }
        let mut done = 0;
        while done < n {
            let mut ready = s.writable().await?;
            if let Ok(r) = ready.try_io(|s| {
                let mut s: &TcpStream = s.get_ref();
                s.write(&buf[done..n])
            }) {
                done += r?;
            }
        }
    }
}
