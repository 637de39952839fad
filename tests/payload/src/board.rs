//! The board as the device tree describes it: the PL011 console and the PSCI conduit.
//! State lives in `.data` atomics with non-zero initial values, so nothing in `.bss`
//! is written before the payload has checked that the loader zeroed it.

use core::arch::asm;
use core::fmt::{self, Write};
use core::panic::PanicInfo;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Relaxed};
use fdt::{node::FdtNode, Fdt};

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
pub fn init(fdt_pa: usize) {
    // SAFETY: x0 holds the FDT's physical address, in identity-mapped RAM; `from_ptr`
    // rejects null, reads the header and then `totalsize` bytes.
    let Ok(fdt) = (unsafe { Fdt::from_ptr(fdt_pa as *const u8) }) else {
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

/// Prints `payload: <args>\n`, if there is a console.
pub fn line(args: fmt::Arguments) {
    let base = UART.load(Relaxed);
    if base != NO_UART {
        let _ = writeln!(Pl011(base), "payload: {args}");
    }
}

/// Prints `payload: FAIL <why>` and resets.
pub fn fail(why: fmt::Arguments) -> ! {
    line(format_args!("FAIL {why}"));
    power_off(false)
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

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    match info.location() {
        Some(at) => fail(format_args!("panic at {}:{}", at.file(), at.line())),
        None => fail(format_args!("panic")),
    }
}
