//! How the sender finds losses, chosen once when the SYNs are exchanged
//! (RFC 2018 SACK-permitted and `TcpConfig::rack`): duplicate ACKs alone
//! (RFC 5681 3.2, RFC 6582 NewReno), the SACK scoreboard (RFC 6675), or
//! RACK-TLP over the scoreboard (RFC 8985). The behaviour for each lives
//! in the sender: `sender/recovery.rs` (ACKs), `sender/loss.rs` (RACK)
//! and `sender/transmit.rs` (NextSeg), each a `match` on this enum.

use super::sack::Scoreboard;
use super::seq::Seq;

/// The loss detection and recovery of one connection.
#[derive(Debug, Clone)]
pub enum LossRecovery {
    /// No SACK: three duplicate ACKs start fast retransmit, NewReno
    /// partial ACKs resend SND.UNA, the window inflates per duplicate.
    NewReno,
    /// RFC 6675: the scoreboard decides what is lost (IsLost) and the
    /// pipe; NextSeg() retransmits in fast recovery.
    Sack(Scoreboard),
    /// RFC 8985: RACK's send-time records decide what is lost (the
    /// records are the sender's `Rack`, kept for rate sampling too); the
    /// scoreboard says what the receiver holds.
    Rack(Scoreboard),
}

impl LossRecovery {
    /// The mode the negotiated options allow.
    pub fn negotiated(sack: bool, rack: bool) -> LossRecovery {
        match (sack, rack) {
            (false, _) => LossRecovery::NewReno,
            (true, false) => LossRecovery::Sack(Scoreboard::new()),
            (true, true) => LossRecovery::Rack(Scoreboard::new()),
        }
    }

    /// The SACK scoreboard, if SACK runs.
    pub fn scoreboard(&self) -> Option<&Scoreboard> {
        match self {
            LossRecovery::NewReno => None,
            LossRecovery::Sack(sb) | LossRecovery::Rack(sb) => Some(sb),
        }
    }

    /// The SACK scoreboard, if SACK runs.
    pub fn scoreboard_mut(&mut self) -> Option<&mut Scoreboard> {
        match self {
            LossRecovery::NewReno => None,
            LossRecovery::Sack(sb) | LossRecovery::Rack(sb) => Some(sb),
        }
    }

    /// Bytes SACKed above SND.UNA.
    pub fn sacked_bytes(&self) -> usize {
        self.scoreboard().map_or(0, Scoreboard::sacked_bytes)
    }

    /// Whether the byte at `seq` was SACKed.
    pub fn is_sacked(&self, seq: Seq) -> bool {
        self.scoreboard().is_some_and(|sb| sb.is_sacked(seq))
    }

    /// The cumulative ACK reached `una`.
    pub fn advance(&mut self, una: Seq) {
        if let Some(sb) = self.scoreboard_mut() {
            sb.advance(una);
        }
    }

    /// Whether RACK runs.
    pub fn is_rack(&self) -> bool {
        matches!(self, LossRecovery::Rack(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_from_the_negotiated_options() {
        assert!(matches!(
            LossRecovery::negotiated(false, true),
            LossRecovery::NewReno
        ));
        assert!(matches!(
            LossRecovery::negotiated(true, false),
            LossRecovery::Sack(_)
        ));
        let mut r = LossRecovery::negotiated(true, true);
        assert!(r.is_rack());
        assert_eq!(r.sacked_bytes(), 0);
        if let Some(sb) = r.scoreboard_mut() {
            sb.update(Seq(0), Seq(300), &[(Seq(100), Seq(200))]);
        }
        assert!(r.is_sacked(Seq(150)) && !r.is_sacked(Seq(50)));
        assert_eq!(r.sacked_bytes(), 100);
        r.advance(Seq(200));
        assert_eq!(r.sacked_bytes(), 0);
        assert_eq!(LossRecovery::NewReno.sacked_bytes(), 0);
    }
}
