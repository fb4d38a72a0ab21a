//! The eleven connection states of RFC 9293 section 3.3.2.

use std::fmt;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
/// A connection's state (RFC 9293 3.3.2, figure 5).
pub enum TcpState {
    /// No connection (before open, or after it ended).
    Closed,
    /// Waiting for a SYN (a listening socket).
    Listen,
    /// Our SYN sent, waiting for the peer's SYN+ACK.
    SynSent,
    /// SYN received and SYN+ACK sent, waiting for the ACK of it.
    SynReceived,
    /// Open: data flows both ways.
    Established,
    /// We closed (FIN sent), waiting for its ACK or the peer's FIN.
    FinWait1,
    /// Our FIN acknowledged, waiting for the peer's FIN.
    FinWait2,
    /// The peer closed (its FIN received); we may still send.
    CloseWait,
    /// Both sides closed at once, waiting for the ACK of our FIN.
    Closing,
    /// The peer closed first and we then sent our FIN, waiting for its ACK.
    LastAck,
    /// Both FINs acknowledged; waiting 2*MSL so that stray segments of this
    /// connection die out before its addresses are reused.
    TimeWait,
}

impl TcpState {
    /// The RFC name ("SYN-SENT").
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Closed => "CLOSED",
            TcpState::Listen => "LISTEN",
            TcpState::SynSent => "SYN-SENT",
            TcpState::SynReceived => "SYN-RECEIVED",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait1 => "FIN-WAIT-1",
            TcpState::FinWait2 => "FIN-WAIT-2",
            TcpState::CloseWait => "CLOSE-WAIT",
            TcpState::Closing => "CLOSING",
            TcpState::LastAck => "LAST-ACK",
            TcpState::TimeWait => "TIME-WAIT",
        }
    }

    /// RFC 9293 3.3.2: SYN exchanged in both directions.
    pub fn is_synchronized(self) -> bool {
        !matches!(
            self,
            TcpState::Closed | TcpState::Listen | TcpState::SynSent | TcpState::SynReceived
        )
    }

    /// States in which the application may still queue data.
    pub fn can_send(self) -> bool {
        matches!(self, TcpState::Established | TcpState::CloseWait)
    }

    /// States in which data from the peer is accepted (3.10.7.4 step 7).
    pub fn can_receive(self) -> bool {
        matches!(
            self,
            TcpState::SynReceived | TcpState::Established | TcpState::FinWait1 | TcpState::FinWait2
        )
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
