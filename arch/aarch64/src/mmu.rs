//! Page tables and the MMU (ARM ARM D8, VMSAv8-64 with the 4K granule).
//! TTBR0: an identity map of [0, 512 GiB) (T0SZ = 25, walks start at level 1): normal
//! write-back memory where asked, device memory everywhere else. TTBR1: the payload at
//! its randomized base (T1SZ = 16, 48-bit, four levels), 4K pages per segment.

use core::mem::MaybeUninit;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    ID_AA64MMFR0_EL1, MAIR_EL1, SCTLR_EL1, TCR_EL1, TTBR0_EL1, TTBR1_EL1,
};
use shim_common::memmap::{Cover, MemoryMap, Range, Sweep};
use shim_rt::Tables;
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::LocalRegisterCopy;

use crate::cpu;

register_bitfields! {u64,
    /// A stage 1 descriptor (ARM ARM D8.3): a table, block or page entry.
    DESC [
        VALID OFFSET(0) NUMBITS(1) [],
        /// Levels 0-2: 1 = next-level table, 0 = block. Level 3: must be 1 (page).
        TABLE_OR_PAGE OFFSET(1) NUMBITS(1) [],
        /// Index into MAIR_EL1.
        ATTR_INDX OFFSET(2) NUMBITS(3) [Device = 0, Normal = 1],
        /// AP[2:1]: EL1 read/write or read-only, no EL0 access.
        AP OFFSET(6) NUMBITS(2) [ReadWrite = 0b00, ReadOnly = 0b10],
        SH OFFSET(8) NUMBITS(2) [Inner = 0b11],
        /// Access flag: set, so the first access does not fault.
        AF OFFSET(10) NUMBITS(1) [],
        /// not-Global: the translation is cached under the current ASID only.
        NG OFFSET(11) NUMBITS(1) [],
        /// Output address (or next table) bits [47:12].
        ADDR OFFSET(12) NUMBITS(36) [],
        PXN OFFSET(53) NUMBITS(1) [],
        UXN OFFSET(54) NUMBITS(1) []
    ]
}

const ENTRIES: usize = 512;
const GIB: u64 = 1 << 30;
const MIB2: u64 = 2 << 20;
const PAGE: u64 = 4096;
/// T0SZ = 25: TTBR0 covers 2^39 bytes, 512 entries of 1 GiB at level 1.
const T0SZ: u64 = 25;
/// The end of what the identity map covers: 512 GiB.
pub const IDENTITY_LIMIT: u64 = 1 << (64 - T0SZ);
/// T1SZ = 16: TTBR1 covers the top 2^48 bytes.
const T1SZ: u64 = 16;

/// Tables for the early map (1 + 2), the final identity map and the payload.
const POOL_TABLES: usize = 96;

#[repr(C, align(4096))]
pub struct Table([u64; ENTRIES]);

/// Outside .bss (linker.ld's .noinit): entry.S does not zero 384 KiB of which a boot uses
/// a few tables; each is zeroed when handed out.
#[link_section = ".noinit.page_tables"]
static mut POOL: MaybeUninit<[Table; POOL_TABLES]> = MaybeUninit::uninit();

/// What a mapping allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attr {
    /// Device-nGnRE, never executable.
    Device,
    /// Normal memory in the identity map: read, write, execute at EL1.
    Ram,
    /// Payload text: read and execute.
    Text,
    /// Payload read-only data.
    ReadOnly,
    /// Payload data and bss: read and write, never executable.
    Data,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmuError {
    /// The page-table pool is used up (the payload is too large for it).
    OutOfTables,
    /// Two payload segments share a page, or a page is mapped twice.
    Overlap { va: u64 },
}

impl core::fmt::Display for MmuError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MmuError::OutOfTables => write!(f, "page-table pool ({POOL_TABLES} tables) exhausted"),
            MmuError::Overlap { va } => write!(f, "payload page {va:#x} mapped twice"),
        }
    }
}

/// A block or page descriptor. A plain copy, not a volatile register: the identity map
/// writes hundreds of thousands of these.
fn descriptor(pa: u64, attr: Attr, page: bool) -> u64 {
    let mut d = LocalRegisterCopy::<u64, DESC::Register>::new(0);
    d.write(DESC::VALID::SET + DESC::AF::SET + DESC::ADDR.val(pa >> 12));
    if page {
        d.modify(DESC::TABLE_OR_PAGE::SET);
    }
    let (index, ap, pxn) = match attr {
        Attr::Device => (DESC::ATTR_INDX::Device, DESC::AP::ReadWrite, true),
        Attr::Ram => (DESC::ATTR_INDX::Normal, DESC::AP::ReadWrite, false),
        Attr::Text => (DESC::ATTR_INDX::Normal, DESC::AP::ReadOnly, false),
        Attr::ReadOnly => (DESC::ATTR_INDX::Normal, DESC::AP::ReadOnly, true),
        Attr::Data => (DESC::ATTR_INDX::Normal, DESC::AP::ReadWrite, true),
    };
    d.modify(index + ap + DESC::UXN::SET + DESC::PXN.val(u64::from(pxn)));
    if attr != Attr::Device {
        d.modify(DESC::SH::Inner);
    }
    // The identity maps are per-ASID, so that switching from the early one to the final
    // one never leaves two live translations of one address in the TLB.
    if matches!(attr, Attr::Device | Attr::Ram) {
        d.modify(DESC::NG::SET);
    }
    d.get()
}

fn table_descriptor(table: &Table) -> u64 {
    let mut d = LocalRegisterCopy::<u64, DESC::Register>::new(0);
    d.write(DESC::VALID::SET + DESC::TABLE_OR_PAGE::SET + DESC::ADDR.val(pa_of(table) >> 12));
    d.get()
}

/// Tables live in our own image, which is identity-mapped: the address is the PA.
fn pa_of(table: &Table) -> u64 {
    table as *const Table as u64
}

/// Hands out zeroed tables from the pool; each exactly once.
pub struct Pool {
    tables: Tables<Table, POOL_TABLES>,
}

impl Pool {
    /// # Safety
    /// Called once: the pool's tables are handed out as unique references.
    pub unsafe fn take() -> Pool {
        // SAFETY: called once, so this is POOL's only user; a zeroed Table is empty.
        let tables = unsafe { Tables::new(core::ptr::addr_of_mut!(POOL)) };
        Pool { tables }
    }

    /// The tables handed out so far.
    pub fn written(&self) -> Range {
        self.tables.handed_out()
    }

    fn alloc(&mut self) -> Result<&'static mut Table, MmuError> {
        self.tables.alloc().ok_or(MmuError::OutOfTables)
    }

    /// Follows (or creates) the next-level table behind `entry`.
    fn next_level(&mut self, entry: &mut u64) -> Result<&'static mut Table, MmuError> {
        if *entry == 0 {
            let table = self.alloc()?;
            *entry = table_descriptor(table);
            return Ok(table);
        }
        let pa = DESC::ADDR.read(*entry) << 12;
        // SAFETY: non-zero entries at this level were written by `next_level` above and
        // point at pool tables; no other reference to that table is live.
        Ok(unsafe { &mut *(pa as *mut Table) })
    }

    /// An identity map of [0, 512 GiB): normal memory exactly where `normal` says, to
    /// the page, Device everywhere else: 1 GiB blocks where a whole gigabyte is one or
    /// the other, 2 MiB blocks likewise, 4 KiB pages in a 2 MiB block that is mixed.
    /// Returns the level 1 table.
    pub fn identity(&mut self, normal: &MemoryMap) -> Result<&'static Table, MmuError> {
        /// Normal, Device, or mixed (`None`) over `r`.
        fn kind(sweep: &mut Sweep<'_>, r: Range) -> Option<Attr> {
            match sweep.cover(r) {
                Cover::All => Some(Attr::Ram),
                Cover::Nothing => Some(Attr::Device),
                Cover::Part => None,
            }
        }
        // Blocks are visited in address order: the sweep answers each in constant time.
        let mut sweep = Sweep::new(normal);
        let l1 = self.alloc()?;
        for (i, entry) in l1.0.iter_mut().enumerate() {
            let gib = Range {
                start: i as u64 * GIB,
                end: (i as u64 + 1) * GIB,
            };
            if let Some(attr) = kind(&mut sweep, gib) {
                *entry = descriptor(gib.start, attr, false);
                continue;
            }
            let l2 = self.next_level(entry)?;
            for (j, block) in l2.0.iter_mut().enumerate() {
                let start = gib.start + j as u64 * MIB2;
                let mib2 = Range {
                    start,
                    end: start + MIB2,
                };
                if let Some(attr) = kind(&mut sweep, mib2) {
                    *block = descriptor(start, attr, false);
                    continue;
                }
                let l3 = self.next_level(block)?;
                // Device pages, then normal ones where a page lies wholly in a normal
                // range; the address ORs into the rest of the descriptor.
                let device = descriptor(0, Attr::Device, true);
                for (k, page) in l3.0.iter_mut().enumerate() {
                    *page = (start + k as u64 * PAGE) | device;
                }
                let ram = descriptor(0, Attr::Ram, true);
                for n in sweep.overlapping(mib2) {
                    let first = n.start.max(start).next_multiple_of(PAGE);
                    let end = n.end.min(mib2.end) & !(PAGE - 1);
                    for at in (first..end).step_by(PAGE as usize) {
                        if let Some(page) = l3.0.get_mut(((at - start) / PAGE) as usize) {
                            *page = at | ram;
                        }
                    }
                }
            }
        }
        Ok(l1)
    }

    /// A fresh level 0 table for TTBR1.
    pub fn root(&mut self) -> Result<&'static mut Table, MmuError> {
        self.alloc()
    }

    /// Maps `len` bytes (page multiples) at `va` to `pa` with 4K pages.
    pub fn map_pages(
        &mut self,
        l0: &mut Table,
        va: u64,
        pa: u64,
        len: u64,
        attr: Attr,
    ) -> Result<(), MmuError> {
        let mut off = 0;
        while off < len {
            let (va, pa) = (va + off, pa + off);
            let index = |level: u32| ((va >> (39 - 9 * level)) & 0x1ff) as usize;
            let l1 = self.next_level(&mut l0.0[index(0)])?;
            let l2 = self.next_level(&mut l1.0[index(1)])?;
            let l3 = self.next_level(&mut l2.0[index(2)])?;
            let entry = &mut l3.0[index(3)];
            if *entry != 0 {
                return Err(MmuError::Overlap { va });
            }
            *entry = descriptor(pa, attr, true);
            off += PAGE;
        }
        Ok(())
    }
}

/// Turns the MMU and caches on with `ttbr0` as the identity map; TTBR1 walks stay off
/// until [`enter_ttbr1`]. Called once, at EL1 with the MMU off.
///
/// # Safety
/// `ttbr0` identity-maps, as normal memory, the code and stack now running and every
/// byte written since entry, which `written` lists: their stale cache lines are
/// invalidated first.
pub unsafe fn enable(ttbr0: &Table, written: &[Range]) {
    // MAIR_EL1: attribute 0 Device-nGnRE, attribute 1 Normal write-back RW-allocate.
    MAIR_EL1.write(
        MAIR_EL1::Attr0_Device::nonGathering_nonReordering_EarlyWriteAck
            + MAIR_EL1::Attr1_Normal_Outer::WriteBack_NonTransient_ReadWriteAlloc
            + MAIR_EL1::Attr1_Normal_Inner::WriteBack_NonTransient_ReadWriteAlloc,
    );
    // IPS: the CPU's physical address size (ID_AA64MMFR0_EL1.PARange uses the same
    // encoding), at most 48 bits as the 4K granule without FEAT_LPA2 allows.
    let ips = ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange).min(0b101);
    TCR_EL1.write(
        TCR_EL1::T0SZ.val(T0SZ)
            + TCR_EL1::TG0::KiB_4
            + TCR_EL1::SH0::Inner
            + TCR_EL1::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL1::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL1::EPD0::EnableTTBR0Walks
            + TCR_EL1::T1SZ.val(T1SZ)
            + TCR_EL1::TG1::KiB_4
            + TCR_EL1::SH1::Inner
            + TCR_EL1::ORGN1::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL1::IRGN1::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL1::EPD1::DisableTTBR1Walks
            + TCR_EL1::IPS.val(ips),
    );
    TTBR0_EL1.set_baddr(pa_of(ttbr0));
    for r in written {
        cpu::invalidate_dcache(r.start, r.len());
    }
    cpu::flush_tlb();
    // SCTLR_EL1 is set whole, not modified: firmware leftovers (WXN, A, EE, ...) must
    // not survive. Stage 1 translation, data and instruction caches on, SP alignment
    // checks, little-endian, WFI/WFE not trapped; the RES1 bits of ARMv8.0 (EOS 11,
    // TSCXT 20, EIS 22, SPAN 23, nTLSMD 28, LSMAOE 29) as they must read.
    const RES1: u64 = 1 << 11 | 1 << 20 | 1 << 22 | 1 << 23 | 1 << 28 | 1 << 29;
    SCTLR_EL1.set(RES1);
    SCTLR_EL1.modify(
        SCTLR_EL1::M::Enable
            + SCTLR_EL1::C::Cacheable
            + SCTLR_EL1::I::Cacheable
            + SCTLR_EL1::SA::Enable
            + SCTLR_EL1::SA0::Enable
            + SCTLR_EL1::NTWE::DontTrap
            + SCTLR_EL1::NTWI::DontTrap,
    );
    barrier::isb(barrier::SY);
    cpu::invalidate_icache();
}

/// Replaces the identity map while the MMU is on. Both maps translate every address
/// the shim is using to itself; the new one runs under ASID 1 (the early one had 0),
/// so the TLB never holds two live translations of one address, whatever their
/// block sizes (ARM ARM D8.16, break-before-make), and ASID 0's entries are dropped.
pub fn switch_ttbr0(ttbr0: &Table) {
    barrier::dsb(barrier::ISHST);
    TTBR0_EL1.write(TTBR0_EL1::ASID.val(1) + TTBR0_EL1::BADDR.val(pa_of(ttbr0) >> 1));
    barrier::isb(barrier::SY);
    cpu::flush_asid(0);
}

/// Installs the payload's tables in TTBR1 and enables TTBR1 walks.
pub fn enter_ttbr1(l0: &Table) {
    TTBR1_EL1.set_baddr(pa_of(l0));
    TCR_EL1.modify(TCR_EL1::EPD1::EnableTTBR1Walks);
    barrier::isb(barrier::SY);
    cpu::flush_tlb();
}
