//! The shim's console: one line per event, each prefixed `shim: `, on the UART the
//! device tree names, or until then (or without one) on the board's UART xtask wrote
//! into the image. Silent without either, or once a UART stops taking bytes.

use core::fmt::{self, Write};

use shim_common::fdt::Uart;
use shim_uart::Slot;

static UART: Slot = Slot::new();
/// The board's early UART from the image header (entry.S `early_uart`).
static EARLY: Slot = Slot::new();

/// Writes from now on to the UART at `base`, which the device tree names and the
/// identity map covers as Device memory.
pub fn set(base: u64, uart: Uart) {
    // SAFETY: the caller passes the UART the device tree names; the shim's identity
    // maps cover every address outside RAM as Device memory.
    unsafe { UART.set(base, uart) }
}

/// Writes, while the device tree names no UART, to the one xtask wrote into the image
/// for the board it packed for.
pub fn set_early(base: u64, uart: Uart) {
    // SAFETY: the UART of the board the image was packed for; before the MMU is on
    // every access is Device-nGnRnE, after it the identity map covers every address
    // outside RAM as Device memory.
    unsafe { EARLY.set(base, uart) }
}

/// The device tree's UART, else the early one.
fn slot() -> &'static Slot {
    match UART.get() {
        Some(_) => &UART,
        None => &EARLY,
    }
}

/// Writes to the console UART, if any.
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let slot = slot();
        if let Some(mut uart) = slot.get() {
            if uart.write_str(s).is_err() {
                // A UART that never drains: go quiet rather than hang.
                slot.clear();
            }
        }
        Ok(())
    }
}

pub fn line(args: fmt::Arguments<'_>) {
    let _ = writeln!(Console, "shim: {args}");
}

pub fn flush() {
    if let Some(uart) = slot().get() {
        uart.flush();
    }
}

/// `say!("...")`: one `shim: ` line.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::console::line(format_args!($($arg)*)) };
}
