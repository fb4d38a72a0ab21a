//! The Linux TAP device (`/dev/net/tun` with IFF_TAP | IFF_NO_PI), opened
//! non-blocking, with errors turned into one line that says what to do.
//!
//! With offloads (the default) it is opened with IFF_VNET_HDR, a 10-byte
//! virtio-net header (TUNSETVNETHDRSZ) and TUNSETOFFLOAD(TUN_F_CSUM |
//! TUN_F_TSO4), as QEMU and vhost-net do: the kernel then sends TCP
//! super-frames of up to 64 KB with partial checksums, and takes GSO
//! super-frames from us (see `vnet`). A kernel that refuses any of it gets
//! the plain TAP (through the `tun-tap` crate) and a debug log line.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{OFlag, open};
use nix::libc;
use nix::sys::stat::Mode as FileMode;
use nix::sys::uio::{readv, writev};
use tun_tap::{Iface, Mode};

use super::Device;
use super::vnet::{self, RxMeta, VNET_HDR_LEN, VnetHdr};

/// A TAP interface opened on /dev/net/tun: Ethernet frames in and out,
/// with virtio-net headers (checksum and TSO offloads) when available.
pub struct TapDevice {
    fd: OwnedFd,
    name: String,
    /// Every frame read and written carries a virtio-net header.
    vnet: bool,
    /// True if the interface did not exist before we opened it. A TAP we
    /// create is not persistent, so the kernel removes it when we close it.
    pub created: bool,
}

// <linux/if_tun.h>
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUN_F_CSUM: libc::c_ulong = 0x01;
const TUN_F_TSO4: libc::c_ulong = 0x02;
nix::ioctl_write_ptr_bad!(
    /// TUNSETIFF: attach to (or create) the TAP named in the ifreq.
    tun_set_iff,
    nix::request_code_write!(b'T', 202, size_of::<libc::c_int>()),
    libc::ifreq
);
nix::ioctl_write_int_bad!(
    /// TUNSETOFFLOAD: the offloads the stack accepts from the kernel.
    tun_set_offload,
    nix::request_code_write!(b'T', 208, size_of::<libc::c_uint>())
);
nix::ioctl_write_ptr_bad!(
    /// TUNSETVNETHDRSZ: the virtio-net header length.
    tun_set_vnet_hdr_sz,
    nix::request_code_write!(b'T', 216, size_of::<libc::c_int>()),
    libc::c_int
);

/// Linux interface names are at most IFNAMSIZ - 1 = 15 bytes.
const MAX_NAME: usize = 15;

/// Whether a network interface `name` exists in this namespace.
pub fn interface_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

impl TapDevice {
    /// Opens (creating if needed) the TAP `name`; with `offload`, tries the
    /// virtio-net offloads first and falls back to plain frames.
    pub fn open(name: &str, offload: bool) -> Result<TapDevice, String> {
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
        if offload {
            match open_vnet(name) {
                Ok(fd) => {
                    log::debug!("TAP {name}: virtio-net header, checksum and TSO4 offloads on");
                    return Ok(TapDevice {
                        fd,
                        name: name.to_string(),
                        vnet: true,
                        created: !existed,
                    });
                }
                Err(e) => log::debug!("TAP {name}: offloads unavailable ({e}), plain frames"),
            }
        }
        let iface =
            Iface::without_packet_info(name, Mode::Tap).map_err(|e| open_error(name, &e))?;
        iface
            .set_non_blocking()
            .map_err(|e| format!("cannot make TAP {name} non-blocking: {e}"))?;
        let name = iface.name().to_string();
        // SAFETY: `into_raw_fd` gives up the crate's ownership of a valid,
        // open descriptor; nothing else owns or closes it.
        let fd = unsafe { OwnedFd::from_raw_fd(iface.into_raw_fd()) };
        Ok(TapDevice {
            fd,
            name,
            vnet: false,
            created: !existed,
        })
    }

    /// True when the virtio-net offloads are in use.
    pub fn offload(&self) -> bool {
        self.vnet
    }
}

/// /dev/net/tun attached to `name` with IFF_VNET_HDR, a 10-byte header
/// and checksum + TSO4 offloads; any refusal is an error (the caller falls
/// back, and dropping the descriptor removes a TAP it created).
fn open_vnet(name: &str) -> nix::Result<OwnedFd> {
    let fd = open(
        "/dev/net/tun",
        OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        FileMode::empty(),
    )?;
    // SAFETY: ifreq is plain C data (a name array and a union of
    // integers); all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // The name was checked to be at most 15 bytes: the array keeps its NUL.
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    let size: libc::c_int = VNET_HDR_LEN as libc::c_int;
    // SAFETY: the three ioctls get a descriptor we own, a pointer to a
    // live, initialised ifreq / int of the type <linux/if_tun.h> expects
    // (read, not kept, by the kernel), and a plain integer.
    unsafe {
        tun_set_iff(fd.as_raw_fd(), &req)?;
        tun_set_vnet_hdr_sz(fd.as_raw_fd(), &size)?;
        tun_set_offload(fd.as_raw_fd(), (TUN_F_CSUM | TUN_F_TSO4) as libc::c_int)?;
    }
    Ok(fd)
}

fn open_error(name: &str, e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc_eperm) if libc_eperm == 1 || libc_eperm == 13 => format!(
            "permission denied opening TAP {name}: run with sudo (needs root or CAP_NET_ADMIN), \
             or have a TAP made for your user (ip tuntap add dev {name} mode tap user $USER) \
             and run with --no-host-config"
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
        self.recv_frame(buf).map(|(n, _)| n)
    }

    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        if self.vnet {
            return self.send_vnet(&[IoSlice::new(&vnet::PLAIN), IoSlice::new(frame)]);
        }
        Ok(nix::unistd::write(&self.fd, frame)?)
    }

    fn recv_frame(&self, buf: &mut [u8]) -> io::Result<(usize, RxMeta)> {
        if !self.vnet {
            return Ok((nix::unistd::read(&self.fd, buf)?, RxMeta::PLAIN));
        }
        let mut hdr = [0u8; VNET_HDR_LEN];
        let n = readv(
            &self.fd,
            &mut [IoSliceMut::new(&mut hdr), IoSliceMut::new(buf)],
        )?;
        let Some(len) = n.checked_sub(VNET_HDR_LEN) else {
            return Ok((0, RxMeta::short()));
        };
        Ok((len, vnet::classify_rx(&VnetHdr::from_bytes(&hdr), len)))
    }

    fn gso(&self) -> bool {
        self.vnet
    }

    fn send_vnet(&self, parts: &[IoSlice<'_>]) -> io::Result<usize> {
        if !self.vnet {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        }
        Ok(writev(&self.fd, parts)?)
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn name(&self) -> &str {
        &self.name
    }
}
