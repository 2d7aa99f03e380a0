//! The module's global allocator (wasm32 only): power-of-two size classes carved from a bump
//! region of fresh linear-memory pages, with one free list per class. A few hundred bytes of
//! code instead of std's dlmalloc (~9 KB).
//!
//! A block of class `c` is `16 << c` bytes; a freed block goes on its class's list and is
//! reused by the next request of that class, so a steady workload stops growing memory (the
//! host tests check 20 000 calls). Blocks are never split or merged: at most 2× overhead. The
//! module is single-threaded (no threads on wasm32-unknown-unknown), so plain cells suffice.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr;

const CLASSES: usize = 28; // 16 B .. 2 GiB
const PAGE: usize = 65_536;

struct State {
    /// Next free byte of the bump region, and its end.
    next: usize,
    end: usize,
    /// Head of each class's free list (0 = empty); a free block holds the next pointer.
    free: [usize; CLASSES],
}

pub(crate) struct Walloc(UnsafeCell<State>);

// SAFETY: wasm32-unknown-unknown runs the module on one thread.
unsafe impl Sync for Walloc {}

impl Walloc {
    pub(crate) const fn new() -> Walloc {
        Walloc(UnsafeCell::new(State {
            next: 0,
            end: 0,
            free: [0; CLASSES],
        }))
    }
}

/// The class of a layout: the smallest `16 << c` that holds `size` and is a multiple of the
/// alignment (`None` if too large).
fn class(l: &Layout) -> Option<usize> {
    let need = l.size().max(l.align()).max(16);
    let c = (usize::BITS - (need - 1).leading_zeros()) as usize - 4;
    (c < CLASSES).then_some(c)
}

impl State {
    /// `size` bytes at `align` from the bump region, growing memory as needed.
    fn bump(&mut self, size: usize, align: usize) -> *mut u8 {
        let start = (self.next + align - 1) & !(align - 1);
        let Some(stop) = start.checked_add(size) else {
            return ptr::null_mut();
        };
        if stop > self.end || self.end == 0 {
            let want = if self.end == 0 {
                size + align
            } else {
                stop - self.end
            };
            let pages = want.div_ceil(PAGE);
            let old = core::arch::wasm32::memory_grow(0, pages);
            if old == usize::MAX {
                return ptr::null_mut();
            }
            let base = old * PAGE;
            if base != self.end {
                // Not contiguous (first use): start over in the new pages.
                self.next = base;
                self.end = base + pages * PAGE;
                return self.bump(size, align);
            }
            self.end = base + pages * PAGE;
        }
        self.next = stop;
        start as *mut u8
    }
}

unsafe impl GlobalAlloc for Walloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: single-threaded; no reentrancy (nothing here allocates).
        let st = unsafe { &mut *self.0.get() };
        let Some(c) = class(&l) else {
            return ptr::null_mut();
        };
        let head = st.free[c];
        if head != 0 && l.align() <= 16 {
            // SAFETY: a free block of this class holds the next pointer in its first word.
            st.free[c] = unsafe { *(head as *const usize) };
            return head as *mut u8;
        }
        st.bump(16 << c, l.align().max(16))
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: single-threaded; `p` is a live block of this layout's class.
        let st = unsafe { &mut *self.0.get() };
        if let Some(c) = class(&l) {
            unsafe { *(p as *mut usize) = st.free[c] };
            st.free[c] = p as usize;
        }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees a valid layout for `new_size`.
        let nl = unsafe { Layout::from_size_align_unchecked(new_size, l.align()) };
        if class(&nl).is_some() && class(&nl) == class(&l) {
            return p;
        }
        // SAFETY: as in `alloc`/`dealloc`; the blocks do not overlap.
        unsafe {
            let q = self.alloc(nl);
            if !q.is_null() {
                ptr::copy_nonoverlapping(p, q, l.size().min(new_size));
                self.dealloc(p, l);
            }
            q
        }
    }
}
