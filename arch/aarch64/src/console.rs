//! The shim's console: one line per event, each prefixed `shim: `, on the PL011 the
//! device tree names (or the board's early UART before that). Silent if there is none.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

use crate::pl011::Pl011;

/// Physical base of the console UART; 0 = none yet. Relaxed accesses compile to plain
/// loads and stores, safe before the MMU is on.
static UART: AtomicU64 = AtomicU64::new(0);

pub fn set(base: u64) {
    UART.store(base, Ordering::Relaxed);
}

/// Writes to the console UART, if any.
pub struct Console;

impl Console {
    fn uart() -> Option<Pl011> {
        match UART.load(Ordering::Relaxed) {
            0 => None,
            // SAFETY: only addresses of PL011s (from the device tree or board facts)
            // are stored, and the identity map covers them as device memory.
            base => Some(unsafe { Pl011::new(base) }),
        }
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match Self::uart() {
            Some(mut uart) => uart.write_str(s),
            None => Ok(()),
        }
    }
}

pub fn line(args: fmt::Arguments<'_>) {
    let _ = writeln!(Console, "shim: {args}");
}

pub fn flush() {
    if let Some(uart) = Console::uart() {
        uart.flush();
    }
}

/// `say!("...")`: one `shim: ` line.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::console::line(format_args!($($arg)*)) };
}
