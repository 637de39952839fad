//! 4-level page tables (Intel SDM 3A 5.5, "4-Level Paging"), from a pool in the shim's
//! bss. Low half: an identity map of physical memory, 1 GiB or 2 MiB pages, writable,
//! execute-disable except the 2 MiB blocks holding the shim. High half: the payload with
//! 4 KiB pages per segment. Tables are identity-mapped: a table's address is its PA.

use core::fmt;
use core::mem::MaybeUninit;

use shim_common::boot::Perm;
use shim_common::memmap::Range;
use shim_rt::Tables;
use x86_64::structures::paging::{PageTable, PageTableFlags as F, PageTableIndex};
use x86_64::PhysAddr;

const GIB: u64 = 1 << 30;
const MIB2: u64 = 2 << 20;
const PAGE: u64 = 4096;
/// One PML4 entry spans 512 GiB.
const PML4_SPAN: u64 = 512 * GIB;
/// The end of what the identity map covers: the first PML4 entry.
pub const IDENTITY_LIMIT: u64 = PML4_SPAN;

/// The identity map, the payload, and 2 MiB pages for up to ~40 GiB without 1 GiB pages.
const POOL_TABLES: usize = 48;

/// Outside .bss (linker.ld's .noinit): entry.S does not zero 192 KiB of which a boot uses
/// a few tables; each is zeroed when handed out.
#[link_section = ".noinit.page_tables"]
static mut POOL: MaybeUninit<[PageTable; POOL_TABLES]> = MaybeUninit::uninit();

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingError {
    /// The page-table pool is used up (too much RAM without 1 GiB pages, or a payload
    /// too large for it).
    OutOfTables,
    /// Two payload segments share a page, or a page is mapped twice.
    Overlap { va: u64 },
    /// The identity map would reach past the 512 GiB the low half gives it.
    TooHigh { end: u64 },
}

impl fmt::Display for PagingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PagingError::OutOfTables => {
                write!(f, "page-table pool ({POOL_TABLES} tables) exhausted")
            }
            PagingError::Overlap { va } => write!(f, "payload page {va:#x} mapped twice"),
            PagingError::TooHigh { end } => {
                write!(f, "identity map up to {end:#x} exceeds the low half")
            }
        }
    }
}

/// What the CPU lets the tables say.
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    /// The XD bit (IA32_EFER.NXE is set).
    pub nx: bool,
    /// 1 GiB pages.
    pub page_1g: bool,
}

/// Hands out zeroed tables from the pool; each exactly once.
pub struct Pool {
    tables: Tables<PageTable, POOL_TABLES>,
    caps: Caps,
}

fn index(va: u64, level: u32) -> PageTableIndex {
    PageTableIndex::new_truncate((va >> (12 + 9 * (level - 1))) as u16)
}

/// Tables live in our own image, which is identity-mapped: the address is the PA.
pub fn pa_of(table: &PageTable) -> u64 {
    table as *const PageTable as u64
}

impl Pool {
    /// # Safety
    /// Called once: the pool's tables are handed out as unique references.
    pub unsafe fn take(caps: Caps) -> Pool {
        // SAFETY: called once, so this is POOL's only user; a zeroed PageTable is empty.
        let tables = unsafe { Tables::new(core::ptr::addr_of_mut!(POOL)) };
        Pool { tables, caps }
    }

    fn alloc(&mut self) -> Result<&'static mut PageTable, PagingError> {
        self.tables.alloc().ok_or(PagingError::OutOfTables)
    }

    /// `flags` without XD where the CPU has no NX (there the bit is reserved).
    fn leaf(&self, flags: F) -> F {
        match self.caps.nx {
            true => flags,
            false => flags - F::NO_EXECUTE,
        }
    }

    /// Follows (or creates) the next-level table behind `entry`. Non-leaf entries are
    /// present and writable, never XD: the leaves decide.
    fn next_level(
        &mut self,
        entry: &mut x86_64::structures::paging::page_table::PageTableEntry,
        va: u64,
    ) -> Result<&'static mut PageTable, PagingError> {
        if entry.is_unused() {
            let table = self.alloc()?;
            entry.set_addr(PhysAddr::new(pa_of(table)), F::PRESENT | F::WRITABLE);
            return Ok(table);
        }
        if entry.flags().contains(F::HUGE_PAGE) {
            return Err(PagingError::Overlap { va });
        }
        // SAFETY: present non-leaf entries were written by this function and point at
        // pool tables; no other reference to that table is live.
        Ok(unsafe { &mut *(entry.addr().as_u64() as *mut PageTable) })
    }

    /// A fresh PML4.
    pub fn root(&mut self) -> Result<&'static mut PageTable, PagingError> {
        self.alloc()
    }

    /// Identity-maps `[0, end)` (`end` rounded up to 1 GiB): 1 GiB pages where the CPU
    /// has them and the gigabyte holds no executable block, else 2 MiB pages; writable,
    /// execute-disable except the 2 MiB blocks that overlap a range in `exec`.
    /// Gigabytes already mapped are kept, so the map can grow.
    pub fn identity(
        &mut self,
        pml4: &mut PageTable,
        end: u64,
        exec: &[Range],
    ) -> Result<(), PagingError> {
        let runs = |range: &Range| exec.iter().any(|e| range.overlaps(e));
        let end = end
            .checked_next_multiple_of(GIB)
            .filter(|&e| e <= PML4_SPAN)
            .ok_or(PagingError::TooHigh { end })?;
        let data = self.leaf(F::PRESENT | F::WRITABLE | F::HUGE_PAGE | F::NO_EXECUTE);
        let code = F::PRESENT | F::WRITABLE | F::HUGE_PAGE;
        let pdpt = self.next_level(&mut pml4[index(0, 4)], 0)?;
        for gib in (0..end).step_by(GIB as usize) {
            let entry = &mut pdpt[index(gib, 3)];
            if !entry.is_unused() {
                continue;
            }
            let range = Range {
                start: gib,
                end: gib + GIB,
            };
            if self.caps.page_1g && !runs(&range) {
                entry.set_addr(PhysAddr::new(gib), data);
                continue;
            }
            let pd = self.next_level(entry, gib)?;
            for block in (gib..gib + GIB).step_by(MIB2 as usize) {
                let range = Range {
                    start: block,
                    end: block + MIB2,
                };
                let flags = if runs(&range) { code } else { data };
                pd[index(block, 2)].set_addr(PhysAddr::new(block), flags);
            }
        }
        Ok(())
    }

    /// Maps `len` bytes (page multiples) at `va` to `pa` with 4 KiB pages.
    pub fn map_pages(
        &mut self,
        pml4: &mut PageTable,
        va: u64,
        pa: u64,
        len: u64,
        perm: Perm,
    ) -> Result<(), PagingError> {
        let flags = self.leaf(match perm {
            Perm::Text => F::PRESENT,
            Perm::ReadOnly => F::PRESENT | F::NO_EXECUTE,
            Perm::Data => F::PRESENT | F::WRITABLE | F::NO_EXECUTE,
        });
        let mut off = 0;
        while off < len {
            let (va, pa) = (va.wrapping_add(off), pa + off);
            let pdpt = self.next_level(&mut pml4[index(va, 4)], va)?;
            let pd = self.next_level(&mut pdpt[index(va, 3)], va)?;
            let pt = self.next_level(&mut pd[index(va, 2)], va)?;
            let entry = &mut pt[index(va, 1)];
            if !entry.is_unused() {
                return Err(PagingError::Overlap { va });
            }
            entry.set_addr(PhysAddr::new(pa), flags);
            off += PAGE;
        }
        Ok(())
    }
}
