//! TFRecord framing, the container of TensorBoard's event files, checked
//! record by record.
//!
//! ```text
//! offset 0        8            12              12 + n         16 + n
//!        | length | length crc | data (n bytes) | data crc |  next record …
//!          u64 LE   u32 LE       n = length       u32 LE
//! ```
//!
//! Both checksums are CRC-32C, "masked": rotated right by 15 bits plus
//! `0xa282ead8` (so a checksum of data holding checksums stays useful).
//!
//! What a reader does with damage:
//! - the data's checksum fails: the length was intact (its own checksum
//!   held), so that one record is skipped and reading goes on after it;
//! - the length's checksum fails: the length cannot be trusted, so the
//!   reader looks for the next offset where a length and its data both
//!   pass their checksums, and goes on from there;
//! - the file ends inside a record: reading stops (a writer may still be
//!   appending to it).
//!
//! Each is reported with its byte offset.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom};

/// Bytes before a record's data: its length and the length's checksum.
const HEADER: u64 = 12;
/// Bytes after a record's data: its checksum.
const FOOTER: u64 = 4;

/// The masked CRC-32C TFRecord stores.
pub(crate) fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Something wrong with the records of a file, at a byte offset.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Damage {
    /// Where the damaged record starts.
    pub offset: u64,
    /// What was wrong and what the reader did about it.
    pub reason: String,
}

/// One item read from a file: the data of an intact record (at an offset),
/// or damage.
#[derive(Debug)]
pub(crate) enum Item<'a> {
    Record { offset: u64, data: &'a [u8] },
    Damaged(Damage),
}

/// The records of one file, read front to back.
pub(crate) struct Records {
    reader: BufReader<File>,
    /// The offset of the next record.
    offset: u64,
    len: u64,
    data: Vec<u8>,
    done: bool,
}

impl Records {
    /// The records of `file`, whose length is `len`.
    pub(crate) fn new(file: File, len: u64) -> Records {
        Records {
            reader: BufReader::with_capacity(1 << 20, file),
            offset: 0,
            len,
            data: Vec::new(),
            done: false,
        }
    }

    /// The next record or damage; None at the end of the file.
    pub(crate) fn next_item(&mut self) -> std::io::Result<Option<Item<'_>>> {
        if self.done || self.offset >= self.len {
            return Ok(None);
        }
        let start = self.offset;
        let remaining = self.len - start;
        if remaining < HEADER {
            return Ok(Some(self.truncated(start, HEADER - remaining)));
        }
        let mut header = [0u8; HEADER as usize];
        self.reader.read_exact(&mut header)?;
        let (length, crc) = split_header(&header);
        if masked_crc(&header[..8]) != crc {
            return Ok(Some(Item::Damaged(self.resync(start)?)));
        }
        let needed = HEADER.saturating_add(length).saturating_add(FOOTER);
        if needed > remaining {
            return Ok(Some(self.truncated(start, needed - remaining)));
        }
        self.data.resize(length as usize, 0);
        self.reader.read_exact(&mut self.data)?;
        let mut footer = [0u8; FOOTER as usize];
        self.reader.read_exact(&mut footer)?;
        self.offset = start + needed;
        if masked_crc(&self.data) != u32::from_le_bytes(footer) {
            return Ok(Some(Item::Damaged(Damage {
                offset: start,
                reason: format!(
                    "the checksum of the record's {length} bytes does not match; that record is skipped"
                ),
            })));
        }
        Ok(Some(Item::Record {
            offset: start,
            data: &self.data,
        }))
    }

    fn truncated(&mut self, start: u64, missing: u64) -> Item<'_> {
        self.done = true;
        Item::Damaged(Damage {
            offset: start,
            reason: format!(
                "the file ends {missing} bytes before this record does (cut short, or still being written); reading stopped there"
            ),
        })
    }

    /// After a length whose checksum fails at `start`: the damage, with the
    /// reader moved to the next offset that holds an intact record (or to
    /// the end).
    fn resync(&mut self, start: u64) -> std::io::Result<Damage> {
        let mut candidate = start + 1;
        while candidate + HEADER + FOOTER <= self.len {
            if self.intact_at(candidate)? {
                self.reader.seek(SeekFrom::Start(candidate))?;
                self.offset = candidate;
                return Ok(Damage {
                    offset: start,
                    reason: format!(
                        "the record's length is damaged (its checksum does not match); {} bytes skipped to the next intact record at offset {candidate}",
                        candidate - start
                    ),
                });
            }
            candidate += 1;
        }
        self.done = true;
        Ok(Damage {
            offset: start,
            reason: "the record's length is damaged (its checksum does not match), and no intact record follows it".into(),
        })
    }

    /// Whether an intact record (length, data and both checksums) starts at
    /// `offset`.
    fn intact_at(&mut self, offset: u64) -> std::io::Result<bool> {
        self.reader.seek(SeekFrom::Start(offset))?;
        let mut header = [0u8; HEADER as usize];
        match self.reader.read_exact(&mut header) {
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(false),
            other => other?,
        }
        let (length, crc) = split_header(&header);
        if masked_crc(&header[..8]) != crc
            || offset
                .saturating_add(HEADER + FOOTER)
                .saturating_add(length)
                > self.len
        {
            return Ok(false);
        }
        let mut data = vec![0u8; length as usize + FOOTER as usize];
        self.reader.read_exact(&mut data)?;
        let footer = data.split_off(length as usize);
        Ok(masked_crc(&data).to_le_bytes() == footer[..])
    }
}

/// A header's length and the length's stored checksum.
fn split_header(header: &[u8; HEADER as usize]) -> (u64, u32) {
    let mut length = [0u8; 8];
    length.copy_from_slice(&header[..8]);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&header[8..]);
    (u64::from_le_bytes(length), u32::from_le_bytes(crc))
}

/// `data` framed as one record (for tests and fixtures).
#[cfg(test)]
pub(crate) fn frame(data: &[u8]) -> Vec<u8> {
    let length = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&length);
    out.extend_from_slice(&masked_crc(&length).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Every item of a file holding `bytes`: Ok(data) or Err(damage).
    fn read_all(bytes: &[u8]) -> Vec<Result<Vec<u8>, Damage>> {
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(bytes).expect("write");
        file.seek(SeekFrom::Start(0)).expect("seek");
        let mut records = Records::new(file, bytes.len() as u64);
        let mut items = Vec::new();
        while let Some(item) = records.next_item().expect("read") {
            items.push(match item {
                Item::Record { data, .. } => Ok(data.to_vec()),
                Item::Damaged(damage) => Err(damage),
            });
        }
        items
    }

    #[test]
    fn the_masked_checksum_is_tensorflows() {
        // crc32c("") = 0 and crc32c("123456789") = 0xe3069283, masked.
        assert_eq!(masked_crc(b""), 0xa282_ead8);
        assert_eq!(
            masked_crc(b"123456789"),
            0xe306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }

    #[test]
    fn intact_records_are_read_in_order() {
        let records: Vec<Vec<u8>> = vec![b"first".to_vec(), Vec::new(), vec![7u8; 5000]];
        let bytes: Vec<u8> = records.iter().flat_map(|r| frame(r)).collect();
        let read: Vec<Vec<u8>> = read_all(&bytes)
            .into_iter()
            .map(|r| r.expect("intact"))
            .collect();
        assert_eq!(read, records);
    }

    #[test]
    fn a_flipped_data_byte_skips_that_record_only() {
        let mut bytes = frame(b"one");
        let second = bytes.len();
        bytes.extend(frame(b"two"));
        bytes.extend(frame(b"three"));
        bytes[second + 12] ^= 0x40;
        let items = read_all(&bytes);
        assert_eq!(items[0], Ok(b"one".to_vec()));
        let damage = items[1].clone().expect_err("damaged");
        assert_eq!(damage.offset, second as u64);
        assert!(damage.reason.contains("checksum"), "{}", damage.reason);
        assert_eq!(items[2], Ok(b"three".to_vec()));
        assert_eq!(items.len(), 3);
    }

    #[test]
    fn a_damaged_length_resumes_at_the_next_intact_record() {
        let mut bytes = frame(b"one");
        let second = bytes.len();
        bytes.extend(frame(b"two, whose length is damaged"));
        let third = bytes.len();
        bytes.extend(frame(b"three"));
        bytes[second + 2] ^= 0x01;
        let items = read_all(&bytes);
        assert_eq!(items[0], Ok(b"one".to_vec()));
        let damage = items[1].clone().expect_err("damaged");
        assert_eq!(damage.offset, second as u64);
        assert!(
            damage.reason.contains(&format!("offset {third}")),
            "{}",
            damage.reason
        );
        assert_eq!(items[2], Ok(b"three".to_vec()));
        assert_eq!(items.len(), 3);
    }

    #[test]
    fn a_file_cut_inside_a_record_stops_with_its_offset() {
        let mut bytes = frame(b"one");
        let second = bytes.len();
        bytes.extend(frame(b"two"));
        for cut in [second + 5, second + 14, bytes.len() - 1] {
            let items = read_all(&bytes[..cut]);
            assert_eq!(items.len(), 2, "cut at {cut}");
            assert_eq!(items[0], Ok(b"one".to_vec()));
            let damage = items[1].clone().expect_err("truncated");
            assert_eq!(damage.offset, second as u64);
            assert!(damage.reason.contains("ends"), "{}", damage.reason);
        }
    }
}
