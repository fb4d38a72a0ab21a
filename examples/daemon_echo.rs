//! A TCP echo server in another process than the stack, on the daemon
//! through the Rust client library:
//!
//! ```sh
//! sudo tapstack --api /tmp/ts.sock up &
//! sudo TAPSTACK_API=/tmp/ts.sock cargo run --release --example daemon_echo -- 7000
//! nc 10.0.0.2 7000
//! ```

use std::io::{Read, Write};

#[path = "common/daemon.rs"]
mod daemon;

fn main() -> std::io::Result<()> {
    let (port, listener) = daemon::listen_on_port_arg()?;
    eprintln!("echo on port {port} through the daemon");
    for stream in listener.incoming() {
        let mut s = stream?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
    Ok(())
}
