//! The allocator under every QuickJS runtime: rquickjs's Rust allocator plus a count of bytes requested.
//!
//! Two reasons. QuickJS's heap limit adds up the allocator's usable sizes; under the C allocator those depend
//! on the libc build, under this one they are the requested size rounded to 8 bytes, so the limit trips at the
//! same point on every worker. And the byte count is charged as gas, so builtins that do much work per call
//! (`"x".repeat(n)`, `Array(n).fill`, JSON) cost what they allocate, not one interrupt tick.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::rc::Rc;

use rquickjs::allocator::{Allocator, RustAllocator};

/// Counts bytes requested and delegates everything to [`RustAllocator`].
pub(crate) struct MeteredAllocator {
    allocated: Rc<Cell<u64>>,
}

impl MeteredAllocator {
    /// An allocator adding every request's size to `allocated`.
    pub(crate) fn new(allocated: Rc<Cell<u64>>) -> MeteredAllocator {
        MeteredAllocator { allocated }
    }

    fn count(&self, bytes: usize) {
        self.allocated.set(self.allocated.get().saturating_add(bytes as u64));
    }
}

// SAFETY: every method delegates to `RustAllocator`, which implements the trait's contract; this type only
// counts sizes. The two cases `RustAllocator` does not handle (a multiplication overflow in `calloc`, which it
// would panic on across the C boundary, and `realloc` of a null pointer or to size 0, which QuickJS never asks
// for but C callers may) are answered here the way C's allocator would.
unsafe impl Allocator for MeteredAllocator {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        self.count(size);
        RustAllocator.alloc(size)
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        let Some(total) = count.checked_mul(size) else {
            return std::ptr::null_mut();
        };
        self.count(total);
        RustAllocator.calloc(count, size)
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        if !ptr.is_null() {
            // SAFETY: `ptr` came from this allocator (QuickJS frees only what it allocated through it).
            unsafe { RustAllocator.dealloc(ptr) }
        }
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        if ptr.is_null() {
            return self.alloc(new_size);
        }
        if new_size == 0 {
            // SAFETY: as in `dealloc`.
            unsafe { RustAllocator.dealloc(ptr) };
            return std::ptr::null_mut();
        }
        // SAFETY: `ptr` is a live allocation of this allocator.
        let old = unsafe { RustAllocator::usable_size(ptr) };
        self.count(new_size.saturating_sub(old));
        // SAFETY: as above.
        unsafe { RustAllocator.realloc(ptr, new_size) }
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        // SAFETY: QuickJS asks only about live allocations of this allocator (the null case is handled by rquickjs).
        unsafe { RustAllocator::usable_size(ptr) }
    }
}
