//! Memory a run needed: the trained state's size, computed, and the process's peak resident
//! memory, measured (Linux); and the allocator settings that memory depends on.

/// mimalloc v3's `mi_option_purge_delay` (the enum's 16th entry; the bindings name no
/// constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory mapped (for binaries that use mimalloc as their allocator): the default
/// purge after 10 ms hands a training step's buffers back to the OS before the next step asks
/// for them again, which then faults in fresh zeroed pages (measured 6-10% of a ResNet or
/// Transformer step on the CPU backend; README, Measurements).
pub fn keep_freed_memory() {
    // SAFETY: sets an allocator option; no memory is touched.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// Returns the memory mimalloc holds but does not use to the OS, whatever the purge setting,
/// so that a following peak covers one run (a no-op for memory mimalloc does not manage).
fn release_free_memory() {
    // SAFETY: option get/set and a collection of mimalloc's own free memory.
    unsafe {
        let delay = libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        libmimalloc_sys::mi_collect(true);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, delay);
    }
}

/// Bytes of `trained_params` f32 parameters with `state_buffers` optimiser buffers each (k
/// copies of every MK kernel are counted in `trained_params`, their momenta in the buffers).
pub fn state_bytes(trained_params: usize, state_buffers: usize) -> i64 {
    (trained_params * 4 * (1 + state_buffers)) as i64
}

/// Resets the process's peak resident memory to its current size, so that the next
/// [`peak_rss_bytes`] covers one run only (Linux `clear_refs`; a no-op elsewhere).
pub fn reset_peak_rss() {
    release_free_memory();
    #[cfg(target_os = "linux")]
    {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }
}

/// Peak resident memory of the process since start or the last [`reset_peak_rss`], in
/// bytes; `None` where the system does not say (non-Linux). Host memory only: a GPU's memory
/// is not included.
pub fn peak_rss_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: i64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_memory_sees_a_large_allocation_and_reset_forgets_it() {
        // Absolute levels only: other tests allocate in parallel in this process.
        let block = vec![1u8; 256 << 20];
        std::hint::black_box(&block);
        let with_block = peak_rss_bytes();
        drop(block);
        reset_peak_rss();
        let after_reset = peak_rss_bytes();
        match (with_block, after_reset) {
            (Some(with_block), Some(after_reset)) => {
                assert!(with_block >= 256 << 20, "peak {with_block} below the block");
                assert!(
                    after_reset + (128 << 20) <= with_block,
                    "the reset forgets the freed block: {with_block} -> {after_reset}"
                );
            }
            _ if cfg!(target_os = "linux") => panic!("Linux reports VmHWM"),
            _ => {}
        }
        assert_eq!(state_bytes(1000, 2), 12_000);
    }
}
