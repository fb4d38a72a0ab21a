//! SACK scoreboard for the sender (RFC 6675; RFC 2018).

use super::seq::Seq;

/// Sorted, merged, bounded SACKed ranges in sequence space.
#[derive(Debug, Default, Clone)]
pub struct Scoreboard {
    ranges: Vec<(Seq, Seq)>,
}

impl Scoreboard {
    pub fn new() -> Self {
        todo!()
    }

    pub fn clear(&mut self) {
        todo!()
    }

    /// Applies the SACK blocks of one ACK. Blocks outside (snd_una,
    /// snd_nxt] or inverted are ignored (also D-SACK blocks below snd_una,
    /// RFC 2883). Returns the number of newly SACKed bytes.
    pub fn update(&mut self, snd_una: Seq, snd_nxt: Seq, blocks: &[(Seq, Seq)]) -> usize {
        todo!()
    }

    /// Cumulative ACK advanced to snd_una: forget ranges below it.
    pub fn advance(&mut self, snd_una: Seq) {
        todo!()
    }

    pub fn is_sacked(&self, seq: Seq) -> bool {
        todo!()
    }

    pub fn sacked_bytes(&self) -> usize {
        todo!()
    }

    pub fn is_empty(&self) -> bool {
        todo!()
    }

    /// End of the highest SACKed range.
    pub fn highest_sacked(&self) -> Option<Seq> {
        todo!()
    }

    /// RFC 6675 IsLost(SeqNum): true if DupThresh (3) discontiguous SACKed
    /// ranges, or more than (DupThresh-1)*smss SACKed bytes, lie above seq.
    pub fn is_lost(&self, seq: Seq, smss: usize) -> bool {
        todo!()
    }

    /// RFC 6675 SetPipe over [snd_una, snd_nxt): bytes not SACKed and not
    /// lost count once; bytes below high_rxt (retransmitted) count again.
    pub fn pipe(&self, snd_una: Seq, snd_nxt: Seq, high_rxt: Seq, smss: usize) -> usize {
        todo!()
    }

    /// RFC 6675 NextSeg() rule 1 (and rule 3 when `rule3`): the first range
    /// at or above high_rxt that is not SACKed and is lost (rule 1), or not
    /// SACKed at all (rule 3), as (start, len <= smss) below snd_nxt.
    /// Rule 2 (new data) is the caller's.
    pub fn next_seg(
        &self,
        snd_una: Seq,
        snd_nxt: Seq,
        high_rxt: Seq,
        smss: usize,
        rule3: bool,
    ) -> Option<(Seq, usize)> {
        todo!()
    }
}
