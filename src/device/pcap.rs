//! A minimal classic-libpcap writer (LINKTYPE_ETHERNET, microsecond
//! timestamps) so `--pcap FILE` captures can be opened in Wireshark or
//! tcpdump. The byte order is fixed to little-endian rather than the host's
//! so the output is identical on every machine; readers detect it from the
//! magic number.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Classic pcap magic for microsecond timestamps.
pub const PCAP_MAGIC: u32 = 0xa1b2_c3d4;
/// Largest frame we record whole; longer frames are cut to this length.
/// tcpdump's default: covers a TSO super-frame (14 + 65,535 bytes).
pub const SNAPLEN: u32 = 262_144;
/// LINKTYPE_ETHERNET: every record starts with an Ethernet header.
pub const LINKTYPE_ETHERNET: u32 = 1;

/// Writes frames in pcap format to any `Write` (a `BufWriter<File>` from
/// [`PcapWriter::create`], or a `Vec<u8>` in tests). Flushes on drop.
pub struct PcapWriter<W: Write = BufWriter<File>> {
    out: W,
}

impl PcapWriter<BufWriter<File>> {
    /// Creates (truncates) `path` and writes the global header.
    pub fn create(path: &Path) -> io::Result<PcapWriter<BufWriter<File>>> {
        PcapWriter::new(BufWriter::new(File::create(path)?))
    }
}

impl<W: Write> PcapWriter<W> {
    /// Wraps `out` and writes the 24-byte global header to it.
    pub fn new(mut out: W) -> io::Result<PcapWriter<W>> {
        let mut hdr = [0u8; 24];
        hdr[0..4].copy_from_slice(&PCAP_MAGIC.to_le_bytes());
        hdr[4..6].copy_from_slice(&2u16.to_le_bytes()); // version major
        hdr[6..8].copy_from_slice(&4u16.to_le_bytes()); // version minor
        // thiszone (8..12) and sigfigs (12..16) stay zero: timestamps are UTC.
        hdr[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        hdr[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&hdr)?;
        Ok(PcapWriter { out })
    }

    /// Appends one record: a 16-byte record header, then the frame (cut to
    /// `SNAPLEN`, with the original length kept in the header).
    pub fn write_frame(&mut self, ts: SystemTime, frame: &[u8]) -> io::Result<()> {
        // A clock before 1970 is nonsense for a capture; record it as 0.
        let since = ts.duration_since(UNIX_EPOCH).unwrap_or_default();
        // The format's seconds field is 32 bits; it wraps in 2106.
        let secs = since.as_secs() as u32;
        let orig_len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let incl_len = orig_len.min(SNAPLEN);
        let mut rec = [0u8; 16];
        rec[0..4].copy_from_slice(&secs.to_le_bytes());
        rec[4..8].copy_from_slice(&since.subsec_micros().to_le_bytes());
        rec[8..12].copy_from_slice(&incl_len.to_le_bytes());
        rec[12..16].copy_from_slice(&orig_len.to_le_bytes());
        self.out.write_all(&rec)?;
        self.out.write_all(&frame[..incl_len as usize])
    }

    /// The writer it writes to.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// Writes buffered records to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl<W: Write> Drop for PcapWriter<W> {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; callers that care call flush().
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn global_header_bytes_are_exact() {
        let mut buf = Vec::new();
        drop(PcapWriter::new(&mut buf).unwrap());
        assert_eq!(
            buf,
            [
                0xd4, 0xc3, 0xb2, 0xa1, // magic a1b2c3d4, little-endian
                2, 0, 4, 0, // version 2.4
                0, 0, 0, 0, // thiszone
                0, 0, 0, 0, // sigfigs
                0, 0, 4, 0, // snaplen 262144
                1, 0, 0, 0, // LINKTYPE_ETHERNET
            ]
        );
    }

    #[test]
    fn record_header_and_payload_are_exact() {
        let mut buf = Vec::new();
        let ts = UNIX_EPOCH + Duration::new(0x0102_0304, 567_890_123);
        {
            let mut w = PcapWriter::new(&mut buf).unwrap();
            w.write_frame(ts, &[0xaa, 0xbb, 0xcc]).unwrap();
            w.flush().unwrap();
        }
        assert_eq!(buf.len(), 24 + 16 + 3);
        assert_eq!(
            &buf[24..],
            &[
                0x04, 0x03, 0x02, 0x01, // ts_sec
                0x52, 0xaa, 0x08, 0x00, // ts_usec = 567890 (0x0008aa52)
                3, 0, 0, 0, // incl_len
                3, 0, 0, 0, // orig_len
                0xaa, 0xbb, 0xcc,
            ]
        );
    }

    #[test]
    fn oversized_frame_is_cut_to_snaplen_keeping_orig_len() {
        let mut buf = Vec::new();
        let frame = vec![7u8; SNAPLEN as usize + 10];
        PcapWriter::new(&mut buf)
            .unwrap()
            .write_frame(UNIX_EPOCH, &frame)
            .unwrap();
        assert_eq!(buf.len(), 24 + 16 + SNAPLEN as usize);
        assert_eq!(&buf[32..36], &SNAPLEN.to_le_bytes());
        assert_eq!(&buf[36..40], &(SNAPLEN + 10).to_le_bytes());
    }

    #[test]
    fn create_writes_a_file_that_is_flushed_on_drop() {
        let path = std::env::temp_dir().join(format!("tapstack-pcap-{}.pcap", std::process::id()));
        {
            let mut w = PcapWriter::create(&path).unwrap();
            w.write_frame(UNIX_EPOCH, &[1, 2, 3, 4]).unwrap();
        }
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(bytes.len(), 24 + 16 + 4);
        assert_eq!(&bytes[40..], &[1, 2, 3, 4]);
    }
}
