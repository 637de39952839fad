//! The statics both shims keep in their own image and the unsafe code that touches
//! them: the counter at entry, the boot-info slot handed to the payload, the inflater's
//! state, the page-table pool's cursor, and the check of the stack entry.S painted.
//! Rules stay in shim-common; this is shared glue only.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

use core::mem::MaybeUninit;
use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicU64, Ordering};

use shim_common::bootinfo::BootInfo;
use shim_common::container::Inflater;
use shim_common::memmap::Range;
use shim_common::stack;

extern "C" {
    /// The stack each shim's entry.S painted with `stack::PAINT` (linker.ld symbols).
    static __stack_bottom: u8;
    static __stack_top: u8;
}

/// The counter (CNTPCT_EL0, the TSC) when the shim was entered: where `total=` starts.
static ENTRY_TICKS: AtomicU64 = AtomicU64::new(0);

/// Records the counter entry.S read at its first instruction; the first thing each
/// shim_main does.
pub fn mark_entry(ticks: u64) {
    ENTRY_TICKS.store(ticks, Ordering::Relaxed);
}

/// The counter at entry (on QEMU, ticks since reset: what firmware and loader took).
pub fn entry_ticks() -> u64 {
    ENTRY_TICKS.load(Ordering::Relaxed)
}

/// The boot-info block handed to the payload; it stays in the shim's bss.
static mut BOOT_INFO: MaybeUninit<BootInfo> = MaybeUninit::uninit();

/// Stores the boot-info block with the counter at entry and the ticks from there to
/// `now` (the counter read right before the jump); returns its physical
/// (identity-mapped) address and the total. Called once, as the last step.
pub fn store_boot_info(info: BootInfo, now: u64) -> (u64, u64) {
    let entry_ticks = entry_ticks();
    let info = BootInfo {
        entry_ticks,
        total_ticks: now.wrapping_sub(entry_ticks),
        ..info
    };
    // SAFETY: BOOT_INFO is touched only here, once per boot, with nothing else running.
    let pa = unsafe {
        let slot = &mut *addr_of_mut!(BOOT_INFO);
        slot.write(info);
        slot.as_ptr() as u64
    };
    (pa, info.total_ticks)
}

/// The inflater's tables and state (13-14 KiB), outside .bss (linker.ld's .noinit):
/// written whole here rather than zeroed by entry.S and then built again.
///
/// # Safety
/// Called at most once per boot: the reference it returns is the only one.
pub unsafe fn inflate_state() -> &'static mut Inflater {
    #[link_section = ".noinit.inflater"]
    static mut STATE: MaybeUninit<Inflater> = MaybeUninit::uninit();
    // SAFETY: as the caller promises, no other reference to STATE exists.
    let state = unsafe { &mut *addr_of_mut!(STATE) };
    state.write(Inflater::new())
}

/// `[pa, pa + len)` as bytes: physical memory through the shim's identity map.
///
/// # Safety
/// `[pa, pa + len)` is identity-mapped memory that nothing else references mutably
/// while the slice lives.
pub unsafe fn phys<'a>(pa: u64, len: u64) -> &'a mut [u8] {
    // SAFETY: as the caller promises.
    unsafe { core::slice::from_raw_parts_mut(pa as *mut u8, len as usize) }
}

/// Hands out the tables of a pool the entry code does not zero (linker.ld's `.noinit`):
/// each exactly once, zeroed as it is handed out.
pub struct Tables<T: 'static, const N: usize> {
    pool: *mut MaybeUninit<[T; N]>,
    next: usize,
}

impl<T: 'static, const N: usize> Tables<T, N> {
    /// # Safety
    /// `pool` is a static nothing else references, this is its only `Tables`, and a
    /// `T` of all zero bytes is valid (a table of empty entries).
    pub unsafe fn new(pool: *mut MaybeUninit<[T; N]>) -> Self {
        Tables { pool, next: 0 }
    }

    /// The next table, zeroed; `None` once all `N` are handed out.
    pub fn alloc(&mut self) -> Option<&'static mut T> {
        if self.next >= N {
            return None;
        }
        // SAFETY: index `next` is in bounds and was never handed out before (the cursor
        // only grows, and `new`'s caller made this the pool's only user), so this is the
        // only reference to it; it is zeroed, a valid T, before the reference is made.
        let table = unsafe {
            let table = self.pool.cast::<T>().add(self.next);
            table.write_bytes(0, 1);
            &mut *table
        };
        self.next += 1;
        Some(table)
    }

    /// The tables handed out so far: every byte written through them.
    pub fn handed_out(&self) -> Range {
        let start = self.pool as u64;
        Range {
            start,
            end: start + (self.next * size_of::<T>()) as u64,
        }
    }
}

/// The stack entry.S painted.
pub fn stack() -> Range {
    Range {
        start: addr_of!(__stack_bottom) as u64,
        end: addr_of!(__stack_top) as u64,
    }
}

/// An overflow of the shim's stack is an error (`Err(size)`), not a silent corruption
/// of the bss below it; with `verbose`, `say` gets the high-water mark.
pub fn check_stack(verbose: bool, say: impl FnOnce(core::fmt::Arguments<'_>)) -> Result<(), u64> {
    if verbose {
        let (used, size) = stack_use()?;
        say(format_args!("stack used {used} of {size} bytes"));
        return Ok(());
    }
    // The overflow check alone is the bottom word: it keeps its paint unless reached.
    let region = stack();
    // SAFETY: the lowest word of our own stack region, identity-mapped, below every
    // live frame; only read.
    match unsafe { core::ptr::read_volatile(region.start as *const u64) } {
        stack::PAINT => Ok(()),
        _ => Err(region.len()),
    }
}

/// How deep the stack ever went, and its size: `Err(size)` if it ran off the bottom
/// (into the bss below it), a corruption that must stop the boot.
pub fn stack_use() -> Result<(u64, u64), u64> {
    let region = stack();
    let (bottom, size) = (region.start, region.len());
    let used = stack::used((size / 8) as usize, |i| {
        // SAFETY: the word lies in our own stack region, identity-mapped; the scan stops
        // at the first word ever written, below every live frame, and only reads.
        unsafe { core::ptr::read_volatile((bottom + 8 * i as u64) as *const u64) }
    }) as u64;
    if used >= size {
        return Err(size);
    }
    Ok((used, size))
}
