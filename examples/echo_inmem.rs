//! Two tapstack stacks in one process, joined by an in-memory Ethernet
//! link: an echo server on one, a client on the other. No TAP, no root:
//!
//! ```sh
//! cargo run --example echo_inmem
//! ```
//!
//! The client sends 1 MiB, half-closes, reads the echo back and checks it
//! byte for byte; the program exits non-zero if anything differs.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use tapstack::device::pair;
use tapstack::runtime::link::LinkOptions;
use tapstack::{EthernetAddress, Ipv4Cidr, Net, StackConfig, TcpListener, TcpStream};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PORT: u16 = 7;
const LEN: usize = 1 << 20;

fn stack(device: pair::PairDevice, ip: Ipv4Addr, mac_last: u8) -> Result<Net, String> {
    let config = StackConfig::new(
        EthernetAddress([0x02, 0, 0, 0, 0, mac_last]),
        Ipv4Cidr::new(ip, 24),
    );
    Net::start(Arc::new(device), config, &LinkOptions::default())
}

/// Echoes one connection until the client half-closes.
fn serve(listener: TcpListener) -> std::io::Result<usize> {
    let (mut conn, peer) = listener.accept()?;
    println!("server: connection from {peer}");
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0;
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        conn.write_all(&buf[..n])?;
        total += n;
    }
    conn.shutdown(Shutdown::Write)?;
    Ok(total)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (a, b) = pair::link()?;
    let server_net = stack(b, SERVER, 2)?;
    let client_net = stack(a, CLIENT, 1)?;

    let listener = TcpListener::bind(&server_net, (SERVER, PORT))?;
    let server = thread::spawn(move || serve(listener));

    let mut conn = TcpStream::connect(&client_net, (SERVER, PORT))?;
    // Bounded: a broken link fails the example instead of hanging it.
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.set_write_timeout(Some(Duration::from_secs(10)))?;
    let data: Vec<u8> = (0..LEN).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut writer = conn.try_clone()?;
    let sent = data.clone();
    let sender = thread::spawn(move || -> std::io::Result<()> {
        writer.write_all(&sent)?;
        writer.shutdown(Shutdown::Write)
    });
    let mut echoed = Vec::with_capacity(LEN);
    conn.read_to_end(&mut echoed)?;
    sender.join().map_err(|_| "sender panicked")??;
    let served = server.join().map_err(|_| "server panicked")??;

    client_net.shutdown();
    server_net.shutdown();
    if echoed != data || served != LEN {
        return Err(format!(
            "echo differs: sent {LEN} bytes, server saw {served}, got back {}",
            echoed.len()
        )
        .into());
    }
    println!("client: {LEN} bytes echoed byte for byte");
    Ok(())
}
