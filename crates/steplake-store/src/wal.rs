//! Write-ahead log: segment files of length- and CRC-framed records.
//!
//! Layout: `DATA_DIR/wal/<first-lsn, 20 digits>.wal`. Each record is
//!
//! ```text
//! u32 LE  body length (bytes after the CRC)
//! u32 LE  CRC-32 of the body
//! body:   u64 LE lsn | u8 kind | payload
//! ```
//!
//! Log sequence numbers (LSNs) increase by one per record across segments.
//! On replay, an incomplete or CRC-failing record that ends the newest segment
//! is a torn write from a crash and is dropped; one followed by more data, or
//! found in an older segment, is corruption and stops recovery with an error
//! naming the file and offset.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::StoreError;

/// Bytes of framing before a record's body.
const HEADER_LEN: usize = 8;
/// Largest body accepted on replay; a longer length field means corruption.
pub const MAX_RECORD_LEN: usize = 1 << 30;
const SEGMENT_SUFFIX: &str = ".wal";

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// A run was created, resumed or finished: payload is the run as JSON.
    Run = 1,
    /// A batch of scalar points: payload from [`crate::record::encode_scalar_record`].
    Scalars = 2,
    /// A tensor part: payload from [`crate::tensor_record::encode_tensor_part`].
    Tensor = 3,
    /// A batch of scalar points and the events its points fired, durable
    /// together: payload from [`crate::record::encode_events_trailer`].
    ScalarsWithEvents = 4,
    /// A standing condition registered or removed: payload is a
    /// `ConditionChange` as JSON.
    Condition = 5,
    /// Events fired apart from any batch (by a prediction condition's fit):
    /// payload is the run id and the events as JSON.
    Events = 6,
}

impl RecordKind {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(RecordKind::Run),
            2 => Some(RecordKind::Scalars),
            3 => Some(RecordKind::Tensor),
            4 => Some(RecordKind::ScalarsWithEvents),
            5 => Some(RecordKind::Condition),
            6 => Some(RecordKind::Events),
            _ => None,
        }
    }
}

/// One record read back from the log.
#[derive(Debug)]
pub struct Record {
    /// Log sequence number.
    pub lsn: u64,
    /// What the payload holds.
    pub kind: RecordKind,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

/// Appends a framed record to `out`.
pub fn frame_record(out: &mut Vec<u8>, lsn: u64, kind: RecordKind, payload: &[u8]) {
    let mut payload_crc = crc32fast::Hasher::new();
    payload_crc.update(payload);
    frame_record_with_crc(out, lsn, kind, payload, &payload_crc);
}

/// Appends a framed record whose payload CRC was computed beforehand (off the
/// WAL thread); the record CRC is derived from it without re-reading the payload.
pub fn frame_record_with_crc(
    out: &mut Vec<u8>,
    lsn: u64,
    kind: RecordKind,
    payload: &[u8],
    payload_crc: &crc32fast::Hasher,
) {
    let body_len = 8 + 1 + payload.len();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&lsn.to_le_bytes());
    crc.update(&[kind as u8]);
    crc.combine(payload_crc);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(payload);
}

/// The WAL directory of a data directory.
pub fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("wal")
}

fn segment_path(dir: &Path, first_lsn: u64) -> PathBuf {
    dir.join(format!("{first_lsn:020}{SEGMENT_SUFFIX}"))
}

/// Segments in `dir` as (first lsn, path), oldest first.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut segments = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(segments),
        Err(e) => return Err(StoreError::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SEGMENT_SUFFIX)) else {
            continue;
        };
        if let Ok(first_lsn) = stem.parse::<u64>() {
            segments.push((first_lsn, entry.path()));
        }
    }
    segments.sort();
    Ok(segments)
}

/// Result of reading every segment.
#[derive(Debug, Default)]
pub struct Replay {
    /// Valid records in LSN order.
    pub records: Vec<Record>,
    /// A torn tail that was found at the end of the newest segment:
    /// (segment, byte length of its valid prefix).
    pub torn_tail: Option<(PathBuf, u64)>,
}

/// Reads the records of the log that may be past `covered_lsn`, in order.
///
/// Segments all of whose records are at or below `covered_lsn` (the ones
/// [`delete_covered_segments`] would delete) are skipped unread: what the
/// manifest covers is never replayed. A torn tail is reported (not an
/// error); corruption anywhere else is [`StoreError::Corrupt`].
pub fn replay(dir: &Path, covered_lsn: u64) -> Result<Replay, StoreError> {
    let mut segments = list_segments(dir)?;
    let covered = covered_segment_count(&segments, covered_lsn);
    segments.drain(..covered);
    let mut replay = Replay::default();
    let mut expected_lsn: Option<u64> = None;
    for (i, (first_lsn, path)) in segments.iter().enumerate() {
        let is_newest = i + 1 == segments.len();
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| StoreError::io(path, e))?;
        if let Some(expected) = expected_lsn {
            if *first_lsn != expected && !bytes.is_empty() {
                return Err(StoreError::corrupt(
                    path,
                    0,
                    format!("segment starts at LSN {first_lsn} but LSN {expected} was expected; a segment is missing"),
                ));
            }
        }
        let mut offset = 0usize;
        while offset < bytes.len() {
            match parse_record(&bytes[offset..]) {
                Ok((record, used)) => {
                    if let Some(expected) = expected_lsn {
                        if record.lsn != expected {
                            return Err(StoreError::corrupt(
                                path,
                                offset as u64,
                                format!(
                                    "record has LSN {} but {expected} was expected",
                                    record.lsn
                                ),
                            ));
                        }
                    }
                    expected_lsn = Some(record.lsn + 1);
                    replay.records.push(record);
                    offset += used;
                }
                Err(problem) => {
                    let ends_file = match problem {
                        ParseProblem::Incomplete => true,
                        ParseProblem::BadCrc { end } => end >= bytes.len(),
                        ParseProblem::BadLength | ParseProblem::BadKind => false,
                    };
                    // A torn write can only be the very end of the log: an
                    // unfinished record with nothing valid after it. A damaged
                    // length field looks unfinished too, but records follow.
                    let followed =
                        ends_file && valid_record_follows(&bytes, offset + 1, expected_lsn);
                    if is_newest && ends_file && !followed {
                        replay.torn_tail = Some((path.clone(), offset as u64));
                        break;
                    }
                    let what = if followed {
                        format!(
                            "{}, yet valid records follow it, so it is damage, not a torn write",
                            problem.describe()
                        )
                    } else {
                        problem.describe().to_string()
                    };
                    return Err(StoreError::corrupt(
                        path,
                        offset as u64,
                        format!(
                            "{what}; the log cannot be replayed past it and the segment was left as it is. \
                             Restore the data directory from a backup, or move this segment away to start \
                             with the records before it"
                        ),
                    ));
                }
            }
        }
        if expected_lsn.is_none() {
            expected_lsn = Some(*first_lsn);
        }
    }
    Ok(replay)
}

/// Whether a whole, valid record starts anywhere in `bytes` at or after
/// `from` (with an LSN at or past `expected_lsn`, when known). Cheap checks
/// (length, kind, LSN) come before the CRC, so the scan is linear.
fn valid_record_follows(bytes: &[u8], from: usize, expected_lsn: Option<u64>) -> bool {
    let mut offset = from;
    while offset + HEADER_LEN + 9 <= bytes.len() {
        let at = &bytes[offset..];
        let body_len = u32::from_le_bytes([at[0], at[1], at[2], at[3]]) as usize;
        let plausible = (9..=MAX_RECORD_LEN).contains(&body_len)
            && HEADER_LEN + body_len <= at.len()
            && RecordKind::from_u8(at[HEADER_LEN + 8]).is_some()
            && expected_lsn.is_none_or(|expected| {
                let lsn = u64::from_le_bytes(
                    at[HEADER_LEN..HEADER_LEN + 8]
                        .try_into()
                        .unwrap_or([0xff; 8]),
                );
                lsn >= expected && lsn - expected < 1 << 32
            });
        if plausible && parse_record(at).is_ok() {
            return true;
        }
        offset += 1;
    }
    false
}

enum ParseProblem {
    Incomplete,
    BadLength,
    BadCrc { end: usize },
    BadKind,
}

impl ParseProblem {
    fn describe(&self) -> &'static str {
        match self {
            ParseProblem::Incomplete => "a record is cut short",
            ParseProblem::BadLength => "a record has an impossible length",
            ParseProblem::BadCrc { .. } => "a record fails its CRC check",
            ParseProblem::BadKind => "a record has an unknown kind",
        }
    }
}

fn parse_record(bytes: &[u8]) -> Result<(Record, usize), ParseProblem> {
    if bytes.len() < HEADER_LEN {
        return Err(ParseProblem::Incomplete);
    }
    let body_len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if !(9..=MAX_RECORD_LEN).contains(&body_len) {
        // A zero-length header at the very end is what a torn append of the
        // header itself looks like; anything else is garbage.
        return Err(if bytes[..HEADER_LEN].iter().all(|&b| b == 0) {
            ParseProblem::Incomplete
        } else {
            ParseProblem::BadLength
        });
    }
    let end = HEADER_LEN + body_len;
    if bytes.len() < end {
        return Err(ParseProblem::Incomplete);
    }
    let body = &bytes[HEADER_LEN..end];
    if crc32fast::hash(body) != crc {
        return Err(ParseProblem::BadCrc { end });
    }
    let lsn = u64::from_le_bytes(body[0..8].try_into().map_err(|_| ParseProblem::BadLength)?);
    let kind = RecordKind::from_u8(body[8]).ok_or(ParseProblem::BadKind)?;
    Ok((
        Record {
            lsn,
            kind,
            payload: body[9..].to_vec(),
        },
        end,
    ))
}

/// How the log makes appends durable before they are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// fsync after every record: slowest, each ack waits for its own fsync.
    Always,
    /// Group commit: every record waiting at the time shares one fsync.
    #[default]
    Batch,
    /// Never fsync: acks once the OS has the bytes (survives a process crash,
    /// not a power loss).
    Off,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "batch" => Ok(FsyncPolicy::Batch),
            "off" => Ok(FsyncPolicy::Off),
            other => Err(format!(
                "unknown fsync policy {other:?}; use always, batch or off"
            )),
        }
    }
}

/// The open, newest segment that appends go to.
pub struct WalWriter {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    len: u64,
    next_lsn: u64,
    segment_bytes: u64,
    policy: FsyncPolicy,
    /// Set when a failed append could not be undone.
    damage: Option<String>,
    /// A new segment whose directory entry is not durable yet.
    dir_unsynced: bool,
}

impl WalWriter {
    /// Opens the log for appending after `replay`, cutting off a torn tail.
    pub fn open(
        dir: &Path,
        replay: &Replay,
        next_lsn: u64,
        segment_bytes: u64,
        policy: FsyncPolicy,
    ) -> Result<Self, StoreError> {
        fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        if let Some((path, valid_len)) = &replay.torn_tail {
            tracing::warn!(segment = %path.display(), valid_len, "dropping a torn record at the end of the write-ahead log");
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| StoreError::io(path, e))?;
            f.set_len(*valid_len).map_err(|e| StoreError::io(path, e))?;
            f.sync_all().map_err(|e| StoreError::io(path, e))?;
        }
        // Always start a fresh segment: older ones stay immutable.
        let path = segment_path(dir, next_lsn);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        let len = file.metadata().map_err(|e| StoreError::io(&path, e))?.len();
        sync_dir(dir)?;
        Ok(WalWriter {
            dir: dir.to_path_buf(),
            file,
            path,
            len,
            next_lsn,
            segment_bytes,
            policy,
            damage: None,
            dir_unsynced: false,
        })
    }

    /// The LSN the next record gets.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// Takes the next LSN for a record about to be framed.
    pub fn assign_lsn(&mut self) -> u64 {
        let lsn = self.next_lsn;
        self.next_lsn += 1;
        lsn
    }

    /// The fsync policy in force.
    pub fn policy(&self) -> FsyncPolicy {
        self.policy
    }

    /// Writes framed records and makes them durable per the policy.
    ///
    /// `first_lsn` is the LSN of the first record in `framed`; a new segment is
    /// started before writing when the current one is full. A failed append
    /// is undone: the segment is cut back to its last durable record and the
    /// LSNs of `framed` are given out again, so the next append (once the
    /// disk has room) continues the log as if this one never happened. When
    /// even that fails, [`WalWriter::damage`] says so and every later append
    /// is refused.
    pub fn append(&mut self, framed: &[u8], first_lsn: u64) -> Result<(), StoreError> {
        if let Some(damage) = &self.damage {
            return Err(StoreError::Unavailable {
                reason: format!("the write-ahead log is damaged: {damage}"),
            });
        }
        let appended = self.try_append(framed, first_lsn);
        if appended.is_err() {
            self.undo(first_lsn);
        }
        appended
    }

    fn try_append(&mut self, framed: &[u8], first_lsn: u64) -> Result<(), StoreError> {
        if self.dir_unsynced {
            sync_dir(&self.dir)?;
            self.dir_unsynced = false;
        }
        if self.len > 0 && self.len + framed.len() as u64 > self.segment_bytes {
            self.rotate(first_lsn)?;
        }
        self.file
            .write_all(framed)
            .map_err(|e| StoreError::io(&self.path, e))?;
        if self.policy != FsyncPolicy::Off {
            self.file
                .sync_data()
                .map_err(|e| StoreError::io(&self.path, e))?;
        }
        self.len += framed.len() as u64;
        Ok(())
    }

    /// Cuts the segment back to what the appends before the failed one left.
    fn undo(&mut self, first_lsn: u64) {
        self.next_lsn = first_lsn;
        let cut = self
            .file
            .set_len(self.len)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = cut {
            self.damage = Some(format!(
                "{} could not be cut back to its {} durable bytes after a failed append: {e}",
                self.path.display(),
                self.len
            ));
        }
    }

    /// Why the log cannot take appends any more: a failed append that could
    /// not be undone. `None` while it is healthy.
    pub fn damage(&self) -> Option<&str> {
        self.damage.as_deref()
    }

    fn rotate(&mut self, first_lsn: u64) -> Result<(), StoreError> {
        self.file
            .sync_all()
            .map_err(|e| StoreError::io(&self.path, e))?;
        let path = segment_path(&self.dir, first_lsn);
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        self.path = path;
        self.len = 0;
        // Until the directory is synced the new segment may vanish in a
        // power loss: nothing is appended to it before that succeeds.
        self.dir_unsynced = true;
        sync_dir(&self.dir)?;
        self.dir_unsynced = false;
        Ok(())
    }

    /// Bytes in the current segment.
    pub fn segment_len(&self) -> u64 {
        self.len
    }

    /// Closes the log at a clean stop. When the manifest covers every record
    /// written (`covered_lsn` is the last LSN assigned), every segment goes,
    /// the newest one included, so nothing is left to replay at the next
    /// start; otherwise the covered ones go and the rest is synced.
    pub fn close(mut self, covered_lsn: u64) -> Result<usize, StoreError> {
        self.sync()?;
        if covered_lsn + 1 >= self.next_lsn {
            let segments = list_segments(&self.dir)?;
            return delete_segments(&self.dir, &segments);
        }
        delete_covered_segments(&self.dir, covered_lsn)
    }

    /// Forces everything written so far to disk.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.file
            .sync_all()
            .map_err(|e| StoreError::io(&self.path, e))
    }
}

/// How many of `segments` (oldest first) hold only records at or below
/// `covered_lsn`, judged by where the next segment starts; the newest
/// segment is never counted, since only its writer knows where it ends.
fn covered_segment_count(segments: &[(u64, PathBuf)], covered_lsn: u64) -> usize {
    segments
        .windows(2)
        .take_while(|pair| pair[1].0 <= covered_lsn + 1)
        .count()
}

/// Deletes segments all of whose records have LSN <= `covered_lsn`.
///
/// A segment is covered when the segment after it starts at or below
/// `covered_lsn + 1`; the newest segment is never deleted.
pub fn delete_covered_segments(dir: &Path, covered_lsn: u64) -> Result<usize, StoreError> {
    let segments = list_segments(dir)?;
    let covered = covered_segment_count(&segments, covered_lsn);
    delete_segments(dir, &segments[..covered])
}

fn delete_segments(dir: &Path, segments: &[(u64, PathBuf)]) -> Result<usize, StoreError> {
    for (_, path) in segments {
        fs::remove_file(path).map_err(|e| StoreError::io(path, e))?;
    }
    if !segments.is_empty() {
        sync_dir(dir)?;
    }
    Ok(segments.len())
}

/// Total bytes of all segments.
pub fn total_bytes(dir: &Path) -> u64 {
    list_segments(dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|(_, p)| fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// fsyncs a directory so that creates, renames and deletes in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_records(dir: &Path, n: u64) -> PathBuf {
        let replay = replay(dir, 0).unwrap();
        let mut w = WalWriter::open(dir, &replay, 1, 1 << 20, FsyncPolicy::Off).unwrap();
        let mut buf = Vec::new();
        for _ in 0..n {
            let lsn = w.assign_lsn();
            frame_record(
                &mut buf,
                lsn,
                RecordKind::Run,
                format!("payload {lsn}").as_bytes(),
            );
        }
        w.append(&buf, 1).unwrap();
        w.path.clone()
    }

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        write_records(dir.path(), 3);
        let r = replay(dir.path(), 0).unwrap();
        assert_eq!(r.records.len(), 3);
        assert_eq!(r.records[2].lsn, 3);
        assert_eq!(r.records[2].payload, b"payload 3");
        assert!(r.torn_tail.is_none());
    }

    #[test]
    fn torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_records(dir.path(), 3);
        let len = fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        let r = replay(dir.path(), 0).unwrap();
        assert_eq!(r.records.len(), 2);
        assert!(r.torn_tail.is_some());
    }

    #[test]
    fn corruption_in_the_middle_stops_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_records(dir.path(), 3);
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER_LEN + 10] ^= 0xff; // inside the first record's payload
        fs::write(&path, bytes).unwrap();
        let err = replay(dir.path(), 0).unwrap_err().to_string();
        assert!(err.contains("CRC") && err.contains("offset 0"), "{err}");
    }

    #[test]
    fn covered_segments_are_deleted_but_not_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        for first in [1u64, 10, 20] {
            fs::write(segment_path(dir.path(), first), b"").unwrap();
        }
        assert_eq!(delete_covered_segments(dir.path(), 15).unwrap(), 1);
        assert_eq!(delete_covered_segments(dir.path(), 100).unwrap(), 1);
        assert_eq!(list_segments(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn covered_segments_are_not_even_read() {
        let dir = tempfile::tempdir().unwrap();
        // Records 1..=3 in the first segment, 4..=5 in the second.
        let first = write_records(dir.path(), 3);
        let replay_so_far = replay(dir.path(), 0).unwrap();
        let mut w =
            WalWriter::open(dir.path(), &replay_so_far, 4, 1 << 20, FsyncPolicy::Off).unwrap();
        let mut buf = Vec::new();
        for _ in 0..2 {
            let lsn = w.assign_lsn();
            frame_record(&mut buf, lsn, RecordKind::Run, b"later");
        }
        w.append(&buf, 4).unwrap();
        // Damage the covered segment: a replay that read it would fail.
        fs::write(&first, b"not a record").unwrap();
        let r = replay(dir.path(), 3).unwrap();
        assert_eq!(r.records.iter().map(|r| r.lsn).collect::<Vec<_>>(), [4, 5]);
        assert!(
            replay(dir.path(), 2).is_err(),
            "a segment not fully covered is read"
        );
    }

    /// Records 1..=3 in one segment, then record 4 in a second one; returns
    /// the writer of the second.
    fn two_segments(dir: &Path) -> WalWriter {
        write_records(dir, 3);
        let r = replay(dir, 0).unwrap();
        let mut w = WalWriter::open(dir, &r, 4, 1 << 20, FsyncPolicy::Off).unwrap();
        let mut buf = Vec::new();
        let lsn = w.assign_lsn();
        frame_record(&mut buf, lsn, RecordKind::Run, b"x");
        w.append(&buf, lsn).unwrap();
        w
    }

    #[test]
    fn a_clean_close_with_everything_covered_leaves_no_segment() {
        let dir = tempfile::tempdir().unwrap();
        let w = two_segments(dir.path());
        assert_eq!(w.close(4).unwrap(), 2);
        assert!(list_segments(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn a_close_with_uncovered_records_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let w = two_segments(dir.path());
        assert_eq!(w.close(3).unwrap(), 1, "only the first segment is covered");
        let r = replay(dir.path(), 3).unwrap();
        assert_eq!(r.records.len(), 1);
    }

    #[test]
    fn a_damaged_length_with_records_after_it_is_corruption_not_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_records(dir.path(), 5);
        let mut bytes = fs::read(&path).unwrap();
        // The first record's length now points far past the end of the file.
        bytes[3] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let err = replay(dir.path(), 0).unwrap_err().to_string();
        assert!(
            err.contains("offset 0") && err.contains("valid records follow"),
            "{err}"
        );
        assert_eq!(
            fs::read(&path).unwrap(),
            bytes,
            "the segment is left as it is"
        );
    }
}
