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

/// The element types a [`StreamBuffer`] holds: f32, and u16 for bf16 weights (see `bf16`).
///
/// # Safety
/// All-zero bytes must be a valid value of the type (the buffer starts zeroed).
pub unsafe trait StreamElement: Copy + Send + Sync {}

// SAFETY: zero bytes are 0.0 and 0.
unsafe impl StreamElement for f32 {}
unsafe impl StreamElement for u16 {}

/// A zero-initialised `[T]` on 2 MiB-aligned memory, advised to huge pages.
pub struct StreamBuffer<T: StreamElement = f32> {
    ptr: NonNull<T>,
    len: usize,
}

// SAFETY: a StreamBuffer owns its memory exclusively, like a Vec<T>.
unsafe impl<T: StreamElement> Send for StreamBuffer<T> {}
unsafe impl<T: StreamElement> Sync for StreamBuffer<T> {}

impl<T: StreamElement> StreamBuffer<T> {
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
        let Some(ptr) = NonNull::new(raw.cast::<T>()) else { handle_alloc_error(layout) };
        advise_huge_pages(raw, layout.size());
        // SAFETY: `ptr` points to `len` elements just allocated; zero bytes are a valid `T`
        // (`StreamElement`); zeroing first-touches the pages after the advice.
        unsafe { std::ptr::write_bytes(ptr.as_ptr(), 0, len) };
        StreamBuffer { ptr, len }
    }

    /// The allocation behind `len` elements (`None` for an empty buffer, which allocates
    /// nothing).
    fn layout(len: usize) -> Option<Layout> {
        let bytes = len.checked_mul(size_of::<T>()).expect("StreamBuffer: size overflows");
        (bytes > 0).then(|| Layout::from_size_align(bytes, HUGE_PAGE).expect("StreamBuffer size"))
    }
}

impl<T: StreamElement> Drop for StreamBuffer<T> {
    fn drop(&mut self) {
        if let Some(layout) = Self::layout(self.len) {
            // SAFETY: allocated in `zeroed` with this same layout.
            unsafe { dealloc(self.ptr.as_ptr().cast(), layout) };
        }
    }
}

impl<T: StreamElement> Deref for StreamBuffer<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` holds `len` initialised elements (or is dangling with `len` 0).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: StreamElement> DerefMut for StreamBuffer<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: StreamElement> Clone for StreamBuffer<T> {
    fn clone(&self) -> Self {
        let mut copy = StreamBuffer::zeroed(self.len);
        copy.copy_from_slice(self);
        copy
    }
}

impl<T: StreamElement> std::fmt::Debug for StreamBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StreamBuffer({} × {} bytes)", self.len, size_of::<T>())
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
