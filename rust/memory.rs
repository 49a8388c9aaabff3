//! How the kernel backs the output of big calls: transparent huge pages where it helps.
//!
//! A `process` call on 1M lines writes ~200 MB of fresh columns. In 4 KiB pages that is ~50,000
//! page faults whenever the allocator has given the previous call's memory back to the OS (its
//! purge delay has passed: a call now and then, a Lambda invocation, a benchmark alternating with
//! another tool), 10-25% of the call on this KVM guest. Advising huge pages on the columns of
//! a big call makes that a few hundred. Streaming batches (8 MiB of input by default) stay below
//! the threshold: there the process's peak RSS is the point, and 2 MiB granules would add to it.

/// Calls on at least this much input have their output columns advised to use huge pages.
pub const BIG_CALL: usize = 32 << 20;

/// Asks the kernel to back the whole 2 MiB-aligned part of `bytes` bytes at `start` (one
/// allocation, not yet or only partly written) with transparent huge pages. Advice only: where
/// the kernel has them off (`/sys/kernel/mm/transparent_hugepage/enabled` = never) or refuses,
/// nothing changes, and the memory's contents are never touched.
pub fn advise_huge_pages(start: *const u8, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        const HUGE_PAGE: usize = 2 << 20;
        let begin = (start as usize).next_multiple_of(HUGE_PAGE);
        let end = (start as usize + bytes) / HUGE_PAGE * HUGE_PAGE;
        if end > begin {
            // SAFETY: MADV_HUGEPAGE is advice on how pages not yet touched are backed; it never
            // changes the contents or the protection of any range, so no reference into memory
            // is affected, whatever the range (callers pass one of their own allocations). A
            // failure (EINVAL without THP support) changes nothing, hence the ignored result.
            unsafe {
                libc::madvise(begin as *mut libc::c_void, end - begin, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (start, bytes);
}

/// mimalloc's `mi_option_purge_delay` (the 16th entry of `mi_option_e`; the Rust bindings
/// leave it out).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long mimalloc keeps freed memory for reuse before handing it back to the OS, from now on
/// (which delay a process wants is `logsieve.memory`'s decision).
pub fn set_purge_delay(ms: u32) {
    // SAFETY: sets one integer option; mimalloc reads options when it decides to purge. Called
    // by entry points before their work starts (mimalloc documents the setter as not
    // synchronised with other option setters, of which there are none).
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, libc::c_long::from(ms)) }
}

/// The purge delay in force (ms).
pub fn purge_delay() -> libc::c_long {
    // SAFETY: reads one integer option.
    unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index is right if it reads the purge delay's default in the mimalloc built (v3: 1 s;
    /// its neighbours in the enum default to 1 and 0), and then what was set.
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return; // the environment chose another default
        }
        assert_eq!(purge_delay(), 1000);
        set_purge_delay(250);
        assert_eq!(purge_delay(), 250);
        set_purge_delay(1000);
    }

    /// The AnonHugePages of the mapping holding `address`, from /proc/self/smaps, in KiB.
    #[cfg(target_os = "linux")]
    fn huge_kib_at(address: usize) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split(' ').next().unwrap_or("");
            if let Some((start, end)) = range.split_once('-')
                && let (Ok(start), Ok(end)) = (
                    usize::from_str_radix(start, 16),
                    usize::from_str_radix(end, 16),
                )
            {
                inside = (start..end).contains(&address);
            } else if inside && let Some(kib) = line.strip_prefix("AnonHugePages:") {
                return kib.trim().trim_end_matches("kB").trim().parse().ok();
            }
        }
        None
    }

    #[test]
    fn advice_keeps_what_was_written() {
        let bytes = 48 << 20;
        let mut written: Vec<u8> = Vec::with_capacity(bytes);
        written.extend((0..bytes / 2).map(|i| (i % 251) as u8));
        advise_huge_pages(written.as_ptr(), written.capacity());
        assert!(
            written
                .iter()
                .enumerate()
                .all(|(i, &b)| b == (i % 251) as u8)
        );
        written.extend((0..bytes / 2).map(|i| (i % 241) as u8));
        let tail = &written[bytes / 2..];
        assert!(tail.iter().enumerate().all(|(i, &b)| b == (i % 241) as u8));
    }

    /// Where the kernel hands out transparent huge pages on request only (`madvise` mode, as on
    /// Debian and this project's machines), advised memory gets them and the same memory without
    /// the advice does not. The regions come from `mmap` itself, so that no allocator's own
    /// settings are in play.
    #[cfg(target_os = "linux")]
    #[test]
    fn advised_memory_gets_huge_pages_where_the_kernel_offers_them() {
        let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
        if !mode.is_ok_and(|m| m.contains("[madvise]")) {
            eprintln!("skipped: transparent huge pages are not in madvise mode here");
            return;
        }
        let huge_after_writing = |advise: bool| {
            let bytes = 64 << 20;
            // SAFETY: a fresh private anonymous mapping, written only within its length and
            // unmapped before the closure returns.
            unsafe {
                let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
                let protection = libc::PROT_READ | libc::PROT_WRITE;
                let region = libc::mmap(std::ptr::null_mut(), bytes, protection, flags, -1, 0);
                assert_ne!(region, libc::MAP_FAILED);
                if advise {
                    advise_huge_pages(region.cast(), bytes);
                }
                std::ptr::write_bytes(region.cast::<u8>(), 1, bytes);
                let inside = (region as usize).next_multiple_of(2 << 20) + (4 << 20);
                let kib = huge_kib_at(inside);
                libc::munmap(region, bytes);
                kib
            }
        };
        assert_eq!(huge_after_writing(false), Some(0));
        assert!(huge_after_writing(true).is_some_and(|kib| kib > 0));
    }
}
