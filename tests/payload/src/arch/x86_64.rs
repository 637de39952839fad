//! x86_64: the entry, the COM1 16550 console, QEMU's isa-debug-exit, a look at
//! boot_params, and the address primitives the checks use (RIP-relative `lea`, a walk
//! of CR3's 4-level page tables, which the shim identity-maps in the low half).
//! Nothing here has state, so nothing in `.bss` is written before the bss check.

use crate::{fail, run};
use core::arch::asm;
use core::fmt::{self, Write};
use core::ptr::{read_unaligned, read_volatile};
use x86_64::instructions::port::{PortReadOnly, PortWriteOnly};
use x86_64::instructions::{hlt, interrupts};
use x86_64::registers::control::Cr3;

// Entry, at link address 0. rdi = BootInfo and rsi = boot_params (physical,
// identity-mapped) are left untouched for `payload_main`. The stack is found
// RIP-relatively, valid at any VA; `_stack_top` is 16-aligned, so rsp is too at the
// call, as the SysV ABI wants. bss is deliberately not zeroed: checking that the loader
// did is the point.
core::arch::global_asm!(
    ".section .text.entry, \"ax\"",
    ".global _start",
    "_start:",
    "    lea  rsp, [rip + _stack_top]",
    "    xor  ebp, ebp",
    "    cld",
    "    call {main}",
    "    ud2",
    main = sym payload_main,
);

/// rdi = BootInfo, rsi = boot_params, as the x86_64 handoff ABI passes them.
extern "C" fn payload_main(info_pa: u64, boot_params_pa: u64) -> ! {
    run(info_pa, boot_params_pa)
}

/// COM1's transmit holding register and line status register, and the LSR bits:
/// THR empty, transmitter (THR and shift register) empty.
const COM1_THR: u16 = 0x3f8;
const COM1_LSR: u16 = 0x3fd;
const LSR_THRE: u8 = 1 << 5;
const LSR_TEMT: u8 = 1 << 6;

/// QEMU's `isa-debug-exit,iobase=0xf4`: QEMU exits with status `(value << 1) | 1`.
const DEBUG_EXIT: u16 = 0xf4;
const EXIT_OK: u32 = 0x10; // status 33
const EXIT_FAIL: u32 = 0x11; // status 35

struct Com1;

impl Com1 {
    fn wait(mask: u8) {
        let mut lsr = PortReadOnly::<u8>::new(COM1_LSR);
        // SAFETY: reading the LSR only clears its error bits, which nothing here uses.
        // Without a UART the read gives 0xff, so this does not spin forever.
        while unsafe { lsr.read() } & mask == 0 {
            core::hint::spin_loop();
        }
    }
}

impl Write for Com1 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut thr = PortWriteOnly::<u8>::new(COM1_THR);
        for b in s.bytes() {
            Self::wait(LSR_THRE);
            // SAFETY: with DLAB clear (the firmware's and QEMU's setting), a write to
            // 0x3f8 sends one byte; it touches no memory.
            unsafe { thr.write(b) };
        }
        Ok(())
    }
}

/// Nothing to find: the console is COM1, at a fixed port.
pub fn init(_boot_params_pa: u64) {}

/// The COM1 16550.
pub fn console() -> Option<impl Write> {
    Some(Com1)
}

/// boot_params (the zero page) holds the setup header, whose `"HdrS"` is at 0x202.
/// No residue scan on x86 yet: returns `None`.
pub fn check_handoff(boot_params_pa: u64, _info: &shim_common::bootinfo::BootInfo) -> Option<u64> {
    const HDRS: u32 = u32::from_le_bytes(*b"HdrS");
    let magic = match boot_params_pa {
        0 => 0,
        // SAFETY: the handoff ABI puts the 4 KiB boot_params at `boot_params_pa`, in RAM
        // that the low half identity-maps; 0x202 + 4 lies within it.
        pa => unsafe { read_unaligned((pa + 0x202) as *const u32) },
    };
    if magic != HDRS {
        fail(format_args!("boot_params at {boot_params_pa:#x}: no HdrS"));
    }
    None
}

/// isa-debug-exit with 0x10 (QEMU exits 33) on success, 0x11 (exits 35) on failure,
/// once COM1 has sent everything. Without the device, halts with interrupts off.
pub fn power_off(ok: bool) -> ! {
    Com1::wait(LSR_TEMT);
    let code = if ok { EXIT_OK } else { EXIT_FAIL };
    // SAFETY: under QEMU the port is isa-debug-exit, which ends the VM; elsewhere 0xf4
    // is unclaimed legacy space and the write is dropped. It touches no memory.
    unsafe { PortWriteOnly::<u32>::new(DEBUG_EXIT).write(code) };
    loop {
        interrupts::disable();
        hlt();
    }
}

/// Runtime address of a linker-script symbol, by RIP-relative `lea`.
macro_rules! sym_addr {
    ($sym:literal) => {{
        let addr: usize;
        // SAFETY: lea only computes an address; linker.ld defines the symbol.
        unsafe {
            core::arch::asm!(
                concat!("lea {0}, [rip + ", $sym, "]"),
                out(reg) addr,
                options(pure, nomem, nostack, preserves_flags),
            )
        };
        addr
    }};
}
pub(crate) use sym_addr;

/// The current RIP.
#[inline(always)]
pub fn pc() -> u64 {
    let pc: u64;
    // SAFETY: `lea` only computes the address of the next instruction.
    unsafe { asm!("lea {}, [rip]", out(reg) pc, options(nomem, nostack, preserves_flags)) };
    pc
}

/// The counter the shim's timings count (the TSC).
pub fn counter() -> u64 {
    // SAFETY: RDTSC reads a counter; CR4.TSD only matters outside ring 0.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// A failed walk: the level (4 = PML4 .. 1 = PT) and the entry found there.
pub struct Fault {
    level: u32,
    entry: u64,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "walk fault level={} entry={:#x}", self.level, self.entry)
    }
}

/// Page-table entry bits: present, page size (a 1 GiB or 2 MiB leaf), address.
const PTE_P: u64 = 1 << 0;
const PTE_PS: u64 = 1 << 7;
const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;

/// Translation of `va` by walking the 4-level tables from CR3: the PA, or the entry
/// that is not present (or has PS set in the PML4, where it is reserved).
pub fn translate(va: usize) -> Result<u64, Fault> {
    let va = va as u64;
    let mut table = Cr3::read_raw().0.start_address().as_u64();
    let mut level = 4;
    loop {
        let shift = 12 + 9 * (level - 1);
        let index = (va >> shift) as usize & 0x1ff;
        // SAFETY: `table` is a 4 KiB page-table page (from CR3 or a non-leaf entry) in
        // RAM that the low half identity-maps; index < 512.
        let entry = unsafe { read_volatile((table as *const u64).add(index)) };
        if entry & PTE_P == 0 || (level == 4 && entry & PTE_PS != 0) {
            return Err(Fault { level, entry });
        }
        if level == 1 || entry & PTE_PS != 0 {
            // In a 1 GiB or 2 MiB leaf, bit 12 is PAT: the offset mask hides it.
            let offset = (1 << shift) - 1;
            return Ok(entry & PTE_ADDR & !offset | va & offset);
        }
        table = entry & PTE_ADDR;
        level -= 1;
    }
}
