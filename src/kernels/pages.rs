//! Buffers for data streamed from memory on every decoding step: the packed weights and the
//! key/value caches.
//!
//! Decoding one token reads every weight and the whole cache once, so its speed is the speed at
//! which memory is read. A sequential read crosses a page every 4 KiB; each crossing needs a
//! TLB entry and restarts the hardware prefetcher. With 2 MiB ("huge") pages that happens 512
//! times less often: one thread's sequential read measured 25 GB/s on 4 KiB pages and 33 GB/s
//! on huge pages on the 2-core CI machine. Linux gives a region huge pages (transparent huge
//! pages, THP) when it is 2 MiB-aligned and `madvise(MADV_HUGEPAGE)` marks it before its pages
//! are first touched, so a [`StreamBuffer`] is allocated 2 MiB-aligned, advised, then zeroed.
//! Elsewhere (or with THP off) it is an ordinary zeroed buffer: only speed differs.

use crate::memory::{advise_huge_pages, HUGE_PAGE};
use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// A zero-initialised `[f32]` on 2 MiB-aligned memory, advised to huge pages.
pub struct StreamBuffer {
    ptr: NonNull<f32>,
    len: usize,
}

// SAFETY: a StreamBuffer owns its memory exclusively, like a Vec<f32>.
unsafe impl Send for StreamBuffer {}
unsafe impl Sync for StreamBuffer {}

impl StreamBuffer {
    /// `len` zeros.
    ///
    /// # Panics
    /// If `len` floats overflow the address space; aborts if memory runs out (like `Vec`).
    pub fn zeroed(len: usize) -> Self {
        let Some(layout) = Self::layout(len) else {
            return StreamBuffer { ptr: NonNull::dangling(), len: 0 };
        };
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw.cast::<f32>()) else { handle_alloc_error(layout) };
        advise_huge_pages(raw, layout.size());
        // SAFETY: `ptr` points to `len` floats just allocated; zeroing them first-touches the
        // pages after the advice.
        unsafe { std::ptr::write_bytes(ptr.as_ptr(), 0, len) };
        StreamBuffer { ptr, len }
    }

    /// The allocation behind `len` floats (`None` for an empty buffer, which allocates nothing).
    fn layout(len: usize) -> Option<Layout> {
        let bytes = len.checked_mul(size_of::<f32>()).expect("StreamBuffer: size overflows");
        (bytes > 0).then(|| Layout::from_size_align(bytes, HUGE_PAGE).expect("StreamBuffer size"))
    }
}

impl Drop for StreamBuffer {
    fn drop(&mut self) {
        if let Some(layout) = Self::layout(self.len) {
            // SAFETY: allocated in `zeroed` with this same layout.
            unsafe { dealloc(self.ptr.as_ptr().cast(), layout) };
        }
    }
}

impl Deref for StreamBuffer {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        // SAFETY: `ptr` holds `len` initialised floats (or is dangling with `len` 0).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for StreamBuffer {
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Clone for StreamBuffer {
    fn clone(&self) -> Self {
        let mut copy = StreamBuffer::zeroed(self.len);
        copy.copy_from_slice(self);
        copy
    }
}

impl std::fmt::Debug for StreamBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StreamBuffer({} floats)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_aligned_writable_and_cloned() {
        for len in [0, 1, 1000, (HUGE_PAGE / 4) + 3] {
            let mut b = StreamBuffer::zeroed(len);
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&x| x == 0.0));
            if len > 0 {
                assert_eq!(b.as_ptr() as usize % HUGE_PAGE, 0);
            }
            b.iter_mut().enumerate().for_each(|(i, x)| *x = i as f32);
            let c = b.clone();
            assert_eq!(&*c, &*b);
        }
    }
}
