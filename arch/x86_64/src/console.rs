//! The shim's console: one line per event, each prefixed `shim: `, on COM1. The port
//! is fixed on PCs, so there is nothing to discover and nothing that can be missing.

use core::fmt::{self, Write};

use crate::uart16550::{Uart16550, COM1};

fn uart() -> Uart16550 {
    // SAFETY: COM1 is the PC's first serial port; the shim alone drives it.
    unsafe { Uart16550::new(COM1) }
}

/// Programs the UART (115200 8N1); called once, first thing.
pub fn init() {
    uart().init();
}

pub fn line(args: fmt::Arguments<'_>) {
    let _ = writeln!(uart(), "shim: {args}");
}

pub fn flush() {
    uart().flush();
}

/// `say!("...")`: one `shim: ` line.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::console::line(format_args!($($arg)*)) };
}
