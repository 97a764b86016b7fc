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
    prefetch_span(bytes.as_ptr(), bytes.len());
}

/// Asks for every cache line of the `len` bytes from `start`, which need not be readable as
/// bytes (a struct's fields with padding between them): nothing is read through it.
#[inline(always)]
pub fn prefetch_span(start: *const u8, len: usize) {
    for line in lines(start.addr(), len) {
        prefetch_at(line);
    }
}

const LINE: usize = 64;

/// The addresses of the cache lines that `len` bytes from `start` touch.
fn lines(start: usize, len: usize) -> impl Iterator<Item = usize> {
    let count = match len {
        0 => 0,
        _ => (start + len - 1) / LINE - start / LINE + 1,
    };
    let first = start & !(LINE - 1);
    (0..count).map(move |i| first + i * LINE)
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
    fn a_slice_is_asked_for_line_by_line_from_its_first_byte_to_its_last() {
        assert_eq!(lines(128, 0).count(), 0);
        assert_eq!(lines(128, 1).collect::<Vec<_>>(), [128]);
        assert_eq!(lines(128, 64).collect::<Vec<_>>(), [128]);
        assert_eq!(lines(128, 65).collect::<Vec<_>>(), [128, 192]);
        // Unaligned: 100 bytes from 60 bytes into a line touch three lines.
        assert_eq!(lines(124, 100).collect::<Vec<_>>(), [64, 128, 192]);
        assert_eq!(lines(191, 2).collect::<Vec<_>>(), [128, 192]);
    }

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
