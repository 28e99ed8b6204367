//! A global allocator that keeps large freed blocks for reuse, so that a training step takes no
//! memory from the operating system after the first one.
//!
//! Every training step builds a tape of fresh activation and gradient buffers, and
//! `matrixmultiply` allocates its packing buffers on every call: the same sizes, step after
//! step. The system allocator (glibc) serves large blocks with `mmap` and gives them back to the
//! kernel on `free`, so the next step page-faults all of them in again, and the kernel zeroes
//! every 4 KiB page on its first touch. On the digits preset that was ≈ 14 % of a step
//! (`perf`: `exc_page_fault`). [`CachingAllocator`] keeps freed blocks of at least
//! [`MIN_BLOCK`] bytes, up to [`CACHE_BYTES`] in all, in a small table, and returns one of
//! exactly the same size and alignment when it is asked again; everything else goes to
//! [`System`]. Reuse changes no value the program computes (a block asked for zeroed is zeroed).
//!
//! It is opt-in, since a library must not choose its users' allocator: the `igpt` binary and
//! `examples/train_digits.rs` declare
//! ```ignore
//! #[global_allocator]
//! static ALLOC: igpt::memory::CachingAllocator = igpt::memory::CachingAllocator::new();
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;

/// Blocks smaller than this go straight to the system allocator (glibc's own free lists serve
/// them well).
pub const MIN_BLOCK: usize = 64 << 10;

/// The most bytes kept in freed blocks.
pub const CACHE_BYTES: usize = 512 << 20;

/// The most blocks kept (a training step frees a few hundred large ones).
const SLOTS: usize = 1024;

/// A global allocator that caches large freed blocks (see the module doc).
pub struct CachingAllocator {
    cache: Mutex<Cache>,
}

/// Freed blocks: `(pointer, size, alignment)`, a null pointer marks a free slot.
struct Cache {
    blocks: [(*mut u8, usize, usize); SLOTS],
    bytes: usize,
}

// SAFETY: the pointers are blocks nobody else holds; the mutex serialises access to them.
unsafe impl Send for Cache {}

impl CachingAllocator {
    pub const fn new() -> Self {
        let blocks = [(std::ptr::null_mut(), 0, 0); SLOTS];
        CachingAllocator { cache: Mutex::new(Cache { blocks, bytes: 0 }) }
    }

    /// A cached block of exactly `layout`, taken out of the cache.
    fn take(&self, layout: Layout) -> Option<*mut u8> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let wanted = (layout.size(), layout.align());
        let slot = cache.blocks.iter_mut().find(|b| !b.0.is_null() && (b.1, b.2) == wanted)?;
        let ptr = std::mem::replace(&mut slot.0, std::ptr::null_mut());
        cache.bytes -= layout.size();
        Some(ptr)
    }

    /// Keeps `ptr` for reuse if there is room; `false` if the caller must free it.
    fn keep(&self, ptr: *mut u8, layout: Layout) -> bool {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.bytes + layout.size() > CACHE_BYTES {
            return false;
        }
        let Some(slot) = cache.blocks.iter_mut().find(|b| b.0.is_null()) else {
            return false;
        };
        *slot = (ptr, layout.size(), layout.align());
        cache.bytes += layout.size();
        true
    }
}

impl Default for CachingAllocator {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every block handed out comes from `System` with the same layout it is asked for (a
// cached block matches size and alignment exactly) and is handed to one caller at a time; a
// block is freed to `System` with the layout it was allocated with.
unsafe impl GlobalAlloc for CachingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= MIN_BLOCK {
            if let Some(ptr) = self.take(layout) {
                return ptr;
            }
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= MIN_BLOCK {
            if let Some(ptr) = self.take(layout) {
                std::ptr::write_bytes(ptr, 0, layout.size());
                return ptr;
            }
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() < MIN_BLOCK || !self.keep(ptr, layout) {
            System.dealloc(ptr, layout);
        }
    }

    /// Every block handed out is a `System` block of exactly `layout`, so growing or shrinking
    /// one is `System`'s business (glibc moves large blocks with `mremap`, without copying).
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        System.realloc(ptr, layout, new_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_large_block_is_reused_zeroed_and_small_ones_pass_through() {
        let a = CachingAllocator::new();
        let big = Layout::from_size_align(MIN_BLOCK * 2, 64).unwrap();
        let small = Layout::from_size_align(100, 8).unwrap();
        unsafe {
            let p = a.alloc(big);
            p.write_bytes(7, big.size());
            a.dealloc(p, big);
            let q = a.alloc_zeroed(big);
            assert_eq!(p, q, "the freed block comes back");
            assert!(std::slice::from_raw_parts(q, big.size()).iter().all(|&b| b == 0));
            let other = Layout::from_size_align(MIN_BLOCK * 2, 4096).unwrap();
            a.dealloc(q, big);
            let r = a.alloc(other);
            assert_ne!(r, q, "a different alignment is not served from the cache");
            a.dealloc(r, other);
            let s = a.alloc(small);
            a.dealloc(s, small);
            let grown = Layout::from_size_align(big.size(), 8).unwrap();
            let g = a.realloc(a.alloc(small), small, grown.size());
            a.dealloc(g, grown);
            let again = a.alloc(grown);
            assert_eq!(again, g, "a grown block is cached like any other");
            System.dealloc(again, grown);
            assert_eq!(a.cache.lock().unwrap().bytes, 2 * big.size());
            for l in [big, other] {
                let p = a.alloc(l);
                System.dealloc(p, l);
            }
            assert_eq!(a.cache.lock().unwrap().bytes, 0);
        }
    }

    #[test]
    fn the_cache_stops_at_its_byte_limit() {
        let a = CachingAllocator::new();
        let half = Layout::from_size_align(CACHE_BYTES / 2 + 1, 8).unwrap();
        unsafe {
            let (p, q) = (a.alloc(half), a.alloc(half));
            a.dealloc(p, half);
            a.dealloc(q, half);
            assert_eq!(a.cache.lock().unwrap().bytes, half.size());
            System.dealloc(a.alloc(half), half);
        }
    }
}
