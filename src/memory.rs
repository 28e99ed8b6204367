//! A global allocator that keeps large freed blocks for reuse, so that a training step takes no
//! memory from the operating system after the first one.
//!
//! Every training step builds a tape of fresh activation and gradient buffers, and
//! `matrixmultiply` allocates its packing buffers on every call: the same sizes, step after
//! step. The system allocator (glibc) serves large blocks with `mmap` and gives them back to the
//! kernel on `free`, so the next step page-faults all of them in again, and the kernel zeroes
//! every 4 KiB page on its first touch. On the digits preset that was ≈ 14 % of a step
//! (`perf`: `exc_page_fault`). [`CachingAllocator`] keeps freed blocks of [`MIN_BLOCK`] to
//! [`MAX_KEPT`] bytes, up to [`CACHE_BYTES`] in all, in a small table, and returns one of
//! exactly the same size and alignment when it is asked again; everything else goes to
//! [`System`]. Reuse changes no value the program computes (a block asked for zeroed is zeroed).
//!
//! When a freed block does not fit, the blocks kept longest ago go back to [`System`] to make
//! room: the cache follows the program's current working set. (Keeping the first blocks forever
//! instead let `igpt train --data emoji` fill the cache with the archive's and the palette's
//! blocks before its first step, so that 12 of each step's blocks were faulted in afresh.)
//! Kept blocks that nothing will reuse still count in the process's memory, so a program that
//! moves on to work of other sizes calls [`CachingAllocator::release`]: the `igpt` binary does
//! after loading a model, whose tensors' blocks decoding never reuses. (`igpt sample --n 2` on
//! igpt-s peaked at 1.29 GiB before this, [`MAX_KEPT`] and `Model::load` freeing the file's
//! bytes early; 780 MiB after.)
//!
//! Blocks of [`HUGE_BLOCK`] (2 MiB) or more are also placed on 2 MiB boundaries and marked
//! with `madvise(MADV_HUGEPAGE)` before their first touch, so that Linux backs them with huge
//! pages (see `kernels::pages`). Streaming a 2–8 MiB activation then misses the TLB 512 times
//! less often; element-wise ops, which only stream, measured ≈ 25 → 33 GB/s on this project's
//! machines.
//!
//! It is opt-in, since a library must not choose its users' allocator: the `igpt` binary and
//! `examples/train_digits.rs` declare
//! ```ignore
//! #[global_allocator]
//! static ALLOC: igpt::memory::CachingAllocator = igpt::memory::CachingAllocator::new();
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;

/// The size of a huge page (2 MiB): the alignment of huge blocks here and of
/// `kernels::pages::StreamBuffer`.
pub const HUGE_PAGE: usize = 2 << 20;

/// Blocks smaller than this go straight to the system allocator (glibc's own free lists serve
/// them well).
pub const MIN_BLOCK: usize = 64 << 10;

/// Blocks of at least this size (one huge page) get its alignment and huge pages (see the
/// module doc).
pub const HUGE_BLOCK: usize = HUGE_PAGE;

/// The most bytes kept in freed blocks. A training step of igpt-s (batch 1 × 1024 tokens)
/// frees more than 1 GiB of blocks that the next step asks for again: keeping 512 MiB or 1 GiB
/// evicted some of them every step, and faulting them back in took ≈ 20 % of the step
/// (`perf`: `clear_page_erms`). With 2 GiB, bf16 steps measured 339–353 → 392–408 tokens/s,
/// f32 230–248 → 270–288, and the peak resident memory fell from 2.90 to 2.45 GB (blocks
/// reused at their exact size instead of freed and mapped again).
pub const CACHE_BYTES: usize = 2048 << 20;

/// Larger freed blocks go straight back to the system. A training step's blocks are at most
/// this up to igpt-s at batch 8 × 1024 tokens (its 64 MiB MLP activations); loading a model
/// frees a larger one (the file's bytes), which nothing reuses and which, kept, would add to
/// the peak memory of all that follows.
pub const MAX_KEPT: usize = 64 << 20;

/// The most blocks kept (a training step frees a few hundred large ones).
const SLOTS: usize = 1024;

/// A global allocator that caches large freed blocks (see the module doc).
pub struct CachingAllocator {
    cache: Mutex<Cache>,
}

/// A freed block kept for reuse; a null `ptr` marks a free slot.
#[derive(Clone, Copy)]
struct Kept {
    ptr: *mut u8,
    layout: Layout,
    /// When it was kept (the cache's clock): the oldest goes first when room is needed.
    kept_at: u64,
}

const EMPTY: Kept = Kept { ptr: std::ptr::null_mut(), layout: Layout::new::<u8>(), kept_at: 0 };

/// The kept blocks, their total size and the clock that orders them.
struct Cache {
    blocks: [Kept; SLOTS],
    bytes: usize,
    clock: u64,
}

// SAFETY: the pointers are blocks nobody else holds; the mutex serialises access to them.
unsafe impl Send for Cache {}

impl CachingAllocator {
    pub const fn new() -> Self {
        CachingAllocator { cache: Mutex::new(Cache { blocks: [EMPTY; SLOTS], bytes: 0, clock: 0 }) }
    }

    /// Gives every kept block back to [`System`]: for a program whose next work asks for other
    /// sizes than it has freed (e.g. decoding after loading a model), where kept blocks would only
    /// add to its peak memory, up to [`CACHE_BYTES`].
    pub fn release(&self) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        while cache.bytes > 0 {
            cache.evict_oldest();
        }
    }

    /// A cached block of exactly `layout`, taken out of the cache.
    fn take(&self, layout: Layout) -> Option<*mut u8> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let slot = cache.blocks.iter_mut().find(|b| !b.ptr.is_null() && b.layout == layout)?;
        let ptr = std::mem::replace(slot, EMPTY).ptr;
        cache.bytes -= layout.size();
        Some(ptr)
    }

    /// Keeps `ptr` for reuse, first giving the oldest kept blocks back to [`System`] until it
    /// fits; `false` (the caller must free it) for a block larger than [`MAX_KEPT`].
    fn keep(&self, ptr: *mut u8, layout: Layout) -> bool {
        if layout.size() > MAX_KEPT {
            return false;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let cache = &mut *cache;
        loop {
            let free_slot = cache.blocks.iter().position(|b| b.ptr.is_null());
            match free_slot {
                Some(slot) if cache.bytes + layout.size() <= CACHE_BYTES => {
                    cache.clock += 1;
                    cache.blocks[slot] = Kept { ptr, layout, kept_at: cache.clock };
                    cache.bytes += layout.size();
                    return true;
                }
                // No free slot, or not enough room: the block kept longest ago makes way.
                _ => cache.evict_oldest(),
            }
        }
    }
}

impl Cache {
    /// Frees the block kept longest ago (the cache holds at least one).
    fn evict_oldest(&mut self) {
        let oldest = self
            .blocks
            .iter_mut()
            .filter(|b| !b.ptr.is_null())
            .min_by_key(|b| b.kept_at)
            .expect("a cache holding bytes holds a block");
        let Kept { ptr, layout, .. } = std::mem::replace(oldest, EMPTY);
        self.bytes -= layout.size();
        // SAFETY: a kept block came from `System` with `system_layout(layout)` and nobody else
        // holds it.
        unsafe { System.dealloc(ptr, system_layout(layout)) };
    }
}

/// The layout a block of `layout` is taken from [`System`] with: 2 MiB-aligned from
/// [`HUGE_BLOCK`] up. The same mapping frees it, so `alloc` and `dealloc` always agree.
fn system_layout(layout: Layout) -> Layout {
    if layout.size() < HUGE_BLOCK || layout.align() >= HUGE_BLOCK {
        return layout;
    }
    Layout::from_size_align(layout.size(), HUGE_BLOCK).unwrap_or(layout)
}

/// A fresh block from [`System`] for `layout`; huge ones are advised before any page is
/// touched (hence zeroing by hand afterwards, not `System.alloc_zeroed`).
unsafe fn system_alloc(layout: Layout, zeroed: bool) -> *mut u8 {
    let sys = system_layout(layout);
    if sys == layout {
        return if zeroed { System.alloc_zeroed(layout) } else { System.alloc(layout) };
    }
    let ptr = System.alloc(sys);
    if !ptr.is_null() {
        advise_huge_pages(ptr, layout.size());
        if zeroed {
            std::ptr::write_bytes(ptr, 0, layout.size());
        }
    }
    ptr
}

impl Default for CachingAllocator {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every block handed out for `layout` comes from `System` with `system_layout(layout)`
// (a cached block matches size and alignment exactly), which satisfies `layout`, and is handed
// to one caller at a time; a block is freed to `System` with the layout it was allocated with.
unsafe impl GlobalAlloc for CachingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= MIN_BLOCK {
            if let Some(ptr) = self.take(layout) {
                return ptr;
            }
        }
        system_alloc(layout, false)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= MIN_BLOCK {
            if let Some(ptr) = self.take(layout) {
                std::ptr::write_bytes(ptr, 0, layout.size());
                return ptr;
            }
        }
        system_alloc(layout, true)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() < MIN_BLOCK || !self.keep(ptr, layout) {
            System.dealloc(ptr, system_layout(layout));
        }
    }

    /// Below [`HUGE_BLOCK`] a block is a `System` block of exactly `layout`, so growing or
    /// shrinking it is `System`'s business (glibc moves large blocks with `mremap`, without
    /// copying). A block that is, or becomes, huge moves by hand, to keep its alignment.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = Layout::from_size_align_unchecked(new_size, layout.align());
        if system_layout(layout) == layout && system_layout(new) == new {
            return System.realloc(ptr, layout, new_size);
        }
        let moved = self.alloc(new);
        if !moved.is_null() {
            std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        moved
    }
}

/// Asks Linux to back `[ptr, ptr + bytes)` with huge pages (before its first touch).
#[cfg(target_os = "linux")]
pub(crate) fn advise_huge_pages(ptr: *mut u8, bytes: usize) {
    extern "C" {
        fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
    }
    const MADV_HUGEPAGE: i32 = 14;
    // A failure (THP disabled, an old kernel) costs only speed, so the result is ignored.
    // SAFETY: [ptr, ptr + bytes) is one allocation, page-aligned (2 MiB); MADV_HUGEPAGE changes
    // how the kernel backs those pages, never their contents or validity.
    unsafe { madvise(ptr.cast(), bytes, MADV_HUGEPAGE) };
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn advise_huge_pages(_ptr: *mut u8, _bytes: usize) {}

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
    fn huge_blocks_are_2_mib_aligned_and_move_intact_across_the_threshold() {
        let a = CachingAllocator::new();
        let huge = Layout::from_size_align(HUGE_BLOCK + 12, 4).unwrap();
        unsafe {
            let p = a.alloc_zeroed(huge);
            assert_eq!(p as usize % HUGE_BLOCK, 0, "a huge block starts on a 2 MiB boundary");
            assert!(std::slice::from_raw_parts(p, huge.size()).iter().all(|&b| b == 0));
            p.write_bytes(3, huge.size());
            // Shrinking below the threshold and growing back both keep the contents.
            let small = a.realloc(p, huge, 1000);
            assert!(std::slice::from_raw_parts(small, 1000).iter().all(|&b| b == 3));
            let small_layout = Layout::from_size_align(1000, 4).unwrap();
            let grown = a.realloc(small, small_layout, huge.size());
            assert_eq!(grown as usize % HUGE_BLOCK, 0);
            assert!(std::slice::from_raw_parts(grown, 1000).iter().all(|&b| b == 3));
            a.dealloc(grown, huge);
            assert_eq!(a.alloc(huge), grown, "a huge block is cached like any other");
            System.dealloc(grown, system_layout(huge));
        }
    }

    #[test]
    fn a_full_cache_gives_back_its_oldest_blocks() {
        let a = CachingAllocator::new();
        let largest = Layout::from_size_align(MAX_KEPT, 8).unwrap();
        let larger = Layout::from_size_align(MAX_KEPT + 1, 8).unwrap();
        let bytes = |a: &CachingAllocator| a.cache.lock().unwrap().bytes;
        unsafe {
            // One block more than the cache holds: the first makes room for the last.
            let blocks: Vec<*mut u8> =
                (0..=CACHE_BYTES / MAX_KEPT).map(|_| a.alloc(largest)).collect();
            blocks.iter().for_each(|&p| a.dealloc(p, largest));
            assert_eq!(bytes(&a), CACHE_BYTES);
            let kept = |p: *mut u8| a.cache.lock().unwrap().blocks.iter().any(|b| b.ptr == p);
            assert!(!kept(blocks[0]) && kept(blocks[1]), "the first block was given back");
            a.release();
            a.dealloc(a.alloc(larger), larger);
            assert_eq!(bytes(&a), 0, "a block above MAX_KEPT is freed");
            // Slots run out before bytes: the oldest small block makes room.
            let small = Layout::from_size_align(MIN_BLOCK, 8).unwrap();
            let first = a.alloc(small);
            let rest: Vec<*mut u8> = (0..SLOTS).map(|_| a.alloc(small)).collect();
            a.dealloc(first, small);
            rest.iter().for_each(|&p| a.dealloc(p, small));
            let cache = a.cache.lock().unwrap();
            assert_eq!(cache.bytes, SLOTS * MIN_BLOCK);
            assert!(cache.blocks.iter().all(|b| b.ptr != first), "the first block was given back");
            drop(cache);
            a.release();
            assert!(a.cache.lock().unwrap().blocks.iter().all(|b| b.ptr.is_null()));
        }
    }
}
