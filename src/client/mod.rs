//! A Rust client of the daemon: `TcpListener`, `TcpStream` and
//! `UdpSocket` with `std::net`'s methods, for a program in another process
//! than the stack. Each wraps the real descriptor the daemon hands over
//! (see `crate::daemon`), so it implements `AsRawFd`/`AsFd` and mio or
//! tokio can register it; blocking and non-blocking modes and timeouts are
//! the descriptor's own.
//!
//! ```no_run
//! use std::io::{Read, Write};
//! let api = tapstack::client::Api::from_env()?;
//! let listener = tapstack::client::TcpListener::bind(&api, "0.0.0.0:7000")?;
//! let (mut s, peer) = listener.accept()?;
//! let mut buf = [0u8; 1024];
//! let n = s.read(&mut buf)?;
//! s.write_all(&buf[..n])?;
//! # Ok::<(), std::io::Error>(())
//! ```

mod net;

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};

use crate::daemon::proto::{self, Msg, op};

pub use net::{TcpListener, TcpStream, UdpSocket};

/// A connection to a daemon's control socket. Clone it freely; requests
/// from clones are serialized (a blocking connect holds it until the
/// handshake ends: open another `Api` for concurrent connects).
#[derive(Clone)]
pub struct Api {
    ctl: Arc<Mutex<OwnedFd>>,
}

fn errno_err(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

impl Api {
    /// Connects to the daemon's control socket at `path` (`SOCK_SEQPACKET`).
    pub fn connect(path: impl AsRef<Path>) -> io::Result<Api> {
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        let addr = UnixAddr::new(path.as_ref())?;
        connect(fd.as_raw_fd(), &addr)?;
        Ok(Api {
            ctl: Arc::new(Mutex::new(fd)),
        })
    }

    /// `TAPSTACK_API`, else `/run/tapstack/tap0.sock`.
    pub fn from_env() -> io::Result<Api> {
        let path = std::env::var_os("TAPSTACK_API")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(proto::default_path("tap0")));
        Api::connect(path)
    }

    /// One request (with socket `fd` attached) and its reply.
    pub(crate) fn call(&self, req: Msg, fd: Option<RawFd>) -> io::Result<(Msg, Option<OwnedFd>)> {
        let ctl = self.ctl.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = req.encode();
        crate::daemon::send_blocking(ctl.as_fd(), &[&bytes], fd)?;
        let mut buf = [0u8; proto::MSG_LEN];
        let got = loop {
            match crate::daemon::recv_blocking(ctl.as_fd(), &mut buf) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => break r?,
            }
        };
        if got.len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the tapstack daemon closed the control connection",
            ));
        }
        let m = Msg::decode(&buf[..got.len])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}")))?;
        if m.errno != 0 {
            return Err(errno_err(m.errno));
        }
        Ok((m, got.fd))
    }

    pub(crate) fn ask(
        &self,
        op: u8,
        fd: &impl AsRawFd,
        a: u32,
        addr: Option<std::net::SocketAddrV4>,
    ) -> io::Result<Msg> {
        let req = Msg {
            op,
            a,
            addr,
            ..Msg::default()
        };
        self.call(req, Some(fd.as_raw_fd())).map(|(m, _)| m)
    }

    /// A new socket of `kind` (proto::TCP or proto::UDP).
    pub(crate) fn socket(&self, kind: u32) -> io::Result<OwnedFd> {
        let req = Msg {
            op: op::SOCKET,
            a: kind,
            ..Msg::default()
        };
        let (_, fd) = self.call(req, None)?;
        fd.ok_or_else(|| io::Error::other("the daemon sent no descriptor"))
    }
}

pub(crate) fn stream_of(fd: OwnedFd) -> UnixStream {
    UnixStream::from(fd)
}
