//! What the examples on the daemon share (included by each with
//! `#[path]`; not an example of its own): the port argument and the
//! listener through the daemon that `TAPSTACK_API` names.

use std::io;

use tapstack::client::{Api, TcpListener};

/// The port of the first argument (7000 when there is none or it is not a
/// port), and a listener on it, on every address of the daemon's stack:
/// `TAPSTACK_API`, else the default control socket.
pub fn listen_on_port_arg() -> io::Result<(u16, TcpListener)> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(7000);
    let api = Api::from_env()?;
    let listener = TcpListener::bind(&api, ("0.0.0.0", port))?;
    Ok((port, listener))
}
