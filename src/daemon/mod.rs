//! The daemon: any program on the machine uses the stack through a Unix
//! control socket, and every socket it opens is a real descriptor in its
//! own process.
//!
//! Design (see README "The daemon"): a TCP connection is one end of an
//! `AF_UNIX` `SOCK_STREAM` socketpair handed to the client with
//! SCM_RIGHTS; a UDP socket is one end of a `SOCK_SEQPACKET` pair whose
//! packets carry an 8-byte address header; a listening socket is a
//! `SOCK_SEQPACKET` end on which each accepted connection arrives as a
//! packet carrying the new connection's descriptor. read/write/poll/epoll/
//! fork/dup then work on them unintercepted. The daemon thread waits in
//! epoll on the control socket, the clients' connections, its ends of
//! every pair and an eventfd the stack signals, and pumps bytes with flow
//! control both ways (`socks`). A socket lives as long as a descriptor of
//! it does anywhere: when the last one closes (a process exits, even by
//! SIGKILL) the daemon's end sees HUP and closes the TCP connection as
//! Linux would at exit.

pub mod proto;
pub mod show;
pub mod watch;

mod fdio;
mod server;
mod socks;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, connect, listen, socket,
};

use crate::api::Net;
pub(crate) use fdio::{recv_blocking, send_blocking};

/// Where and to whom the control socket is offered.
#[derive(Clone, Debug)]
pub struct ApiOptions {
    /// Filesystem path of the `AF_UNIX` control socket; an old file there is replaced.
    pub path: PathBuf,
    /// Permission bits of the socket file (0o600: root only).
    pub mode: u32,
    /// A group allowed to use the stack (the file gets this group).
    pub group: Option<nix::unistd::Gid>,
}

/// The running daemon thread; `stop` (or drop) closes every client's
/// descriptors and removes the socket file.
pub struct Daemon {
    stop: Arc<EventFd>,
    thread: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
}

impl Daemon {
    /// Creates the control socket (mode and group from `opts`) and starts the
    /// daemon thread serving it over `net`. Errors are one-line messages.
    pub fn start(net: &Net, opts: &ApiOptions) -> Result<Daemon, String> {
        raise_fd_limit();
        let listener = open_control_socket(opts)?;
        let stop = Arc::new(
            EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
                .map_err(|e| format!("cannot create eventfd: {e}"))?,
        );
        let server = server::Server::new(net, listener, stop.clone(), opts.group.is_some())
            .map_err(|e| format!("cannot start the daemon: {e}"))?;
        let thread = std::thread::Builder::new()
            .name("tapstack-daemon".into())
            .spawn(move || server.run())
            .map_err(|e| format!("cannot start the daemon thread: {e}"))?;
        log::info!("daemon: control socket at {}", opts.path.display());
        Ok(Daemon {
            stop,
            thread: Some(thread),
            path: opts.path.clone(),
        })
    }

    /// The control socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops the daemon thread (waiting for it), which closes every client's
    /// descriptors, and removes the socket file. Idempotent.
    pub fn stop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sets or clears O_NONBLOCK (for the client library's descriptors).
pub(crate) fn set_blocking_mode(fd: &OwnedFd, nonblocking: bool) -> std::io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let fl = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    let fl = if nonblocking {
        fl | OFlag::O_NONBLOCK
    } else {
        fl - OFlag::O_NONBLOCK
    };
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(fl))?;
    Ok(())
}

/// Every client socket costs the daemon one descriptor: use the hard
/// limit, not the 1024 soft default.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn open_control_socket(opts: &ApiOptions) -> Result<OwnedFd, String> {
    let path = &opts.path;
    let shown = path.display();
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir).map_err(|e| {
            format!(
                "cannot create {} for the control socket: {e}",
                dir.display()
            )
        })?;
    }
    let sock = || {
        socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(|e| format!("cannot create the control socket: {e}"))
    };
    let addr = UnixAddr::new(path).map_err(|e| format!("bad control socket path {shown}: {e}"))?;
    if path.exists() {
        // A live daemon answers; a stale file from a crash does not.
        let probe = sock()?;
        if connect(probe.as_raw_fd(), &addr).is_ok() {
            return Err(format!(
                "{shown} is in use by another tapstack (choose another with --api PATH)"
            ));
        }
        std::fs::remove_file(path).map_err(|e| format!("cannot remove stale {shown}: {e}"))?;
    }
    let fd = sock()?;
    // Create the file with no permissions, then open it up as asked: no
    // window in which a wider mode applies.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o777));
    let bound = bind(fd.as_raw_fd(), &addr);
    nix::sys::stat::umask(old);
    bound.map_err(|e| format!("cannot bind the control socket {shown}: {e}"))?;
    if let Some(gid) = opts.group {
        nix::unistd::chown(path, None, Some(gid))
            .map_err(|e| format!("cannot give {shown} to group {gid}: {e}"))?;
    }
    std::fs::set_permissions(
        path,
        std::os::unix::fs::PermissionsExt::from_mode(opts.mode & 0o777),
    )
    .map_err(|e| format!("cannot set the mode of {shown}: {e}"))?;
    listen(&fd.as_fd(), Backlog::new(1024).unwrap_or(Backlog::MAXCONN))
        .map_err(|e| format!("cannot listen on {shown}: {e}"))?;
    Ok(fd)
}
