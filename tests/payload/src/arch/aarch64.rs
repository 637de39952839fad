//! arm64: the entry, the board as the device tree describes it (its console UART and
//! the PSCI conduit, if any), and the address primitives the checks use (`adrp`,
//! `AT S1E1R`).
//! State lives in `.data` atomics with non-zero initial values, so nothing in `.bss`
//! is written before the payload has checked that the loader zeroed it.

use crate::{checks, run};
use core::arch::asm;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU8, Ordering::Relaxed};
use shim_common::bootinfo::BootInfo;
use shim_common::fdt::{self, Fdt as Blob, Header, Machine, PsciConduit};
use shim_uart::{Mmio, Slot};

// Entry, at link address 0. x0 = FDT and x1 = BootInfo (physical, identity-mapped) are
// left untouched for `payload_main`. The stack is found PC-relatively, valid at any VA.
// bss is deliberately not zeroed: checking that the loader did is the point.
core::arch::global_asm!(
    ".section .text.entry, \"ax\"",
    ".global _start",
    "_start:",
    "    adrp x9, _stack_top",
    "    add  x9, x9, :lo12:_stack_top",
    "    mov  sp, x9",
    "    mov  x29, xzr",
    "    mov  x30, xzr",
    "    b    {main}",
    main = sym payload_main,
);

/// x0 = FDT, x1 = BootInfo, as the arm64 handoff ABI passes them.
extern "C" fn payload_main(fdt_pa: u64, info_pa: u64) -> ! {
    run(info_pa, fdt_pa)
}

/// The console, as `init` found it (kept in `.data`: see `Slot`).
static UART: Slot = Slot::new();
const NO_PSCI: u8 = 3;
const HVC: u8 = 1;
const SMC: u8 = 2;
/// PSCI conduit: none until the FDT names one.
static CONDUIT: AtomicU8 = AtomicU8::new(NO_PSCI);

const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;
const PSCI_SYSTEM_RESET: u64 = 0x8400_0009;

/// The device tree at `fdt_pa`, read with shim-common's checked reader.
fn device_tree(fdt_pa: u64) -> Option<Blob<'static>> {
    // SAFETY: the handoff ABI puts a device tree at `fdt_pa`, identity-mapped; its
    // header (40 bytes) is read first, then `totalsize` bytes (at most 2 MiB).
    let head = unsafe { core::slice::from_raw_parts(fdt_pa as usize as *const u8, 40) };
    let size = Header::read(head).ok()?.totalsize.min(2 << 20);
    // SAFETY: as above, now `totalsize` bytes.
    let blob = unsafe { core::slice::from_raw_parts(fdt_pa as usize as *const u8, size) };
    Blob::new(blob).ok()
}

/// Finds the console (`/chosen/stdout-path`, any UART shim-uart drives) and the PSCI
/// conduit. Without a parsable FDT or a console there is nothing to report on: stop.
pub fn init(fdt_pa: u64) {
    let Some(fdt) = device_tree(fdt_pa) else {
        power_off(false)
    };
    let conduit = match fdt::psci(&fdt) {
        Ok(Some(PsciConduit::Smc)) => SMC,
        Ok(Some(PsciConduit::Hvc)) => HVC,
        _ => NO_PSCI,
    };
    CONDUIT.store(conduit, Relaxed);
    match fdt::stdout(&fdt) {
        // SAFETY: the UART the device tree names; the shim's identity map covers it as
        // Device memory.
        Ok(Some(c)) => unsafe { UART.set(c.base, c.uart) },
        _ => power_off(false),
    }
}

/// The console UART, once `init` found it.
pub fn console() -> Option<Mmio> {
    UART.get()
}

/// PSCI SYSTEM_OFF on success, SYSTEM_RESET on failure (QEMU `-no-reboot` exits
/// either way, distinguishably). Without PSCI (spin-table boards), says so and parks.
pub fn power_off(ok: bool) -> ! {
    let id = if ok {
        PSCI_SYSTEM_OFF
    } else {
        PSCI_SYSTEM_RESET
    };
    let conduit = CONDUIT.load(Relaxed);
    if let Some(mut c) = console() {
        if conduit == NO_PSCI {
            let _ = writeln!(c, "payload: no /psci in the device tree: parking");
        }
        c.flush();
    }
    // SAFETY: SYSTEM_OFF/SYSTEM_RESET take no arguments and do not return on success;
    // the conduit is the one the FDT names; SMCCC may clobber the caller-saved registers.
    unsafe {
        match conduit {
            SMC => asm!("smc #0", inout("x0") id => _, clobber_abi("C"), options(nostack)),
            HVC => asm!("hvc #0", inout("x0") id => _, clobber_abi("C"), options(nostack)),
            _ => {}
        }
    }
    loop {
        // SAFETY: `wfe` only waits for an event.
        unsafe { asm!("wfe", options(nomem, nostack)) };
    }
}

/// What chose our placement must not reach us: `/chosen/kaslr-seed` and `rng-seed`,
/// where present, are zero. With `residue-scan` in the bootargs, all RAM but our own
/// image is searched for the seed the test planted; returns the MiB scanned. Read with
/// shim-common's checked reader: the `fdt` crate (0.1.5) misses `/chosen` in the trees
/// QEMU edits for `-dtb`.
pub fn check_handoff(fdt_pa: u64, info: &BootInfo) -> Option<u64> {
    let Some(fdt) = device_tree(fdt_pa) else {
        crate::fail(format_args!("fdt at {fdt_pa:#x} no longer parses"));
    };
    let Ok(m) = Machine::read(&fdt) else {
        crate::fail(format_args!("fdt at {fdt_pa:#x} no longer reads"));
    };
    if m.kaslr_seed.is_some_and(|(seed, _)| seed != 0) {
        crate::fail(format_args!("/chosen/kaslr-seed not wiped by the shim"));
    }
    if m.rng_seed
        .is_some_and(|(seed, _)| seed.iter().any(|&b| b != 0))
    {
        crate::fail(format_args!("/chosen/rng-seed not wiped by the shim"));
    }
    if !m
        .bootargs
        .split(|&b| b == b' ')
        .any(|w| w == b"residue-scan")
    {
        return None;
    }
    let seed = checks::planted_seed();
    let own = info.phys_base..info.phys_base + info.image_size.next_multiple_of(8);
    let mut scanned = 0;
    for region in m.ram.iter() {
        let (start, end) = (region.start, region.end);
        for (from, to) in [
            (start, own.start.clamp(start, end)),
            (own.end.clamp(start, end), end),
        ] {
            if let Some(at) = checks::find_seed(from, to, seed) {
                crate::fail(format_args!("residue: the planted seed is at pa={at:#x}"));
            }
            scanned += to - from;
        }
    }
    Some(scanned >> 20)
}

/// Runtime address of a linker-script symbol, by `adrp`/`add`.
macro_rules! sym_addr {
    ($sym:literal) => {{
        let addr: usize;
        // SAFETY: adrp/add only compute an address; linker.ld defines the symbol.
        unsafe {
            core::arch::asm!(
                concat!("adrp {0}, ", $sym, "\nadd {0}, {0}, :lo12:", $sym),
                out(reg) addr,
                options(pure, nomem, nostack, preserves_flags),
            )
        };
        addr
    }};
}
pub(crate) use sym_addr;

/// The current PC.
#[inline(always)]
pub fn pc() -> u64 {
    let pc: u64;
    // SAFETY: `adr` only computes the current PC.
    unsafe { asm!("adr {}, .", out(reg) pc, options(nomem, nostack, preserves_flags)) };
    pc
}

/// The counter the shim's timings count (CNTPCT_EL0).
pub fn counter() -> u64 {
    let ticks: u64;
    // SAFETY: reads the physical counter, which the shim leaves readable at EL1.
    unsafe {
        asm!("isb", "mrs {}, cntpct_el0", out(reg) ticks, options(nomem, nostack, preserves_flags))
    };
    ticks
}

/// A failed translation: PAR_EL1 as `AT` left it.
pub struct Fault(u64);

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "AT fault par={:#x}", self.0)
    }
}

/// Stage-1 EL1 read translation of `va` with `AT S1E1R`: the PA, or PAR_EL1 on a fault.
pub fn translate(va: usize) -> Result<u64, Fault> {
    let par: u64;
    // SAFETY: AT only writes PAR_EL1, which nothing else here uses.
    unsafe {
        asm!("at s1e1r, {va}", "isb", "mrs {par}, par_el1",
             va = in(reg) va, par = out(reg) par, options(nostack, preserves_flags))
    };
    match par & 1 {
        0 => Ok(par & 0x0000_ffff_ffff_f000 | (va as u64 & 0xfff)),
        _ => Err(Fault(par)),
    }
}
