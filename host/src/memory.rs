//! Giving memory back after one-off work (start-up, a pipeline reload), so the bot's idle
//! RSS is what the idle bot uses.
//!
//! Measured on a warm start (release build, x86-64): of 17 MB RSS, 13 MB were pages of
//! this program's own code and read-only data, mapped in while starting (clap, config,
//! SQLite migrations, loading the guests, TLS set-up) and counted for as long as they stay
//! mapped; the heap was 2.4 MB (`malloc_trim` after start-up gave back nothing
//! measurable). Unmapping those pages costs nothing: they are clean copies of the program
//! file and stay in the page cache, so code that runs again maps them back with a minor
//! fault, no disk read. (Cranelift's memory never enters the bot: guests are compiled in
//! a child process, see `pipeline::CompileCache::in_child_process`.)

/// Unmaps the clean code and read-only pages of this program and of the compiled guests
/// (`*.cwasm`, which are mapped from the compile cache: loading and smoke-testing a Python
/// guest touches some 9 MB of them). Safe at any time: only mappings of those files without
/// write access and without private (modified) pages are touched, so nothing but a mapping
/// is dropped.
pub fn release_after_one_off_work() {
    let Ok(program) = std::env::current_exe() else {
        return;
    };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let program = program.to_string_lossy();
    let ours = |path: &str| path == program || path.ends_with(".cwasm");
    for (start, end) in clean_read_only_mappings(&smaps, ours) {
        // SAFETY: the range is a whole mapping of one of those files, never writable and
        // with no private pages (checked above): dropping it loses nothing, the next
        // access maps the same file pages back in.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// The process's resident memory now, from `/proc/self/statm` (resident pages × page size).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page_size).ok()?)
}

/// Address ranges of the mappings of files `ours` picks that are not writable and hold no
/// private pages.
fn clean_read_only_mappings(smaps: &str, ours: impl Fn(&str) -> bool) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            )
        {
            // "start-end perms offset dev inode path"
            let perms = fields.next().unwrap_or_default();
            let mapped = fields.nth(3).is_some_and(&ours);
            current = (mapped && !perms.contains('w')).then_some((start, end));
        } else if first == "Anonymous:"
            && let Some(range) = current.take()
            && fields.next() == Some("0")
        {
            ranges.push(range);
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unwritten_read_only_mappings_of_the_program_and_guests_are_chosen() {
        let smaps = "\
1000-2000 r--p 00000000 08:01 42 /usr/bin/pi-agent
Rss:                  12 kB
Anonymous:             0 kB
2000-5000 r-xp 00001000 08:01 42 /usr/bin/pi-agent
Anonymous:             0 kB
5000-6000 r--p 00004000 08:01 42 /usr/bin/pi-agent
Anonymous:             4 kB
6000-7000 rw-p 00005000 08:01 42 /usr/bin/pi-agent
Anonymous:             0 kB
7000-8000 r-xp 00000000 08:01 43 /usr/lib/libc.so.6
Anonymous:             0 kB
8000-9000 rw-p 00000000 00:00 0 
Anonymous:             4 kB
9000-a000 r-xp 00000000 08:01 44 /data/cache/ab-cd.cwasm
Anonymous:             0 kB
a000-b000 rw-p 00000000 08:01 44 /data/cache/ab-cd.cwasm
Anonymous:             0 kB
";
        let ours = |path: &str| path == "/usr/bin/pi-agent" || path.ends_with(".cwasm");
        assert_eq!(
            clean_read_only_mappings(smaps, ours),
            [(0x1000, 0x2000), (0x2000, 0x5000), (0x9000, 0xa000)]
        );
    }
}
