//! Allocation failure is exit code 6 with a message, never an abort (exit 134): the global
//! allocator is the system one, wrapped so that a failed allocation writes one line to stderr
//! and ends the process with `exit::MEMORY`. It runs where nothing may allocate, so the line is
//! assembled in a stack buffer and written with `write(2)`, and the process ends with
//! `_exit(2)`.

use std::alloc::{GlobalAlloc, Layout, System};

/// The system allocator; a null result ends the process with exit 6.
pub struct Guarded;

// SAFETY: every call is forwarded to `System` unchanged; only a null result is acted on.
unsafe impl GlobalAlloc for Guarded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            out_of_memory(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            out_of_memory(layout.size());
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            out_of_memory(new_size);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Writes the message without allocating and exits with code 6.
fn out_of_memory(size: usize) -> ! {
    let mut buf = [0u8; 256];
    let mut n = 0;
    let mut put = |bytes: &[u8]| {
        for &b in bytes {
            if n < buf.len() {
                buf[n] = b;
                n += 1;
            }
        }
    };
    put(b"error: not enough memory: an allocation of ");
    let mut digits = [0u8; 20];
    let (mut v, mut k) = (size, digits.len());
    loop {
        k -= 1;
        digits[k] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 || k == 0 {
            break;
        }
    }
    put(&digits[k..]);
    put(b" bytes failed (the memory guard's estimate did not fit this machine's limits: RAM, cgroup, ulimit -v); use a smaller run (--limit, --max-tokens, --threads 1)\n");
    // SAFETY: writing an initialised stack buffer to fd 2, then ending the process without
    // running destructors or atexit handlers (which could allocate).
    unsafe {
        libc::write(2, buf.as_ptr().cast(), n);
        libc::_exit(i32::from(crate::exit::MEMORY));
    }
}
