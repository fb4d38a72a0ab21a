//! errno values of the BSD facade: Linux numbers, glibc texts, and the
//! mapping from std's error kinds.

use std::fmt;
use std::io;

/// errno values the facade returns. `code()` gives the Linux number.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Errno {
    /// Not an open descriptor.
    EBADF,
    /// Invalid argument, or the call does not fit the socket's state.
    EINVAL,
    /// The local address is taken.
    EADDRINUSE,
    /// The address is not the stack's own.
    EADDRNOTAVAIL,
    /// The peer refused (RST to a SYN, or ICMP port unreachable).
    ECONNREFUSED,
    /// The peer reset the connection.
    ECONNRESET,
    /// The connection was aborted locally.
    ECONNABORTED,
    /// Nothing ready without blocking, or a timeout ran out.
    EAGAIN,
    /// The connection timed out (retransmissions or keepalive unanswered).
    ETIMEDOUT,
    /// Not connected.
    ENOTCONN,
    /// No destination: the socket is not connected.
    EDESTADDRREQ,
    /// The datagram is too large.
    EMSGSIZE,
    /// Sending to a broadcast address without SO_BROADCAST.
    EACCES,
    /// No route to the host (ARP unanswered, or ICMP).
    EHOSTUNREACH,
    /// The network is unreachable (off-link without a gateway).
    ENETUNREACH,
    /// Sending on a stream that is shut down or never connected.
    EPIPE,
    /// Address family not supported (the stack is IPv4-only).
    EAFNOSUPPORT,
    /// Protocol not supported.
    EPROTONOSUPPORT,
    /// Operation or flag not supported on this socket.
    EOPNOTSUPP,
    /// Interrupted.
    EINTR,
    /// Out of buffer space.
    ENOMEM,
    /// Too many open descriptors (`MAX_FDS`).
    EMFILE,
    /// A non-blocking connect has started.
    EINPROGRESS,
    /// A connect is already in progress.
    EALREADY,
    /// Already connected (or listening).
    EISCONN,
    /// Option not available at this protocol level.
    ENOPROTOOPT,
    /// Any other error (the network stack stopped).
    EIO,
}

impl Errno {
    /// The Linux errno number.
    pub fn code(self) -> i32 {
        use nix::libc;
        match self {
            Errno::EBADF => libc::EBADF,
            Errno::EINVAL => libc::EINVAL,
            Errno::EADDRINUSE => libc::EADDRINUSE,
            Errno::EADDRNOTAVAIL => libc::EADDRNOTAVAIL,
            Errno::ECONNREFUSED => libc::ECONNREFUSED,
            Errno::ECONNRESET => libc::ECONNRESET,
            Errno::ECONNABORTED => libc::ECONNABORTED,
            Errno::EAGAIN => libc::EAGAIN,
            Errno::ETIMEDOUT => libc::ETIMEDOUT,
            Errno::ENOTCONN => libc::ENOTCONN,
            Errno::EDESTADDRREQ => libc::EDESTADDRREQ,
            Errno::EMSGSIZE => libc::EMSGSIZE,
            Errno::EACCES => libc::EACCES,
            Errno::EHOSTUNREACH => libc::EHOSTUNREACH,
            Errno::ENETUNREACH => libc::ENETUNREACH,
            Errno::EPIPE => libc::EPIPE,
            Errno::EAFNOSUPPORT => libc::EAFNOSUPPORT,
            Errno::EPROTONOSUPPORT => libc::EPROTONOSUPPORT,
            Errno::EOPNOTSUPP => libc::EOPNOTSUPP,
            Errno::EINTR => libc::EINTR,
            Errno::ENOMEM => libc::ENOMEM,
            Errno::EMFILE => libc::EMFILE,
            Errno::EINPROGRESS => libc::EINPROGRESS,
            Errno::EALREADY => libc::EALREADY,
            Errno::EISCONN => libc::EISCONN,
            Errno::ENOPROTOOPT => libc::ENOPROTOOPT,
            Errno::EIO => libc::EIO,
        }
    }

    /// The errno for a std error kind (what the socket types return).
    pub fn from_kind(kind: io::ErrorKind) -> Errno {
        use io::ErrorKind as K;
        match kind {
            K::WouldBlock => Errno::EAGAIN,
            K::TimedOut => Errno::ETIMEDOUT,
            K::AddrInUse => Errno::EADDRINUSE,
            K::AddrNotAvailable => Errno::EADDRNOTAVAIL,
            K::ConnectionRefused => Errno::ECONNREFUSED,
            K::ConnectionReset => Errno::ECONNRESET,
            K::ConnectionAborted => Errno::ECONNABORTED,
            K::NotConnected => Errno::ENOTCONN,
            K::BrokenPipe => Errno::EPIPE,
            K::PermissionDenied => Errno::EACCES,
            K::HostUnreachable => Errno::EHOSTUNREACH,
            K::NetworkUnreachable => Errno::ENETUNREACH,
            K::InvalidInput | K::InvalidData => Errno::EINVAL,
            K::Unsupported => Errno::EOPNOTSUPP,
            K::Interrupted => Errno::EINTR,
            K::OutOfMemory => Errno::ENOMEM,
            _ => Errno::EIO,
        }
    }

    /// The errno for a raw OS error number, if it is one we name.
    pub fn from_code(code: i32) -> Option<Errno> {
        ALL.iter().copied().find(|e| e.code() == code)
    }

    /// The strerror(3) text, as glibc words it.
    pub fn message(self) -> &'static str {
        match self {
            Errno::EBADF => "Bad file descriptor",
            Errno::EINVAL => "Invalid argument",
            Errno::EADDRINUSE => "Address already in use",
            Errno::EADDRNOTAVAIL => "Cannot assign requested address",
            Errno::ECONNREFUSED => "Connection refused",
            Errno::ECONNRESET => "Connection reset by peer",
            Errno::ECONNABORTED => "Software caused connection abort",
            Errno::EAGAIN => "Resource temporarily unavailable",
            Errno::ETIMEDOUT => "Connection timed out",
            Errno::ENOTCONN => "Transport endpoint is not connected",
            Errno::EDESTADDRREQ => "Destination address required",
            Errno::EMSGSIZE => "Message too long",
            Errno::EACCES => "Permission denied",
            Errno::EHOSTUNREACH => "No route to host",
            Errno::ENETUNREACH => "Network is unreachable",
            Errno::EPIPE => "Broken pipe",
            Errno::EAFNOSUPPORT => "Address family not supported by protocol",
            Errno::EPROTONOSUPPORT => "Protocol not supported",
            Errno::EOPNOTSUPP => "Operation not supported",
            Errno::EINTR => "Interrupted system call",
            Errno::ENOMEM => "Cannot allocate memory",
            Errno::EMFILE => "Too many open files",
            Errno::EINPROGRESS => "Operation now in progress",
            Errno::EALREADY => "Operation already in progress",
            Errno::EISCONN => "Transport endpoint is already connected",
            Errno::ENOPROTOOPT => "Protocol not available",
            Errno::EIO => "Input/output error",
        }
    }
}

const ALL: [Errno; 27] = [
    Errno::EBADF,
    Errno::EINVAL,
    Errno::EADDRINUSE,
    Errno::EADDRNOTAVAIL,
    Errno::ECONNREFUSED,
    Errno::ECONNRESET,
    Errno::ECONNABORTED,
    Errno::EAGAIN,
    Errno::ETIMEDOUT,
    Errno::ENOTCONN,
    Errno::EDESTADDRREQ,
    Errno::EMSGSIZE,
    Errno::EACCES,
    Errno::EHOSTUNREACH,
    Errno::ENETUNREACH,
    Errno::EPIPE,
    Errno::EAFNOSUPPORT,
    Errno::EPROTONOSUPPORT,
    Errno::EOPNOTSUPP,
    Errno::EINTR,
    Errno::ENOMEM,
    Errno::EMFILE,
    Errno::EINPROGRESS,
    Errno::EALREADY,
    Errno::EISCONN,
    Errno::ENOPROTOOPT,
    Errno::EIO,
];

impl From<io::Error> for Errno {
    fn from(e: io::Error) -> Errno {
        e.raw_os_error()
            .and_then(Errno::from_code)
            .unwrap_or_else(|| Errno::from_kind(e.kind()))
    }
}

impl From<io::ErrorKind> for Errno {
    fn from(kind: io::ErrorKind) -> Errno {
        Errno::from_kind(kind)
    }
}

/// Back to std: the OS error with the same number, so `kind()` and the
/// message match what std would give for a kernel socket.
impl From<Errno> for io::Error {
    fn from(e: Errno) -> io::Error {
        io::Error::from_raw_os_error(e.code())
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Errno {}

#[cfg(test)]
mod tests {
    use super::*;
    use io::ErrorKind as K;

    #[test]
    fn std_kinds_map_to_errno() {
        let cases = [
            (K::WouldBlock, Errno::EAGAIN),
            (K::TimedOut, Errno::ETIMEDOUT),
            (K::AddrInUse, Errno::EADDRINUSE),
            (K::AddrNotAvailable, Errno::EADDRNOTAVAIL),
            (K::ConnectionRefused, Errno::ECONNREFUSED),
            (K::ConnectionReset, Errno::ECONNRESET),
            (K::ConnectionAborted, Errno::ECONNABORTED),
            (K::NotConnected, Errno::ENOTCONN),
            (K::BrokenPipe, Errno::EPIPE),
            (K::PermissionDenied, Errno::EACCES),
            (K::HostUnreachable, Errno::EHOSTUNREACH),
            (K::NetworkUnreachable, Errno::ENETUNREACH),
            (K::InvalidInput, Errno::EINVAL),
            (K::Interrupted, Errno::EINTR),
            (K::Unsupported, Errno::EOPNOTSUPP),
            (K::Other, Errno::EIO),
        ];
        for (kind, errno) in cases {
            assert_eq!(Errno::from(io::Error::new(kind, "x")), errno, "{kind:?}");
            assert_eq!(Errno::from(kind), errno, "{kind:?}");
        }
    }

    #[test]
    fn raw_os_errors_keep_their_number_and_round_trip() {
        for e in ALL {
            assert_eq!(Errno::from(io::Error::from_raw_os_error(e.code())), e);
            assert_eq!(Errno::from(io::Error::from(e)), e);
            assert_eq!(Errno::from_code(e.code()), Some(e));
        }
        // Round trip through std keeps the kind std gives a kernel socket.
        assert_eq!(io::Error::from(Errno::EAGAIN).kind(), K::WouldBlock);
        assert_eq!(
            io::Error::from(Errno::ECONNREFUSED).kind(),
            K::ConnectionRefused
        );
        assert_eq!(Errno::from_code(-1), None);
        // A number we do not name falls back to the kind.
        let e = io::Error::from_raw_os_error(nix::libc::ENOSPC);
        assert_eq!(Errno::from(e), Errno::EIO);
    }

    #[test]
    fn codes_are_distinct_and_linux_numbers() {
        let mut codes: Vec<i32> = ALL.iter().map(|e| e.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), ALL.len());
        assert_eq!(Errno::EAGAIN.code(), 11);
        assert_eq!(Errno::ECONNREFUSED.code(), 111);
        assert_eq!(Errno::EBADF.code(), 9);
    }

    #[test]
    fn display_is_strerror_text() {
        assert_eq!(
            Errno::EAGAIN.to_string(),
            "Resource temporarily unavailable"
        );
        assert_eq!(Errno::ECONNREFUSED.to_string(), "Connection refused");
        assert_eq!(Errno::EMSGSIZE.to_string(), "Message too long");
        assert_eq!(
            Errno::EDESTADDRREQ.to_string(),
            "Destination address required"
        );
        // glibc's texts are what std prints for the same number.
        for e in ALL {
            let std_text = io::Error::from_raw_os_error(e.code()).to_string();
            assert!(std_text.starts_with(e.message()), "{std_text} vs {e}");
        }
    }
}
