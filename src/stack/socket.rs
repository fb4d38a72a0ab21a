//! What the core tells the API about a socket: its readiness, and which
//! sockets changed so the runtime wakes exactly their waiters.

/// Readiness of one socket, as `poll(2)` would report it.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    /// recv/accept would not block (data, EOF, a pending connection, or an
    /// error to report).
    pub readable: bool,
    /// send would not block (buffer space, or an error to report).
    pub writable: bool,
    /// The peer closed its side (FIN received) or the connection is gone.
    pub hup: bool,
    /// A pending error (reset, refused, timed out, ICMP error).
    pub error: bool,
}

/// Identifies a socket across transports, for readiness events.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SocketId {
    /// A UDP socket, by its handle in the UDP layer.
    Udp(u32),
    /// A TCP socket (listener or connection), by its handle in the TCP layer.
    Tcp(u32),
}
