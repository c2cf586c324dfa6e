//! Memory footprint: allocator tuning at process start ([`tune`]) and the release of the
//! pages only start-up needed ([`release_startup_pages`]). The documented `unsafe`
//! exceptions besides the NVML boundary: glibc's `mallopt` and the kernel's `madvise`
//! have no safe wrapper (`malloc_trim` is `sentinel_store::release_freed_memory`). [`tune`]
//! runs first thing in `main`'s `run()`, before the async runtime and its threads exist,
//! so every arena and every thread sees the same settings.

/// Allocations of at least this size get their own mapping, returned to the OS on free.
const MMAP_THRESHOLD_BYTES: i32 = 1 << 20;

/// At most this many malloc arenas. glibc creates up to 8 per core, one per thread that
/// meets contention, and each keeps its own free memory. One arena for all threads: the
/// per-thread cache (tcache) serves most small allocations without the arena lock.
/// Measured on the release build after scrapes and ingest (docs/benchmarks.md,
/// "Footprint"): one arena instead of two cut anonymous RSS by 0.3-0.45 MB (two instead
/// of one per thread had cut about 0.4 MB before); `wrk -t1 -c4` on `/metrics` was the
/// same within noise (42,300 against 42,500 req/s).
const ARENA_MAX: i32 = 1;

/// Sets the allocator tunables (once per process; later calls do nothing).
///
/// - The mmap threshold is pinned. By default glibc raises it to the size of the
///   largest mapping freed so far (up to 32 MiB): after the first big ComfyUI
///   `/history` body, the next ones land in a thread's heap, whose top `malloc_trim`
///   does not return, so every tokio worker that ever read a big page kept one body's
///   worth of memory. A fixed threshold also keeps the trim threshold at its default,
///   so freed heap tops are returned on free. Large allocations are rare (bodies, big
///   scrapes), so the extra mmap calls cost nothing measurable.
/// - The number of arenas is capped at [`ARENA_MAX`] (see there).
///
/// An environment setting (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`) is overridden.
#[allow(unsafe_code)] // FFI, see the crate root
pub fn tune() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes allocator tunables, takes no pointers and is
        // thread-safe; an unsupported parameter is refused with a 0 return, not UB.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
            libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
        }
    });
}

/// Environment variable that turns [`release_startup_pages`] off: `0`, `false`, `off` or
/// `no`. Default: on.
pub const RELEASE_PAGES_ENV: &str = "COMFY_SENTINEL_RELEASE_STARTUP_PAGES";

/// Whether start-up pages are released ([`RELEASE_PAGES_ENV`] unset or anything but
/// `0`, `false`, `off`, `no`).
pub fn release_pages_enabled(value: Option<&str>) -> bool {
    !matches!(
        value.map(|v| v.trim().to_ascii_lowercase()).as_deref(),
        Some("0" | "false" | "off" | "no")
    )
}

/// An address range `[start, end)` of one mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: usize,
    pub end: usize,
}

/// The mappings of `/proc/self/smaps` text whose resident pages can be dropped and
/// read back from the file unchanged: private, read-only mappings (`r-xp` code, `r--p`
/// constants) of the file `exe` (our own binary, as `/proc/self/exe` names it) that hold
/// no private copy of a page (`Anonymous: 0 kB`). Writable mappings, the RELRO part
/// (its pages were copied when relocated), shared libraries, anonymous memory and a
/// mapping whose `Anonymous` line is missing are never picked.
pub fn releasable(smaps: &str, exe: &str) -> Vec<Range> {
    let mut out = Vec::new();
    // The mapping being read: its range and whether it qualifies so far.
    let mut cur: Option<(Range, bool)> = None;
    let mut flush = |cur: &mut Option<(Range, bool)>| {
        if let Some((r, true)) = cur.take() {
            out.push(r);
        }
    };
    for line in smaps.lines() {
        if let Some(range) = header(line) {
            flush(&mut cur);
            let perms = line.split_ascii_whitespace().nth(1).unwrap_or("");
            // The path is what follows the five fixed fields; it may contain spaces.
            let path = rest_after_fields(line, 5);
            let wanted = matches!(perms, "r-xp" | "r--p") && path == Some(exe);
            // Qualifies only once an `Anonymous: 0 kB` line confirms it.
            cur = wanted.then_some((range, false));
        } else if let Some(v) = line.strip_prefix("Anonymous:") {
            if let Some((_, ok)) = cur.as_mut() {
                *ok = v.trim() == "0 kB";
                if !*ok {
                    cur = None;
                }
            }
        }
    }
    flush(&mut cur);
    out
}

/// `start-end` of a smaps header line (`559b...-559b... r-xp 00000000 fe:00 123 /path`);
/// `None` for a field line (`Rss:       4 kB`).
fn header(line: &str) -> Option<Range> {
    let first = line.split_ascii_whitespace().next()?;
    let (a, b) = first.split_once('-')?;
    let start = usize::from_str_radix(a, 16).ok()?;
    let end = usize::from_str_radix(b, 16).ok()?;
    (start < end).then_some(Range { start, end })
}

/// The text after `n` whitespace-separated fields, leading blanks removed (a path with
/// spaces stays whole); `None` when there is nothing after them.
fn rest_after_fields(line: &str, n: usize) -> Option<&str> {
    let mut rest = line;
    for _ in 0..n {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
        let end = rest.find(|c: char| c.is_ascii_whitespace())?;
        rest = &rest[end..];
    }
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
    (!rest.is_empty()).then_some(rest)
}

/// What [`release_startup_pages`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Released {
    /// Mappings of the binary whose pages were dropped.
    pub mappings: usize,
    /// Bytes of address space they cover.
    pub bytes: usize,
    /// `RssFile` of `/proc/self/status` before and after, in kB (0 where unreadable).
    pub rss_file_kb_before: u64,
    pub rss_file_kb_after: u64,
    /// `RssAnon` before and after the heap trim, in kB.
    pub rss_anon_kb_before: u64,
    pub rss_anon_kb_after: u64,
}

/// Tells the kernel that the pages start-up touched are not needed any more, once the
/// sidecar is up (config parsed, rules compiled, listener bound, first collections
/// done):
///
/// - the resident pages of the binary's own read-only mappings ([`releasable`]) are
///   dropped from this process (`madvise(MADV_DONTNEED)`). They are clean copies of the
///   file: a page that is used again is mapped back from the page cache (or read from
///   the file) on its next access, as after the kernel reclaimed it under memory
///   pressure, which it may do at any time. Code that runs at every scrape, collection
///   and rule evaluation comes back within seconds; what only start-up ran (YAML and
///   CLI parsing, rule compilation, TLS set-up) stays out.
/// - freed heap memory is returned to the kernel (`malloc_trim(0)`).
///
/// Linux only (`MADV_DONTNEED` on a private file mapping has had these semantics since
/// 2.x); elsewhere, or if `/proc` is unreadable, nothing happens. Errors are returned for
/// the caller to log; they are harmless.
#[allow(unsafe_code)] // FFI, see the crate root
pub fn release_startup_pages() -> std::io::Result<Released> {
    let mut done = Released::default();
    #[cfg(target_os = "linux")]
    {
        (done.rss_file_kb_before, done.rss_anon_kb_before) = rss_kb();
        let exe = std::fs::read_link("/proc/self/exe")?;
        let exe = exe.to_string_lossy();
        let smaps = std::fs::read_to_string("/proc/self/smaps")?;
        let mut first_error = None;
        for r in releasable(&smaps, &exe) {
            // SAFETY: `r` is a whole private, read-only mapping of our own binary that
            // holds no private page (checked by `releasable` from smaps just now; it
            // cannot gain one: nothing can write to a read-only mapping, and the RELRO
            // part, written by the loader, has private pages and is never picked). For
            // such a mapping MADV_DONTNEED only unmaps clean file pages, which the next
            // access maps again with the same bytes from the file, exactly as after
            // reclaim. No Rust reference is invalidated: the memory's contents do not
            // change. A failure (EINVAL on a locked mapping, ...) leaves it as it was.
            let rc = unsafe {
                libc::madvise(
                    r.start as *mut libc::c_void,
                    r.end - r.start,
                    libc::MADV_DONTNEED,
                )
            };
            if rc == 0 {
                done.mappings += 1;
                done.bytes += r.end - r.start;
            } else if first_error.is_none() {
                first_error = Some(std::io::Error::last_os_error());
            }
        }
        let (file_after, _) = rss_kb();
        done.rss_file_kb_after = file_after;
        sentinel_store::release_freed_memory();
        done.rss_anon_kb_after = rss_kb().1;
        if let Some(e) = first_error {
            return Err(e);
        }
    }
    Ok(done)
}

/// `RssFile` and `RssAnon` of `/proc/self/status` in kB (0 where unreadable).
#[cfg(target_os = "linux")]
fn rss_kb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("RssFile:"), field("RssAnon:"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn tune_is_idempotent_and_allocation_still_works() {
        super::tune();
        super::tune();
        // A block above the pinned threshold is mapped and unmapped without trouble.
        let big = vec![7u8; 4 << 20];
        assert_eq!(
            big.iter().map(|&b| b as usize).sum::<usize>(),
            7 * (4 << 20)
        );
    }

    const EXE: &str = "/usr/local/bin/comfy sentinel";

    /// A trimmed `/proc/self/smaps` of a running sidecar (real layout, fewer fields),
    /// with a path containing a space.
    fn smaps() -> String {
        let m = |hdr: &str, anon: u32| {
            format!("{hdr}\nSize:               2804 kB\nRss:                1472 kB\nAnonymous:          {anon} kB\nVmFlags: rd mr mw me sd\n")
        };
        [
            m("559bd9b19000-559bd9dd0000 r--p 00000000 fe:00 10012759                   /usr/local/bin/comfy sentinel", 0),
            m("559bd9dd0000-559bda4cc000 r-xp 002b6000 fe:00 10012759                   /usr/local/bin/comfy sentinel", 0),
            // RELRO: relocated by the loader, so it holds private copies.
            m("559bda4cc000-559bda52a000 r--p 009b1000 fe:00 10012759                   /usr/local/bin/comfy sentinel", 376),
            m("559bda52a000-559bda52d000 rw-p 00a0e000 fe:00 10012759                   /usr/local/bin/comfy sentinel", 12),
            m("559c039ec000-559c03b33000 rw-p 00000000 00:00 0                          [heap]", 1308),
            m("7f1e609d8000-7f1e60b2e000 r-xp 00026000 fe:00 326279                     /usr/lib/x86_64-linux-gnu/libc.so.6", 0),
            // Another file whose name starts like ours.
            m("7f1e609e0000-7f1e609e1000 r-xp 00000000 fe:00 326280                     /usr/local/bin/comfy sentinel.old", 0),
            m("7f1e60ca5000-7f1e60ca7000 r-xp 00000000 00:00 0                          [vdso]", 0),
            // Shared mapping of our binary (never made by the loader): not private.
            m("7f1e60cb0000-7f1e60cb1000 r-xs 00000000 fe:00 10012759                   /usr/local/bin/comfy sentinel", 0),
        ]
        .concat()
    }

    #[test]
    fn releasable_picks_only_clean_read_only_private_mappings_of_our_binary() {
        let got = super::releasable(&smaps(), EXE);
        assert_eq!(
            got,
            vec![
                super::Range {
                    start: 0x559bd9b19000,
                    end: 0x559bd9dd0000
                },
                super::Range {
                    start: 0x559bd9dd0000,
                    end: 0x559bda4cc000
                },
            ]
        );
    }

    #[test]
    fn releasable_skips_a_mapping_whose_anonymous_line_is_missing() {
        let text = "559bd9dd0000-559bda4cc000 r-xp 002b6000 fe:00 1 /bin/x\nRss: 4 kB\n\
                    559bda4cc000-559bda4cd000 r-xp 002b7000 fe:00 1 /bin/x\nAnonymous: 0 kB\n";
        assert_eq!(
            super::releasable(text, "/bin/x"),
            vec![super::Range {
                start: 0x559bda4cc000,
                end: 0x559bda4cd000
            }]
        );
        assert!(super::releasable("", "/bin/x").is_empty());
        assert!(super::releasable("garbage\n-\nzz-yy r-xp\n", "/bin/x").is_empty());
    }

    #[test]
    fn release_pages_switch_reads_the_usual_false_words() {
        assert!(super::release_pages_enabled(None));
        assert!(super::release_pages_enabled(Some("1")));
        assert!(super::release_pages_enabled(Some("yes")));
        for off in ["0", "false", "OFF", " no "] {
            assert!(!super::release_pages_enabled(Some(off)), "{off}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn release_startup_pages_drops_the_binary_pages_and_code_still_runs() {
        let released = super::release_startup_pages().expect("madvise on our own binary");
        assert!(released.mappings >= 1, "{released:?}");
        assert!(released.bytes > 0, "{released:?}");
        // Code and constants of the binary fault back in: this runs, formats and parses.
        let v: Vec<u64> = (1..=1000).collect();
        let text = format!("{v:?}");
        assert!(text.starts_with("[1, 2, 3") && text.ends_with("999, 1000]"));
        let back: u64 = text[1..text.len() - 1]
            .split(", ")
            .map(|n| n.parse::<u64>().unwrap())
            .sum();
        assert_eq!(back, 500_500);
        // And a second call is as harmless.
        super::release_startup_pages().expect("second call");
    }
}
