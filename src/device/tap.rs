//! The Linux TAP device (`/dev/net/tun` with IFF_TAP | IFF_NO_PI, through
//! the `tun-tap` crate), opened non-blocking, with errors turned into one
//! line that says what to do.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;

use tun_tap::{Iface, Mode};

use super::Device;

pub struct TapDevice {
    iface: Iface,
    /// True if the interface did not exist before we opened it. A TAP we
    /// create is not persistent, so the kernel removes it when we close it.
    pub created: bool,
}

/// Linux interface names are at most IFNAMSIZ - 1 = 15 bytes.
const MAX_NAME: usize = 15;

pub fn interface_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

impl TapDevice {
    pub fn open(name: &str) -> Result<TapDevice, String> {
        if name.is_empty()
            || name.len() > MAX_NAME
            || name.contains(['/', ' ', '%'])
            || name == "."
            || name == ".."
        {
            return Err(format!(
                "invalid TAP name {name:?}: use 1 to {MAX_NAME} characters without '/', '%' or spaces"
            ));
        }
        if !Path::new("/dev/net/tun").exists() {
            return Err(
                "/dev/net/tun does not exist: load the tun module (sudo modprobe tun)".to_string(),
            );
        }
        let existed = interface_exists(name);
        if existed
            && !Path::new("/sys/class/net")
                .join(name)
                .join("tun_flags")
                .exists()
        {
            return Err(format!(
                "interface {name} exists and is not a TAP device: choose another --tap name"
            ));
        }
        let iface =
            Iface::without_packet_info(name, Mode::Tap).map_err(|e| open_error(name, &e))?;
        iface
            .set_non_blocking()
            .map_err(|e| format!("cannot make TAP {name} non-blocking: {e}"))?;
        Ok(TapDevice {
            iface,
            created: !existed,
        })
    }
}

fn open_error(name: &str, e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc_eperm) if libc_eperm == 1 || libc_eperm == 13 => format!(
            "permission denied opening TAP {name}: run with sudo (needs root or CAP_NET_ADMIN)"
        ),
        Some(16) => format!(
            "TAP {name} is busy (another process has it open): stop that process or choose another --tap"
        ),
        Some(2) | Some(19) => {
            "cannot open /dev/net/tun: load the tun module (sudo modprobe tun)".to_string()
        }
        _ => format!("cannot open TAP {name}: {e}"),
    }
}

impl Device for TapDevice {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.iface.recv(buf)
    }

    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        self.iface.send(frame)
    }

    fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor is owned by `self.iface`, which outlives the
        // returned borrow (it is tied to `&self`).
        unsafe { BorrowedFd::borrow_raw(self.iface.as_raw_fd()) }
    }

    fn name(&self) -> &str {
        self.iface.name()
    }
}
