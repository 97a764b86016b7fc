//! Asking the processor for memory a little before it is read.
//!
//! With thousands of keys in use, each request reads a handful of its key's cache lines (the
//! limiter's state, the usage counts, the `whoami` answer) that have left the processor's
//! caches since the key's last request. Read one after the other, each waits for memory in
//! turn, and that wait is most of what checking a cached key costs (docs/BENCHMARKS.md). A
//! prefetch asks for all of them at once, as soon as their addresses are known, so the waits
//! overlap. It changes no result: on targets without the instruction it does nothing.

/// Asks for the cache line holding the start of `value`.
#[inline(always)]
pub fn prefetch<T: ?Sized>(value: &T) {
    prefetch_address(std::ptr::from_ref(value).cast::<u8>());
}

/// Asks for every cache line of `bytes`, from the one holding its first byte to the one
/// holding its last.
#[inline(always)]
pub fn prefetch_bytes(bytes: &[u8]) {
    const LINE: usize = 64;
    let Some(last) = bytes.len().checked_sub(1) else {
        return;
    };
    let start = bytes.as_ptr().addr();
    let last_line = (start + last) & !(LINE - 1);
    let mut line = start & !(LINE - 1);
    while line <= last_line {
        prefetch_at(line);
        line += LINE;
    }
}

/// Asks for the cache line at `address`, which may be stale or dangling: it is never read
/// through, so an address remembered from a value that has since moved costs a wasted hint
/// and nothing else.
#[inline(always)]
pub fn prefetch_at(address: usize) {
    prefetch_address(std::ptr::without_provenance(address));
}

#[inline(always)]
#[allow(unsafe_code)]
fn prefetch_address(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint. It never faults, whatever the address, and neither reads
    // nor writes anything the program can observe. SSE, which it belongs to, is part of every
    // x86_64 target, so the instruction always exists.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetching_changes_nothing() {
        let bytes: Vec<u8> = (0..=255).collect();
        prefetch(&bytes[..]);
        prefetch_bytes(&bytes);
        prefetch_bytes(&[]);
        prefetch_bytes(&bytes[60..160]);
        prefetch(&7u64);
        prefetch_at(0);
        prefetch_at(usize::MAX);
        assert_eq!(bytes.iter().map(|&b| u32::from(b)).sum::<u32>(), 32_640);
    }
}
