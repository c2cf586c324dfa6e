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
use crate::history::{read_disk_chunks, DiskChunk, History};
use crate::labels::Labels;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub const MAGIC: &[u8; 8] = b"CSHIST\r\n";
/// The on-disk format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const KIND_DELTA: u8 = 1;
const KIND_FULL: u8 = 2;
const HEADER_LEN: usize = 16;
/// Flushes between two full rewrites.
pub const FULL_EVERY: u32 = 120;
/// Flushes after a failed full rewrite before it is tried again.
pub const FULL_RETRY_AFTER: u32 = 10;

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

/// Reads a file's body from a buffered reader, keeping its position and stopping at
/// `end` (where the record count begins).
struct Reader<R> {
    r: R,
    pos: u64,
    end: u64,
}

impl<R: BufRead> Reader<R> {
    fn byte(&mut self) -> Option<u8> {
        if self.pos >= self.end {
            return None;
        }
        let mut b = [0u8];
        self.r.read_exact(&mut b).ok()?;
        self.pos += 1;
        Some(b[0])
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn bytes(&mut self, n: usize) -> Option<Vec<u8>> {
        if (n as u64) > self.end - self.pos {
            return None;
        }
        let mut out = vec![0u8; n];
        self.r.read_exact(&mut out).ok()?;
        self.pos += n as u64;
        Some(out)
    }

    fn skip(&mut self, n: u64) -> Option<()> {
        if n > self.end - self.pos {
            return None;
        }
        let copied = io::copy(&mut (&mut self.r).take(n), &mut io::sink()).ok()?;
        (copied == n).then_some(())?;
        self.pos += n;
        Some(())
    }

    fn string(&mut self) -> Option<String> {
        let n = self.varint()? as usize;
        String::from_utf8(self.bytes(n)?).ok()
    }
}

/// One series' record in a file.
pub(crate) type Record = (Labels, Vec<Chunk>);

fn put_labels(out: &mut Vec<u8>, labels: &Labels) {
    put_varint(out, labels.len() as u64);
    for (k, v) in labels.iter() {
        put_varint(out, k.len() as u64);
        out.extend_from_slice(k.as_bytes());
        put_varint(out, v.len() as u64);
        out.extend_from_slice(v.as_bytes());
    }
}

fn put_chunk_header(out: &mut Vec<u8>, n: u16, mint: i64, maxt: i64, len: usize) {
    put_varint(out, n as u64);
    put_varint(out, zigzag(mint));
    put_varint(out, zigzag(maxt));
    put_varint(out, len as u64);
}

fn header(kind: u8) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12] = kind;
    h
}

fn encode_file(kind: u8, records: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        HEADER_LEN
            + records
                .iter()
                .map(|r| 64 + r.1.iter().map(|c| c.data.len() + 16).sum::<usize>())
                .sum::<usize>(),
    );
    out.extend_from_slice(&header(kind));
    for (labels, chunks) in records {
        put_labels(&mut out, labels);
        put_varint(&mut out, chunks.len() as u64);
        for c in chunks {
            put_chunk_header(&mut out, c.n, c.mint, c.maxt, c.data.len());
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
    Io(io::Error),
}

/// One chunk of a record as read from a file: where its bytes are, and the bytes
/// themselves when they were asked for.
#[derive(Debug)]
pub(crate) struct ChunkRec {
    pub(crate) mint: i64,
    pub(crate) maxt: i64,
    pub(crate) n: u16,
    pub(crate) offset: u64,
    pub(crate) len: u32,
    pub(crate) data: Option<Vec<u8>>,
}

/// The records of a file as read: labels and where each chunk is.
type ReadRecords = Vec<(Labels, Vec<ChunkRec>)>;

/// Checks the header and the checksum of a file of `len` bytes, streaming it through a
/// small buffer; returns its kind.
fn check_file<R: Read>(r: R, len: u64) -> Result<u8, DecodeError> {
    use DecodeError::Corrupt;
    let mut r = BufReader::with_capacity(64 << 10, r);
    let mut head = [0u8; HEADER_LEN];
    let got = read_up_to(&mut r, &mut head).map_err(DecodeError::Io)?;
    if got >= 12 && &head[..8] == MAGIC {
        let version = u32::from_le_bytes(head[8..12].try_into().unwrap());
        if version != FORMAT_VERSION {
            return Err(DecodeError::Version(version));
        }
    }
    if len < (HEADER_LEN + 8) as u64 || got < HEADER_LEN || &head[..8] != MAGIC {
        return Err(Corrupt("too short or not a history file"));
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&head);
    let mut left = len - HEADER_LEN as u64 - 4;
    while left > 0 {
        let buf = r.fill_buf().map_err(DecodeError::Io)?;
        if buf.is_empty() {
            return Err(Corrupt("checksum mismatch (truncated or damaged)"));
        }
        let take = buf.len().min(left as usize);
        hasher.update(&buf[..take]);
        r.consume(take);
        left -= take as u64;
    }
    let mut crc = [0u8; 4];
    if read_up_to(&mut r, &mut crc).map_err(DecodeError::Io)? != 4
        || hasher.finalize() != u32::from_le_bytes(crc)
    {
        return Err(Corrupt("checksum mismatch (truncated or damaged)"));
    }
    Ok(head[12])
}

fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// Reads the records of a checked file (`r` positioned after the header). Chunk bytes
/// are read when `want_data(n, is_last)` says so and skipped otherwise.
fn read_records<R: BufRead>(
    r: R,
    len: u64,
    count: u32,
    want_data: &dyn Fn(u16, bool) -> bool,
) -> Result<ReadRecords, DecodeError> {
    use DecodeError::Corrupt;
    let mut r = Reader {
        r,
        pos: HEADER_LEN as u64,
        end: len - 8,
    };
    let mut records = Vec::with_capacity((count as usize).min(1 << 16));
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
        for j in 0..nc {
            let n = r.varint().ok_or(Corrupt("chunk"))?;
            let mint = unzigzag(r.varint().ok_or(Corrupt("chunk"))?);
            let maxt = unzigzag(r.varint().ok_or(Corrupt("chunk"))?);
            let len = r.varint().ok_or(Corrupt("chunk"))?;
            let n = u16::try_from(n).map_err(|_| Corrupt("chunk sample count"))?;
            let len32 = u32::try_from(len).map_err(|_| Corrupt("chunk data"))?;
            let offset = r.pos;
            let data = if want_data(n, j + 1 == nc) {
                Some(r.bytes(len32 as usize).ok_or(Corrupt("chunk data"))?)
            } else {
                r.skip(len).ok_or(Corrupt("chunk data"))?;
                None
            };
            chunks.push(ChunkRec {
                mint,
                maxt,
                n,
                offset,
                len: len32,
                data,
            });
        }
        records.push((Labels::from_pairs(pairs), chunks));
    }
    if r.pos != r.end {
        return Err(Corrupt("trailing bytes"));
    }
    Ok(records)
}

/// Decodes a whole file held in memory (every chunk's bytes read).
#[cfg(test)]
pub(crate) fn decode_file(b: &[u8]) -> Result<(u8, ReadRecords), DecodeError> {
    let kind = check_file(b, b.len() as u64)?;
    let count = u32::from_le_bytes(b[b.len() - 8..b.len() - 4].try_into().unwrap());
    let records = read_records(&b[HEADER_LEN..], b.len() as u64, count, &|_, _| true)?;
    Ok((kind, records))
}

/// Reads one file into `h`: a full file's chunks stay on disk (indexed, the file kept
/// open), except an unfinished last chunk, which becomes the series' open chunk; a
/// delta file's samples are decoded into memory. A series already holding samples
/// (files that overlap after a crash) is merged in memory instead.
fn load_file(path: &Path, h: &History) -> Result<u64, DecodeError> {
    let mut f = File::open(path).map_err(DecodeError::Io)?;
    let len = f.metadata().map_err(DecodeError::Io)?.len();
    let kind = check_file(&f, len)?;
    let mut count = [0u8; 4];
    f.read_exact_at(&mut count, len - 8)
        .map_err(DecodeError::Io)?;
    let count = u32::from_le_bytes(count);
    f.seek(io::SeekFrom::Start(HEADER_LEN as u64))
        .map_err(DecodeError::Io)?;
    let full = kind == KIND_FULL;
    let records = read_records(
        BufReader::with_capacity(64 << 10, &f),
        len,
        count,
        &|n, last| !full || (last && n < SAMPLES_PER_CHUNK),
    )?;
    let file = Arc::new(f);
    let slot = if full {
        h.inner.lock().add_file(file.clone())
    } else {
        None
    };
    let mut samples = 0u64;
    for (labels, mut chunks) in records {
        // The unfinished last chunk of a full file becomes the open chunk again.
        let head: Vec<(i64, f64)> = match chunks.last() {
            Some(ChunkRec {
                data: Some(d), n, ..
            }) if full => match crate::chunk::decode(d, *n) {
                Ok(s) => {
                    chunks.pop();
                    s
                }
                Err(_) => Vec::new(),
            },
            _ => Vec::new(),
        };
        samples += head.len() as u64 + chunks.iter().map(|c| c.n as u64).sum::<u64>();
        if let Some(slot) = slot {
            let disk: Vec<DiskChunk> = chunks
                .iter()
                .map(|c| DiskChunk {
                    mint: c.mint,
                    maxt: c.maxt,
                    offset: c.offset,
                    len: c.len,
                    file: slot,
                    n: c.n,
                })
                .collect();
            if h.add_disk_series(&labels, disk, &head) {
                continue;
            }
        }
        // Decode into memory (a delta file, or a series that overlaps what is there).
        let mut all = Vec::new();
        let mut bad = false;
        for c in &chunks {
            let data = match &c.data {
                Some(d) => std::borrow::Cow::Borrowed(d.as_slice()),
                None => {
                    let mut d = vec![0u8; c.len as usize];
                    if file.read_exact_at(&mut d, c.offset).is_err() {
                        bad = true;
                        continue;
                    }
                    std::borrow::Cow::Owned(d)
                }
            };
            match crate::chunk::decode(&data, c.n) {
                Ok(s) => all.extend(s),
                Err(_) => bad = true,
            }
        }
        all.extend(head);
        if bad {
            tracing::warn!(file = %path.display(), series = %labels, "history: undecodable chunk skipped");
        }
        h.insert(&labels, &all);
    }
    if slot.is_some() {
        h.inner.lock().close_unused_files();
    }
    Ok(samples)
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
        match load_file(&path, h) {
            Ok(samples) => {
                report.files += 1;
                report.samples += samples;
            }
            // Replaced by a full rewrite while we listed: what it held is in a later file.
            Err(DecodeError::Io(e)) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(DecodeError::Io(e)) => return Err(PersistError::Io(path, e)),
            Err(DecodeError::Version(version)) => {
                return Err(PersistError::UnsupportedVersion {
                    file: path,
                    version,
                })
            }
            Err(DecodeError::Corrupt(why)) => {
                report.files += 1;
                report.corrupt_files += 1;
                h.stats.corrupt_files.fetch_add(1, Ordering::Relaxed);
                tracing::error!(file = %path.display(), reason = why, "history: corrupt file skipped");
            }
        }
    }
    report.series = h.series_count();
    Ok((report, max_seq))
}

/// Hands memory freed by loading or importing back to the operating system (glibc keeps
/// freed heap memory for reuse otherwise).
#[allow(unsafe_code)]
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only inspects and shrinks the allocator's own free lists; it
    // has no preconditions and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
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
                if e.path()
                    .extension()
                    .is_some_and(|x| x == "tmp" || x == "spill")
                {
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
        {
            let mut inner = h.inner.lock();
            for s in inner.by_name.values_mut().flat_map(|f| f.values_mut()) {
                s.flushed_t = s.last_t;
            }
        }
        release_freed_memory();
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
            match self.write_full(h) {
                Ok(n) => return Ok(n),
                Err(e) => {
                    // Counted and logged here; the new samples still go to disk as a
                    // delta file, and the full rewrite is tried again later (a full
                    // disk or one unreadable old chunk must not stop persistence).
                    h.stats.flush_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, retry_in_flushes = FULL_RETRY_AFTER, "history: full rewrite failed; writing a delta file instead");
                    self.flushes_since_full = FULL_EVERY.saturating_sub(FULL_RETRY_AFTER + 1);
                }
            }
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
                s.range(
                    &inner.files,
                    s.flushed_t.saturating_add(1),
                    i64::MAX,
                    &mut new,
                );
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

    /// Writes everything in one file and removes the older files. The sealed chunks
    /// then live in that file only: memory keeps their index.
    pub fn write_full(&mut self, h: &History) -> io::Result<u64> {
        let path = self.next_path();
        let samples = write_sealed(h, &path, true)?;
        self.flushes_since_full = 0;
        let keep = self.seq;
        for (seq, old) in list(&self.dir)? {
            if seq < keep {
                let _ = fs::remove_file(old);
            }
        }
        self.remove_spills();
        h.stats.flushes.fetch_add(1, Ordering::Relaxed);
        release_freed_memory();
        Ok(samples)
    }

    /// Moves the sealed chunks held in memory to a spill file (what a large import does
    /// to stay within its memory): not a history file, it is removed by the next full
    /// rewrite and at the next start.
    pub fn spill(&mut self, h: &History) -> io::Result<u64> {
        self.seq += 1;
        let path = self.dir.join(format!("{:020}.spill", self.seq));
        let n = write_sealed(h, &path, false)?;
        release_freed_memory();
        Ok(n)
    }

    /// Removes the spill files (an import that failed leaves none behind).
    pub fn remove_spills(&self) {
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "spill") {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }
}

/// What a rewrite took from one series.
struct Snap {
    labels: Labels,
    id: u64,
    disk: Vec<DiskChunk>,
    mem: Vec<Chunk>,
    head: Option<Chunk>,
    last_t: i64,
}

/// A writer that counts and checksums what goes through it.
struct Counting<W: Write> {
    w: W,
    crc: crc32fast::Hasher,
    pos: u64,
}

impl<W: Write> Counting<W> {
    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.w.write_all(b)?;
        self.crc.update(b);
        self.pos += b.len() as u64;
        Ok(())
    }
}

/// Writes the sealed chunks (`full`: everything, with the open chunks and the chunks
/// already on disk, as a full file; else only the sealed chunks in memory, as a spill
/// file) to `path` atomically, streaming, then points the index at the new file and
/// lets go of the memory copies. Appends can go on while the file is written.
fn write_sealed(h: &History, path: &Path, full: bool) -> io::Result<u64> {
    let (snaps, files) = {
        let inner = h.inner.lock();
        let snaps: Vec<Snap> = inner
            .by_name
            .values()
            .flat_map(|f| f.iter())
            .filter(|(_, s)| full || !s.chunks.is_empty())
            .map(|(labels, s)| Snap {
                labels: labels.clone(),
                id: s.id,
                disk: if full { s.disk.clone() } else { Vec::new() },
                mem: s.chunks.clone(),
                head: (full && !s.head.is_empty()).then(|| s.head.to_chunk()),
                last_t: s.last_t,
            })
            .collect();
        (snaps, inner.files.clone())
    };
    let tmp = path.with_extension("tmp");
    let mut refs: Vec<Vec<DiskChunk>> = Vec::with_capacity(snaps.len());
    let mut samples = 0u64;
    // A failed write (a full disk, an unreadable old chunk) leaves no partial file.
    let written = (|| -> io::Result<()> {
        let f = File::create(&tmp)?;
        let mut w = Counting {
            w: io::BufWriter::with_capacity(256 << 10, f),
            crc: crc32fast::Hasher::new(),
            pos: 0,
        };
        w.put(&header(if full { KIND_FULL } else { KIND_DELTA }))?;
        let mut buf = Vec::with_capacity(256);
        for snap in &snaps {
            buf.clear();
            put_labels(&mut buf, &snap.labels);
            let nc = snap.disk.len() + snap.mem.len() + snap.head.is_some() as usize;
            put_varint(&mut buf, nc as u64);
            w.put(&buf)?;
            let mut out: Vec<DiskChunk> = Vec::with_capacity(nc);
            let put = |w: &mut Counting<_>, n: u16, mint: i64, maxt: i64, data: &[u8]| {
                let mut hb = Vec::with_capacity(32);
                put_chunk_header(&mut hb, n, mint, maxt, data.len());
                w.put(&hb)?;
                let offset = w.pos;
                w.put(data)?;
                io::Result::Ok(DiskChunk {
                    mint,
                    maxt,
                    offset,
                    len: data.len() as u32,
                    file: 0,
                    n,
                })
            };
            let mut err = None;
            read_disk_chunks(&files, &snap.disk, &mut |c, data| {
                if err.is_none() {
                    match put(&mut w, c.n, c.mint, c.maxt, data) {
                        Ok(d) => out.push(d),
                        Err(e) => err = Some(e),
                    }
                }
            })?;
            if let Some(e) = err {
                return Err(e);
            }
            for c in &snap.mem {
                out.push(put(&mut w, c.n, c.mint, c.maxt, &c.data)?);
            }
            if let Some(c) = &snap.head {
                put(&mut w, c.n, c.mint, c.maxt, &c.data)?;
            }
            samples += out.iter().map(|c| c.n as u64).sum::<u64>()
                + snap.head.as_ref().map_or(0, |c| c.n as u64);
            refs.push(out);
        }
        w.put(&(snaps.len() as u32).to_le_bytes())?;
        let crc = w.crc.clone().finalize();
        w.w.write_all(&crc.to_le_bytes())?;
        let f = w.w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    drop(files);
    // Point the index at the new file.
    let file = Arc::new(File::open(path)?);
    let mut inner = h.inner.lock();
    let slot = inner.add_file(file);
    for (snap, mut new) in snaps.iter().zip(refs) {
        let Some(slot) = slot else { break };
        let Some(last) = new.last().map(|c| c.mint) else {
            continue;
        };
        // The history's memory totals follow what this moves to disk.
        inner.change_series(&snap.labels, |s| {
            if s.id != snap.id {
                return; // rebuilt meanwhile: it stays in memory until the next rewrite
            }
            for c in &mut new {
                c.file = slot;
            }
            // Meanwhile chunks can only have been dropped at the front (retention, budget)
            // and sealed at the back: what is left of the snapshot is a suffix of it.
            let first_kept = if full {
                s.disk
                    .first()
                    .map(|c| c.mint)
                    .or_else(|| s.chunks.first().map(|c| c.mint))
            } else {
                s.chunks.first().map(|c| c.mint)
            }
            .unwrap_or(i64::MAX);
            new.retain(|c| c.mint >= first_kept);
            let covered = if full { s.disk.len() } else { 0 }
                + s.chunks.iter().filter(|c| c.mint <= last).count();
            if covered != new.len() {
                return; // not the expected shape: leave it as it is
            }
            s.chunks.retain(|c| c.mint > last);
            if full {
                s.disk = new;
            } else {
                s.disk.extend(new);
            }
            s.disk.shrink_to_fit();
        });
    }
    inner.close_unused_files();
    drop(inner);
    if full {
        mark_flushed(h, snaps.into_iter().map(|s| (s.labels, s.last_t)).collect());
    }
    Ok(samples)
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

    fn bits(d: &[(Labels, Vec<(i64, f64)>)]) -> Vec<(Labels, Vec<(i64, u64)>)> {
        d.iter()
            .map(|(l, s)| {
                (
                    l.clone(),
                    s.iter().map(|(t, v)| (*t, v.to_bits())).collect(),
                )
            })
            .collect()
    }

    /// (sealed chunks in memory, sealed chunks on disk) over all series.
    fn residence(h: &History) -> (usize, usize) {
        let inner = h.inner.lock();
        inner
            .by_name
            .values()
            .flat_map(|f| f.values())
            .fold((0, 0), |(m, d), s| (m + s.chunks.len(), d + s.disk.len()))
    }

    #[test]
    fn sealed_chunks_are_read_from_disk_after_restart() {
        let (dir, h, mut p) = flushed(&[(0, 1000)]);
        fill(&h, 1000, 1030);
        p.write_full(&h).unwrap();
        let want = bits(&h.dump());
        drop(p);
        let (back, r) = reload(dir.path());
        r.unwrap();
        let (mem, disk) = residence(&back);
        assert_eq!(mem, 0, "no sealed chunk is loaded into memory");
        assert!(disk >= 3 * 8, "{disk}");
        assert_eq!(bits(&back.dump()), want);
        // The unfinished chunk is open again: appending continues it.
        let inner = back.inner.lock();
        let s = inner.by_name["m"].values().next().unwrap();
        assert_eq!(s.head.len(), 1030 % SAMPLES_PER_CHUNK);
        drop(inner);
        // Memory holds the index, not the chunk bytes.
        assert!(
            back.memory_bytes() * 2 < back.bytes(),
            "memory {} of {}",
            back.memory_bytes(),
            back.bytes()
        );
        // Queries over a part of the range read just that part.
        let mut got = Vec::new();
        back.select_with(
            Some("m"),
            &mut |l| l.get("i") == "1",
            500_000,
            600_000,
            &mut |_, s| got = s,
        );
        assert_eq!(got.len(), 101);
        assert_eq!(got[0], (500_000, 500.0));
    }

    #[test]
    fn selection_reads_disk_chunks_and_visits_without_holding_the_history_lock() {
        let (dir, h, mut p) = flushed(&[(0, 1000)]);
        p.write_full(&h).unwrap();
        drop(p);
        let (back, r) = reload(dir.path());
        r.unwrap();
        assert!(residence(&back).1 > 0, "chunks on disk");
        let mut visited = 0;
        back.select_with(None, &mut |_| true, 0, i64::MAX, &mut |_, s| {
            assert_eq!(s.len(), 1000);
            // Appends (collector writes, refreshes) may go on meanwhile.
            assert!(back.inner.try_lock().is_some(), "lock held during a visit");
            visited += 1;
        });
        assert!(visited > 0);
    }

    #[test]
    fn merge_into_a_series_whose_chunks_cannot_be_read_keeps_the_series() {
        // The file shrinks under the sidecar (its chunks cannot be read), or its chunk
        // bytes are overwritten in place (they read, but end before their samples).
        for damage in ["shrunk", "overwritten"] {
            let (dir, h, mut p) = flushed(&[(0, 1000)]);
            p.write_full(&h).unwrap();
            drop(p);
            let (back, r) = reload(dir.path());
            r.unwrap();
            let (_, disk_before) = residence(&back);
            let samples_before = back.sample_count();
            let (_, file) = list(dir.path()).unwrap().pop().unwrap();
            let f = fs::OpenOptions::new().write(true).open(&file).unwrap();
            let len = f.metadata().unwrap().len();
            if damage == "shrunk" {
                f.set_len(64).unwrap();
            } else {
                use std::os::unix::fs::FileExt;
                f.write_all_at(&vec![0xff; len as usize - 128], 64).unwrap();
                assert_eq!(f.metadata().unwrap().len(), len);
            }
            // An older sample of a stored series: a merge, which must read what is
            // stored.
            back.insert(&l(0), &[(500, 1.0)]);
            assert_eq!(
                residence(&back).1,
                disk_before,
                "{damage}: disk chunks still indexed"
            );
            assert_eq!(
                back.sample_count(),
                samples_before,
                "{damage}: nothing rebuilt from a partial read"
            );
        }
    }

    #[test]
    fn failed_full_rewrite_falls_back_to_a_delta_file_and_is_retried() {
        let (dir, h, mut p) = flushed(&[(0, 100)]);
        fill(&h, 100, 200);
        // The next full rewrite cannot create its temporary file.
        p.flushes_since_full = FULL_EVERY - 1;
        let blocked = dir.path().join(format!("{:020}.tmp", p.seq + 1));
        fs::create_dir(&blocked).unwrap();
        let written = p.flush(&h).unwrap();
        assert!(written > 0, "the new samples went to a delta file");
        assert_eq!(h.stats.flush_errors.load(Ordering::Relaxed), 1);
        assert_eq!(p.flushes_since_full, FULL_EVERY - FULL_RETRY_AFTER);
        fs::remove_dir(&blocked).unwrap();
        let want = bits(&h.dump());
        let back = unbounded();
        read_dir_into(dir.path(), &back).unwrap();
        assert_eq!(bits(&back.dump()), want, "nothing lost");
        // The rewrite is tried again after FULL_RETRY_AFTER flushes and then succeeds.
        for i in 0..FULL_RETRY_AFTER as i64 {
            fill(&h, 200 + i, 201 + i);
            p.flush(&h).unwrap();
        }
        assert_eq!(p.flushes_since_full, 0, "a full rewrite ran");
        assert_eq!(list(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn full_rewrite_keeps_chunks_readable() {
        let (dir, h, mut p) = flushed(&[(0, 700)]);
        p.write_full(&h).unwrap();
        assert_eq!(
            residence(&h).0,
            0,
            "the rewrite moved the sealed chunks to disk"
        );
        for round in 0..3 {
            // New samples, a delta flush, then a rewrite that copies the chunks of the
            // previous full file (already removed from the directory) into a new one.
            fill(&h, 700 + round * 300, 1000 + round * 300);
            p.flush(&h).unwrap();
            p.write_full(&h).unwrap();
            assert_eq!(list(dir.path()).unwrap().len(), 1);
            assert_eq!(h.inner.lock().files.iter().flatten().count(), 1);
        }
        let want = bits(&h.dump());
        assert_eq!(want[0].1.len(), 1600);
        drop(p);
        let (back, r) = reload(dir.path());
        assert_eq!(r.unwrap().files, 1);
        assert_eq!(bits(&back.dump()), want);
    }

    #[test]
    fn retention_and_budget_drop_disk_chunks_and_the_next_rewrite_drops_them_from_disk() {
        let (dir, h, mut p) = flushed(&[(0, 2000)]);
        p.write_full(&h).unwrap();
        let size = |dir: &Path| -> u64 {
            list(dir)
                .unwrap()
                .iter()
                .map(|(_, p)| fs::metadata(p).unwrap().len())
                .sum()
        };
        let before = size(dir.path());
        h.set_limits(1_000_000, u64::MAX);
        h.maintain(2_000_000);
        let d = h.dump();
        assert!(d[0].1[0].0 >= 1_000_000 - 120_000, "{}", d[0].1[0].0);
        assert!(h.stats.expired_samples.load(Ordering::Relaxed) > 0);
        h.set_limits(i64::MAX / 4, (h.bytes() / 2) as u64);
        h.maintain(2_000_000);
        assert!(h.stats.evicted_samples.load(Ordering::Relaxed) > 0);
        p.write_full(&h).unwrap();
        assert!(
            size(dir.path()) * 3 < before,
            "{} vs {before}",
            size(dir.path())
        );
        let want = bits(&h.dump());
        drop(p);
        assert_eq!(bits(&reload(dir.path()).0.dump()), want);
    }

    #[test]
    fn overlapping_full_files_left_by_a_crash_are_merged() {
        let (dir, h, mut p) = flushed(&[(0, 500)]);
        p.write_full(&h).unwrap();
        let first = fs::read(&list(dir.path()).unwrap()[0].1).unwrap();
        fill(&h, 500, 800);
        p.write_full(&h).unwrap();
        let want = bits(&h.dump());
        drop(p);
        // A crash between the rename of the new full file and the removal of the old.
        fs::write(dir.path().join(format!("{:020}.hist", 0)), first).unwrap();
        let (back, r) = reload(dir.path());
        assert_eq!(r.unwrap().files, 2);
        assert_eq!(bits(&back.dump()), want);
    }

    #[test]
    fn spilled_chunks_stay_readable_and_the_next_full_rewrite_removes_the_spill_file() {
        let dir = tempfile::tempdir().unwrap();
        let h = unbounded();
        let mut p = Persist::open(dir.path()).unwrap();
        fill(&h, 0, 600);
        p.spill(&h).unwrap();
        assert_eq!(residence(&h).0, 0);
        fill(&h, 600, 900);
        p.spill(&h).unwrap();
        let want = bits(&h.dump());
        p.write_full(&h).unwrap();
        assert_eq!(bits(&h.dump()), want);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != "LOCK")
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].ends_with(".hist"));
        drop(p);
        assert_eq!(bits(&reload(dir.path()).0.dump()), want);
    }

    #[test]
    fn appends_and_eviction_during_full_rewrites_lose_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let h = std::sync::Arc::new(unbounded());
        let mut p = Persist::open(dir.path()).unwrap();
        fill(&h, 0, 2000);
        p.write_full(&h).unwrap();
        let writer = {
            let h = h.clone();
            std::thread::spawn(move || {
                for k in 2000..20_000i64 {
                    for i in 0..3 {
                        h.append(&l(i), k * 1000, (k * i as i64) as f64);
                    }
                    if k % 500 == 0 {
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                    if k % 3000 == 0 {
                        // Retention drops old chunks at the front meanwhile.
                        h.set_limits((20_000 - k) * 1000, u64::MAX);
                        h.maintain(k * 1000);
                    }
                }
            })
        };
        let mut rewrites = 0;
        while !writer.is_finished() {
            p.write_full(&h).unwrap();
            p.flush(&h).unwrap();
            rewrites += 1;
        }
        assert!(rewrites >= 2, "{rewrites}");
        writer.join().unwrap();
        p.write_full(&h).unwrap();
        let want = bits(&h.dump());
        for (_, s) in &want {
            // Every sample after the oldest kept one is there, in order, none twice.
            assert_eq!(s.last().unwrap().0, 19_999_000);
            // Nothing the last retention pass (cutoff 16,000 s) dropped came back.
            assert!(s[0].0 > 16_000_000 - 121_000, "{}", s[0].0);
            assert!(s.windows(2).all(|w| w[1].0 - w[0].0 == 1000), "a gap");
        }
        assert_eq!(residence(&h).0, 0);
        drop(p);
        assert_eq!(bits(&reload(dir.path()).0.dump()), want);
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
                        let _ = crate::chunk::decode(c.data.as_deref().unwrap_or_default(), c.n);
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
