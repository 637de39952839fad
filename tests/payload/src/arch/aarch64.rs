//! arm64: the entry, the board as the device tree describes it (the PL011 console and
//! the PSCI conduit), and the address primitives the checks use (`adrp`, `AT S1E1R`).
//! State lives in `.data` atomics with non-zero initial values, so nothing in `.bss`
//! is written before the payload has checked that the loader zeroed it.

use crate::{checks, run};
use core::arch::asm;
use core::fmt::{self, Write};
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Relaxed};
use fdt::{node::FdtNode, Fdt};
use shim_common::bootinfo::BootInfo;

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

const NO_UART: usize = usize::MAX;
const HVC: u8 = 1;
const SMC: u8 = 2;
/// PL011 base address, or `NO_UART`.
static UART: AtomicUsize = AtomicUsize::new(NO_UART);
/// PSCI conduit; `hvc` until the FDT says otherwise.
static CONDUIT: AtomicU8 = AtomicU8::new(HVC);

/// PL011 registers: data, flags; flag bits: busy, transmit FIFO full.
const UARTDR: usize = 0x00;
const UARTFR: usize = 0x18;
const FR_BUSY: u32 = 1 << 3;
const FR_TXFF: u32 = 1 << 5;

const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;
const PSCI_SYSTEM_RESET: u64 = 0x8400_0009;

/// Finds the console and the PSCI conduit. Without a parsable FDT there is no console:
/// power off with failure.
pub fn init(fdt_pa: u64) {
    // SAFETY: x0 held the FDT's physical address, in identity-mapped RAM; `from_ptr`
    // rejects null, reads the header and then `totalsize` bytes.
    let Ok(fdt) = (unsafe { Fdt::from_ptr(fdt_pa as usize as *const u8) }) else {
        power_off(false)
    };
    let psci = fdt.find_node("/psci");
    if psci.and_then(|n| n.property("method")?.as_str()) == Some("smc") {
        CONDUIT.store(SMC, Relaxed);
    }
    let uart = stdout(&fdt)
        .or_else(|| fdt.find_compatible(&["arm,pl011"]))
        .and_then(|n| n.reg()?.next());
    match uart {
        Some(reg) => UART.store(reg.starting_address as usize, Relaxed),
        None => power_off(false),
    }
}

/// `/chosen/stdout-path` without its `:options`, aliases resolved, if it is a PL011.
fn stdout<'b, 'a>(fdt: &'b Fdt<'a>) -> Option<FdtNode<'b, 'a>> {
    let path = fdt
        .find_node("/chosen")?
        .property("stdout-path")?
        .as_str()?;
    let node = fdt.find_node(path.split(':').next()?)?;
    node.compatible()?
        .all()
        .any(|c| c == "arm,pl011")
        .then_some(node)
}

struct Pl011(usize);

impl Pl011 {
    fn wait(&self, mask: u32) {
        // SAFETY: `self.0` is the PL011 base from the FDT, Device memory in the shim's
        // identity map; UARTFR is a 32-bit read-only register without side effects.
        while unsafe { read_volatile((self.0 + UARTFR) as *const u32) } & mask != 0 {
            core::hint::spin_loop();
        }
    }
}

impl Write for Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            self.wait(FR_TXFF);
            // SAFETY: as in `wait`; UARTDR takes one byte per 32-bit write.
            unsafe { write_volatile((self.0 + UARTDR) as *mut u32, b.into()) };
        }
        Ok(())
    }
}

/// The PL011, once `init` found it.
pub fn console() -> Option<impl Write> {
    let base = UART.load(Relaxed);
    (base != NO_UART).then_some(Pl011(base))
}

/// PSCI SYSTEM_OFF on success, SYSTEM_RESET on failure (QEMU `-no-reboot` exits
/// either way, distinguishably). Spins if the call returns.
pub fn power_off(ok: bool) -> ! {
    let base = UART.load(Relaxed);
    if base != NO_UART {
        Pl011(base).wait(FR_BUSY);
    }
    let id = if ok {
        PSCI_SYSTEM_OFF
    } else {
        PSCI_SYSTEM_RESET
    };
    // SAFETY: SYSTEM_OFF/SYSTEM_RESET take no arguments and do not return on success;
    // the conduit is the one the FDT names; SMCCC may clobber the caller-saved registers.
    unsafe {
        if CONDUIT.load(Relaxed) == SMC {
            asm!("smc #0", inout("x0") id => _, clobber_abi("C"), options(nostack));
        } else {
            asm!("hvc #0", inout("x0") id => _, clobber_abi("C"), options(nostack));
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
    use shim_common::fdt::{Fdt as Blob, Header, Machine};
    // SAFETY: the handoff ABI puts a device tree at `fdt_pa`, identity-mapped; its
    // header (40 bytes) is read first, then `totalsize` bytes (at most 2 MiB).
    let blob = unsafe { core::slice::from_raw_parts(fdt_pa as usize as *const u8, 40) };
    let size = Header::read(blob).map_or(0, |h| h.totalsize.min(2 << 20));
    // SAFETY: as above, now `totalsize` bytes.
    let blob = unsafe { core::slice::from_raw_parts(fdt_pa as usize as *const u8, size) };
    let fdt = Blob::new(blob);
    let Ok(m) = fdt.as_ref().map(Machine::read) else {
        crate::fail(format_args!("fdt at {fdt_pa:#x} no longer parses"));
    };
    let Ok(m) = m else {
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
