//! The shim's console: one line per event, each prefixed `shim: `, on the UART the
//! device tree names. Silent until then, if there is none, or once a UART stops taking
//! bytes.

use core::fmt::{self, Write};

use shim_common::fdt::Uart;
use shim_uart::Slot;

static UART: Slot = Slot::new();

/// Writes from now on to the UART at `base`, which the device tree names and the
/// identity map covers as Device memory.
pub fn set(base: u64, uart: Uart) {
    // SAFETY: the caller passes the UART the device tree names; the shim's identity
    // maps cover every address outside RAM as Device memory.
    unsafe { UART.set(base, uart) }
}

/// Writes to the console UART, if any.
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(mut uart) = UART.get() {
            if uart.write_str(s).is_err() {
                // A UART that never drains: go quiet rather than hang.
                UART.clear();
            }
        }
        Ok(())
    }
}

pub fn line(args: fmt::Arguments<'_>) {
    let _ = writeln!(Console, "shim: {args}");
}

pub fn flush() {
    if let Some(uart) = UART.get() {
        uart.flush();
    }
}

/// `say!("...")`: one `shim: ` line.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::console::line(format_args!($($arg)*)) };
}
