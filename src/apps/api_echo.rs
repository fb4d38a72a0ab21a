//! A demo service that proves the daemon's API: TCP echo served by a
//! thread that reaches the stack only through the control socket and the
//! client library, exactly as another process would.

use std::io::{Read, Write};
use std::path::Path;

use crate::client::{Api, TcpListener};

/// Starts the echo on `port` through the daemon at `api`.
pub fn start(api: &Path, port: u16) -> Result<(), String> {
    let api = Api::connect(api).map_err(|e| format!("cannot reach the daemon: {e}"))?;
    let listener = TcpListener::bind(&api, ("0.0.0.0", port)).map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("api-echo".into())
        .spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { break };
                let spawned = std::thread::Builder::new()
                    .name("api-echo-conn".into())
                    .spawn(move || {
                        let mut buf = vec![0u8; 16 * 1024];
                        while let Ok(n) = s.read(&mut buf) {
                            if n == 0 || s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    });
                if spawned.is_err() {
                    log::warn!("api-echo: cannot start a thread; connection dropped");
                }
            }
        })
        .map_err(|e| format!("cannot start the api-echo thread: {e}"))?;
    Ok(())
}
