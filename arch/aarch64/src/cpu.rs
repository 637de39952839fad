//! Single instructions the shim needs by name: counters, the RNG, cache and TLB
//! maintenance (ARM ARM D7.5, "Cache maintenance"), halting and the final jump.

use core::arch::asm;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::asm::random::ArmRng;
use aarch64_cpu::registers::{CNTFRQ_EL0, CNTPCT_EL0};
use tock_registers::interfaces::Readable;

/// CNTPCT_EL0, the physical count (CNTFRQ_EL0 is programmed by the firmware).
pub fn counter() -> u64 {
    CNTPCT_EL0.get()
}

/// CNTFRQ_EL0: the counter's frequency in Hz, as the firmware programmed it.
pub fn counter_frequency() -> u64 {
    CNTFRQ_EL0.get()
}

/// One RNDR value where ID_AA64ISAR0_EL1.RNDR says the instruction exists and it
/// succeeds (it fails, NZCV = 0b0100, when the entropy source cannot deliver).
pub fn rndr() -> Option<u64> {
    ArmRng::new().and_then(|rng| rng.rndr())
}

/// The smallest data cache line, from CTR_EL0.DminLine (log2 of words).
fn dcache_line() -> u64 {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    4 << ((ctr >> 16) & 0xf)
}

/// Zero-fills `bytes`, which must be Normal memory (the MMU on: DC ZVA faults on
/// Device memory): a DC ZVA block at a time (DCZID_EL0: 4 << BS bytes) where whole
/// blocks fit, stores at the ends, and stores alone where DCZID_EL0.DZP prohibits it.
pub fn zero(bytes: &mut [u8]) {
    let dczid: u64;
    // SAFETY: reading DCZID_EL0 has no side effects.
    unsafe { asm!("mrs {}, dczid_el0", out(reg) dczid, options(nomem, nostack)) };
    let block = 4usize << (dczid & 0xf);
    let start = bytes.as_ptr() as usize;
    let head = start.next_multiple_of(block) - start;
    let blocks = bytes.len().saturating_sub(head) / block * block;
    if dczid & 1 << 4 != 0 || blocks == 0 {
        bytes.fill(0);
        return;
    }
    let (ends, body) = bytes.split_at_mut(head);
    ends.fill(0);
    let (body, tail) = body.split_at_mut(blocks);
    tail.fill(0);
    for block in body.chunks_exact_mut(block) {
        // SAFETY: DC ZVA zeroes the aligned block holding the address: `block`, which
        // this function borrows exclusively, in Normal memory as the caller promised.
        unsafe { asm!("dc zva, {}", in(reg) block.as_mut_ptr(), options(nostack)) };
    }
}

/// A data cache operation on every line of a range: four lines a step while four
/// remain (a 27 MB Image is 430,000 lines), then one at a time.
macro_rules! by_line {
    ($op:literal, $start:expr, $len:expr) => {{
        let line = dcache_line();
        let mut addr = $start & !(line - 1);
        let end = $start.saturating_add($len);
        while end.saturating_sub(addr) >= 4 * line {
            // SAFETY: data cache maintenance by VA on mapped (or, MMU off, physical)
            // memory changes no architectural state but the cache's.
            unsafe {
                asm!(
                    concat!("dc ", $op, ", {a}"),
                    "add {a}, {a}, {line}",
                    concat!("dc ", $op, ", {a}"),
                    "add {a}, {a}, {line}",
                    concat!("dc ", $op, ", {a}"),
                    "add {a}, {a}, {line}",
                    concat!("dc ", $op, ", {a}"),
                    "add {a}, {a}, {line}",
                    a = inout(reg) addr,
                    line = in(reg) line,
                    options(nostack)
                )
            };
        }
        while addr < end {
            // SAFETY: as above.
            unsafe { asm!(concat!("dc ", $op, ", {}"), in(reg) addr, options(nostack)) };
            addr += line;
        }
        barrier::dsb(barrier::SY);
    }};
}

/// DC IVAC over a range: drops cached lines so the memory's contents are what a
/// cacheable read sees. Used, MMU off, on what we wrote before turning caches on.
pub fn invalidate_dcache(start: u64, len: u64) {
    by_line!("ivac", start, len);
}

/// DC CVAC over a range: writes dirty lines back to the point of coherency, where a
/// reader with its MMU (and so its caches) off looks.
pub fn clean_dcache_poc(start: u64, len: u64) {
    by_line!("cvac", start, len);
}

/// DC CVAU over a range: makes written instructions visible to instruction fetch.
pub fn clean_dcache_pou(start: u64, len: u64) {
    by_line!("cvau", start, len);
}

/// IC IALLU, then the barriers that make it take effect.
pub fn invalidate_icache() {
    // SAFETY: invalidating the instruction cache has no effect on data.
    unsafe { asm!("ic iallu", "dsb nsh", "isb", options(nostack)) };
}

/// TLBI VMALLE1: forget every EL1 translation after a table switch.
pub fn flush_tlb() {
    // SAFETY: TLB maintenance only drops cached translations.
    unsafe {
        asm!(
            "dsb ishst",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            options(nostack)
        )
    };
}

/// TLBI ASIDE1: forget the translations cached under `asid`.
pub fn flush_asid(asid: u16) {
    let operand = u64::from(asid) << 48;
    // SAFETY: TLB maintenance only drops cached translations.
    unsafe {
        asm!(
            "dsb ishst",
            "tlbi aside1, {}",
            "dsb nsh",
            "isb",
            in(reg) operand,
            options(nostack)
        )
    };
}

/// Stops here for good: the shim has said why on the console.
pub fn halt() -> ! {
    loop {
        aarch64_cpu::asm::wfe();
    }
}

extern "C" {
    fn shim_enter_payload(entry: u64, x0: u64, x1: u64, stack_bottom: u64, stack_top: u64) -> !;
    fn shim_enter_linux(entry: u64, fdt: u64, at_el2: u64, stack_bottom: u64, stack_top: u64) -> !;
    static __stack_bottom: u8;
    static __stack_top: u8;
}

/// The shim's stack, which both handoffs wipe.
fn stack() -> (u64, u64) {
    (
        core::ptr::addr_of!(__stack_bottom) as u64,
        core::ptr::addr_of!(__stack_top) as u64,
    )
}

/// Jumps to an ELF payload (handoff.S): x0 = device tree, x1 = boot-info block, both
/// physical, with the stack and the other registers wiped.
///
/// # Safety
/// `entry` is mapped executable and the payload there expects this handoff; nothing
/// on the shim's stack is needed any more.
pub unsafe fn jump(entry: u64, fdt: u64, info: u64) -> ! {
    let (bottom, top) = stack();
    // SAFETY: as the caller promises; the routine never returns.
    unsafe { shim_enter_payload(entry, fdt, info, bottom, top) }
}

/// Enters a Linux Image (handoff.S): wipes the stack, turns the MMU and caches off,
/// undoes the shim's EL1 state and jumps with x0 = FDT, at EL2 if `at_el2`.
///
/// # Safety
/// The Image at `entry` and the device tree at `fdt` are cleaned to the PoC; the code
/// running now is identity-mapped; nothing on the shim's stack is needed any more.
pub unsafe fn enter_linux(entry: u64, fdt: u64, at_el2: bool) -> ! {
    let (bottom, top) = stack();
    // SAFETY: as the caller promises; the routine never returns.
    unsafe { shim_enter_linux(entry, fdt, u64::from(at_el2), bottom, top) }
}
