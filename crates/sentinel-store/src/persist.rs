//! The history on disk, in `data_dir/history/`.
//!
//! Files are named `<sequence>.hist` (20 digits) and each one is whole: a header (the
//! magic `CSHIST\r\n`, a little-endian `u32` format version, a kind byte: 1 = the samples
//! since the previous file, 2 = everything), then series records (labels, then chunks as
//! in [`crate::chunk`]), then the record count and a CRC-32 of everything before it.
//! Every file is written to `*.tmp`, fsynced and renamed, then the directory is fsynced,
//! so a crash leaves either the old set of files or the new one.
//!
//! A flush writes what came since the previous flush; every [`FULL_EVERY`] flushes (and
//! after loading or importing) one file with everything replaces all older ones, which
//! also drops from disk what retention and the byte budget dropped from memory.
//!
//! Loading reads the files in order. A file that is truncated or corrupt is logged,
//! counted and skipped. A file of an unknown format version stops loading with
//! [`PersistError::UnsupportedVersion`]: the caller keeps the files untouched (a newer
//! build wrote them) and does not write over them.
//!
//! A `LOCK` file held with `flock` marks the directory as in use: a second process (an
//! import while the sidecar runs) is refused with [`PersistError::Locked`].

use crate::chunk::{Chunk, SAMPLES_PER_CHUNK};
use crate::history::History;
use crate::labels::Labels;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

pub const MAGIC: &[u8; 8] = b"CSHIST\r\n";
/// The on-disk format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const KIND_DELTA: u8 = 1;
const KIND_FULL: u8 = 2;
const HEADER_LEN: usize = 16;
/// Flushes between two full rewrites.
pub const FULL_EVERY: u32 = 120;

#[derive(Debug)]
pub enum PersistError {
    Io(PathBuf, io::Error),
    /// Another process holds the directory's lock.
    Locked(PathBuf),
    UnsupportedVersion {
        file: PathBuf,
        version: u32,
    },
}

impl std::fmt::Display for PersistError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PersistError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            PersistError::Locked(p) => write!(
                f,
                "{} is in use by another process (a running sidecar?): stop it first",
                p.display()
            ),
            PersistError::UnsupportedVersion { file, version } => write!(
                f,
                "{}: history format version {version} is not supported by this build \
                 (it reads version {FORMAT_VERSION}); was it written by a newer comfy-sentinel?",
                file.display()
            ),
        }
    }
}

impl std::error::Error for PersistError {}

/// What loading found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LoadReport {
    pub files: usize,
    pub corrupt_files: usize,
    pub series: usize,
    pub samples: u64,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.pos)?;
            self.pos += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn string(&mut self) -> Option<String> {
        let n = self.varint()? as usize;
        String::from_utf8(self.bytes(n)?.to_vec()).ok()
    }
}

/// One series' record in a file.
pub(crate) type Record = (Labels, Vec<Chunk>);

fn encode_file(kind: u8, records: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        HEADER_LEN
            + records
                .iter()
                .map(|r| 64 + r.1.iter().map(|c| c.data.len() + 16).sum::<usize>())
                .sum::<usize>(),
    );
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&[kind, 0, 0, 0]);
    for (labels, chunks) in records {
        put_varint(&mut out, labels.len() as u64);
        for (k, v) in labels.iter() {
            put_varint(&mut out, k.len() as u64);
            out.extend_from_slice(k.as_bytes());
            put_varint(&mut out, v.len() as u64);
            out.extend_from_slice(v.as_bytes());
        }
        put_varint(&mut out, chunks.len() as u64);
        for c in chunks {
            put_varint(&mut out, c.n as u64);
            put_varint(&mut out, zigzag(c.mint));
            put_varint(&mut out, zigzag(c.maxt));
            put_varint(&mut out, c.data.len() as u64);
            out.extend_from_slice(&c.data);
        }
    }
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

#[derive(Debug)]
pub(crate) enum DecodeError {
    Corrupt(&'static str),
    Version(u32),
}

pub(crate) fn decode_file(b: &[u8]) -> Result<(u8, Vec<Record>), DecodeError> {
    use DecodeError::Corrupt;
    if b.len() < HEADER_LEN + 8 || &b[..8] != MAGIC {
        if b.len() >= 12 && &b[..8] == MAGIC {
            let version = u32::from_le_bytes(b[8..12].try_into().unwrap());
            if version != FORMAT_VERSION {
                return Err(DecodeError::Version(version));
            }
        }
        return Err(Corrupt("too short or not a history file"));
    }
    let version = u32::from_le_bytes(b[8..12].try_into().unwrap());
    if version != FORMAT_VERSION {
        return Err(DecodeError::Version(version));
    }
    let kind = b[12];
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().unwrap()) {
        return Err(Corrupt("checksum mismatch (truncated or damaged)"));
    }
    let (body, count) = body.split_at(body.len() - 4);
    let count = u32::from_le_bytes(count.try_into().unwrap()) as usize;
    let mut r = Reader {
        b: body,
        pos: HEADER_LEN,
    };
    let mut records = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        let n = r.varint().ok_or(Corrupt("labels"))? as usize;
        let mut pairs = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let k = r.string().ok_or(Corrupt("label name"))?;
            let v = r.string().ok_or(Corrupt("label value"))?;
            pairs.push((k, v));
        }
        let nc = r.varint().ok_or(Corrupt("chunk count"))? as usize;
        let mut chunks = Vec::with_capacity(nc.min(4096));
        for _ in 0..nc {
            let n = r.varint().ok_or(Corrupt("chunk"))?;
            let mint = unzigzag(r.varint().ok_or(Corrupt("chunk"))?);
            let maxt = unzigzag(r.varint().ok_or(Corrupt("chunk"))?);
            let len = r.varint().ok_or(Corrupt("chunk"))? as usize;
            let data = r.bytes(len).ok_or(Corrupt("chunk data"))?;
            let n = u16::try_from(n).map_err(|_| Corrupt("chunk sample count"))?;
            chunks.push(Chunk {
                mint,
                maxt,
                n,
                data: data.into(),
            });
        }
        records.push((Labels::from_pairs(pairs), chunks));
    }
    if r.pos != body.len() {
        return Err(Corrupt("trailing bytes"));
    }
    Ok((kind, records))
}

/// Writes `bytes` to `path` atomically: a temporary file, fsync, rename, fsync of the
/// directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn seq_of(p: &Path) -> Option<u64> {
    if p.extension()? != "hist" {
        return None;
    }
    p.file_stem()?.to_str()?.parse().ok()
}

/// The history files of `dir`, oldest first.
fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        if let Some(seq) = seq_of(&p) {
            out.push((seq, p));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads every history file of `dir` into `h` (no lock taken: `history export` reads
/// a directory a running sidecar may be writing, file by file).
pub fn read_dir_into(dir: &Path, h: &History) -> Result<(LoadReport, u64), PersistError> {
    let mut report = LoadReport::default();
    let mut max_seq = 0;
    let files = match list(dir) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((report, 0)),
        Err(e) => return Err(PersistError::Io(dir.to_path_buf(), e)),
    };
    for (seq, path) in files {
        max_seq = max_seq.max(seq);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            // Replaced by a full rewrite while we listed: what it held is in a later file.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(PersistError::Io(path, e)),
        };
        report.files += 1;
        match decode_file(&bytes) {
            Ok((_, records)) => {
                for (labels, chunks) in records {
                    let mut samples = Vec::new();
                    let mut bad = false;
                    for c in &chunks {
                        match c.decode() {
                            Ok(s) => samples.extend(s),
                            Err(_) => bad = true,
                        }
                    }
                    if bad {
                        tracing::warn!(file = %path.display(), series = %labels, "history: undecodable chunk skipped");
                    }
                    report.samples += samples.len() as u64;
                    h.insert(&labels, &samples);
                }
            }
            Err(DecodeError::Version(version)) => {
                return Err(PersistError::UnsupportedVersion {
                    file: path,
                    version,
                })
            }
            Err(DecodeError::Corrupt(why)) => {
                report.corrupt_files += 1;
                h.stats.corrupt_files.fetch_add(1, Ordering::Relaxed);
                tracing::error!(file = %path.display(), reason = why, "history: corrupt file skipped");
            }
        }
    }
    report.series = h.series_count();
    Ok((report, max_seq))
}

/// The history directory of a running sidecar (or of an import): holds its lock.
pub struct Persist {
    dir: PathBuf,
    seq: u64,
    flushes_since_full: u32,
    _lock: File,
}

impl Persist {
    /// Creates `dir` if needed and takes its lock; [`PersistError::Locked`] when another
    /// process holds it.
    pub fn open(dir: &Path) -> Result<Persist, PersistError> {
        let io = |e| PersistError::Io(dir.to_path_buf(), e);
        fs::create_dir_all(dir).map_err(io)?;
        let lock_path = dir.join("LOCK");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| PersistError::Io(lock_path.clone(), e))?;
        // SAFETY: flock on a file descriptor we own.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Err(PersistError::Locked(dir.to_path_buf()));
            }
            return Err(PersistError::Io(lock_path, e));
        }
        // Leftovers of a write interrupted by a crash.
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "tmp") {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(Persist {
            dir: dir.to_path_buf(),
            seq: 0,
            flushes_since_full: 0,
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads every file into `h`, then marks all of it as written.
    pub fn load_into(&mut self, h: &History) -> Result<LoadReport, PersistError> {
        let (report, max_seq) = read_dir_into(&self.dir, h)?;
        self.seq = max_seq;
        let mut inner = h.inner.lock();
        for s in inner.by_name.values_mut().flat_map(|f| f.values_mut()) {
            s.flushed_t = s.last_t;
        }
        Ok(report)
    }

    fn next_path(&mut self) -> PathBuf {
        self.seq += 1;
        self.dir.join(format!("{:020}.hist", self.seq))
    }

    /// Writes what came since the previous flush (or everything, every
    /// [`FULL_EVERY`] flushes). Returns the samples written.
    pub fn flush(&mut self, h: &History) -> io::Result<u64> {
        if self.flushes_since_full + 1 >= FULL_EVERY {
            return self.write_full(h);
        }
        let mut records: Vec<Record> = Vec::new();
        let mut marks: Vec<(Labels, i64)> = Vec::new();
        let mut samples = 0u64;
        {
            let inner = h.inner.lock();
            for (labels, s) in inner.by_name.values().flat_map(|f| f.iter()) {
                if s.last_t <= s.flushed_t {
                    continue;
                }
                let mut new = Vec::new();
                s.range(s.flushed_t.saturating_add(1), i64::MAX, &mut new);
                samples += new.len() as u64;
                records.push((
                    labels.clone(),
                    new.chunks(SAMPLES_PER_CHUNK as usize)
                        .map(Chunk::encode)
                        .collect(),
                ));
                marks.push((labels.clone(), s.last_t));
            }
        }
        if records.is_empty() {
            return Ok(0);
        }
        let path = self.next_path();
        write_atomic(&path, &encode_file(KIND_DELTA, &records))?;
        self.flushes_since_full += 1;
        mark_flushed(h, marks);
        h.stats.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(samples)
    }

    /// Writes everything in one file and removes the older files.
    pub fn write_full(&mut self, h: &History) -> io::Result<u64> {
        let mut records: Vec<Record> = Vec::new();
        let mut marks: Vec<(Labels, i64)> = Vec::new();
        let mut samples = 0u64;
        {
            let inner = h.inner.lock();
            for (labels, s) in inner.by_name.values().flat_map(|f| f.iter()) {
                let mut chunks = s.chunks.clone();
                if !s.head.is_empty() {
                    chunks.push(s.head.to_chunk());
                }
                samples += chunks.iter().map(|c| c.n as u64).sum::<u64>();
                records.push((labels.clone(), chunks));
                marks.push((labels.clone(), s.last_t));
            }
        }
        let path = self.next_path();
        write_atomic(&path, &encode_file(KIND_FULL, &records))?;
        self.flushes_since_full = 0;
        let keep = self.seq;
        for (seq, old) in list(&self.dir)? {
            if seq < keep {
                let _ = fs::remove_file(old);
            }
        }
        mark_flushed(h, marks);
        h.stats.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(samples)
    }
}

fn mark_flushed(h: &History, marks: Vec<(Labels, i64)>) {
    let mut inner = h.inner.lock();
    for (labels, t) in marks {
        let name = labels.get(crate::labels::METRIC_NAME).to_string();
        if let Some(s) = inner
            .by_name
            .get_mut(&name)
            .and_then(|f| f.get_mut(&labels))
        {
            s.flushed_t = s.flushed_t.max(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::METRIC_NAME;
    use crate::store::{stale_nan, STALE_NAN_BITS};

    fn l(i: usize) -> Labels {
        Labels::from_pairs([(METRIC_NAME, "m".to_string()), ("i", i.to_string())])
    }

    fn fill(h: &History, from: i64, to: i64) {
        for k in from..to {
            for i in 0..3 {
                h.append(&l(i), k * 1000, (k * i as i64) as f64);
            }
        }
    }

    /// A history that neither expires nor evicts.
    fn unbounded() -> History {
        History::new(i64::MAX / 4, u64::MAX)
    }

    /// A fresh directory, a history and its persistence, after [`fill`] and a flush for
    /// each of `spans` (one file each).
    fn flushed(spans: &[(i64, i64)]) -> (tempfile::TempDir, History, Persist) {
        let dir = tempfile::tempdir().unwrap();
        let h = unbounded();
        let mut p = Persist::open(dir.path()).unwrap();
        for &(from, to) in spans {
            fill(&h, from, to);
            p.flush(&h).unwrap();
        }
        (dir, h, p)
    }

    fn reload(dir: &Path) -> (History, Result<LoadReport, PersistError>) {
        let h = unbounded();
        let r = Persist::open(dir).and_then(|mut p| p.load_into(&h));
        (h, r)
    }

    #[test]
    fn flushes_and_full_rewrites_load_back_everything() {
        let (dir, h, mut p) = flushed(&[(0, 300)]);
        fill(&h, 300, 500);
        h.append(&l(0), 500_000, stale_nan());
        p.flush(&h).unwrap();
        assert_eq!(p.flush(&h).unwrap(), 0, "nothing new, nothing written");
        let want = h.dump();
        drop(p);
        let (back, r) = reload(dir.path());
        let r = r.unwrap();
        assert_eq!(r.files, 2);
        let got = back.dump();
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(&want) {
            assert_eq!(a.0, b.0);
            let bits =
                |s: &[(i64, f64)]| s.iter().map(|(t, v)| (*t, v.to_bits())).collect::<Vec<_>>();
            assert_eq!(bits(&a.1), bits(&b.1));
        }
        assert_eq!(got[0].1.last().unwrap().1.to_bits(), STALE_NAN_BITS);
        // A full rewrite leaves one file with the same content.
        let mut p = Persist::open(dir.path()).unwrap();
        p.load_into(&back).unwrap();
        p.write_full(&back).unwrap();
        assert_eq!(list(dir.path()).unwrap().len(), 1);
        drop(p);
        assert_eq!(reload(dir.path()).0.dump().len(), want.len());
    }

    #[test]
    fn truncated_and_corrupt_files_are_counted_and_skipped() {
        let (dir, _, p) = flushed(&[(0, 100), (100, 200), (200, 300)]);
        drop(p);
        let files = list(dir.path()).unwrap();
        // Second file truncated, third with a flipped byte.
        let b = fs::read(&files[1].1).unwrap();
        fs::write(&files[1].1, &b[..b.len() / 2]).unwrap();
        let mut b = fs::read(&files[2].1).unwrap();
        b[40] ^= 0x55;
        fs::write(&files[2].1, &b).unwrap();
        // And garbage under a history file name.
        fs::write(dir.path().join(format!("{:020}.hist", 99)), b"hello").unwrap();
        let (back, r) = reload(dir.path());
        let r = r.unwrap();
        assert_eq!(r.corrupt_files, 3);
        assert_eq!(back.stats.corrupt_files.load(Ordering::Relaxed), 3);
        // The first file's samples are there.
        let d = back.dump();
        assert_eq!(d.len(), 3);
        assert_eq!(d[0].1.len(), 100);
    }

    #[test]
    fn unknown_format_version_is_refused_with_a_clear_error() {
        let (dir, _, p) = flushed(&[(0, 10)]);
        drop(p);
        let f = &list(dir.path()).unwrap()[0].1;
        let mut b = fs::read(f).unwrap();
        b[8..12].copy_from_slice(&7u32.to_le_bytes());
        fs::write(f, &b).unwrap();
        let (_, r) = reload(dir.path());
        let e = r.unwrap_err();
        assert!(matches!(
            e,
            PersistError::UnsupportedVersion { version: 7, .. }
        ));
        assert!(e.to_string().contains("version 7 is not supported"), "{e}");
        // The file is left alone.
        assert_eq!(fs::read(f).unwrap(), b);
    }

    #[test]
    fn a_second_process_is_refused_by_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let _p = Persist::open(dir.path()).unwrap();
        let e = Persist::open(dir.path()).err().unwrap();
        assert!(matches!(e, PersistError::Locked(_)));
        assert!(e.to_string().contains("in use"));
    }

    proptest::proptest! {
        /// A file that passes the checksum but holds garbage (a bug or a hostile writer)
        /// is an error or loads what decodes, never a panic.
        #[test]
        fn garbage_with_a_valid_checksum_never_panics(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            count in 0u32..8,
        ) {
            let mut b = Vec::new();
            b.extend_from_slice(MAGIC);
            b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            b.extend_from_slice(&[KIND_DELTA, 0, 0, 0]);
            b.extend_from_slice(&body);
            b.extend_from_slice(&count.to_le_bytes());
            let crc = crc32fast::hash(&b);
            b.extend_from_slice(&crc.to_le_bytes());
            if let Ok((_, records)) = decode_file(&b) {
                for (_, chunks) in records {
                    for c in chunks {
                        let _ = c.decode();
                    }
                }
            }
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join(format!("{:020}.hist", 1)), &b).unwrap();
            let h = unbounded();
            let _ = read_dir_into(dir.path(), &h);
        }
    }
}
