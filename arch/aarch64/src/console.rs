//! The shim's console: one line per event, each prefixed `shim: `, on the UART the
//! device tree names (or the board's early UART before that). Silent if there is none,
//! or once a UART stops taking bytes.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

use shim_common::fdt::Uart;

use shim_uart::Mmio;

/// Physical base of the console UART; 0 = none. Relaxed accesses compile to plain
/// loads and stores, safe before the MMU is on.
static BASE: AtomicU64 = AtomicU64::new(0);
/// The UART kind: 0 PL011, 1 8250 (shift and width in bits 8-15 and 16-23), 2 i.MX.
static KIND: AtomicU64 = AtomicU64::new(0);

pub fn set(base: u64, uart: Uart) {
    let kind = match uart {
        Uart::Pl011 => 0,
        Uart::Ns16550 {
            reg_shift,
            reg_io_width,
        } => 1 | u64::from(reg_shift) << 8 | u64::from(reg_io_width) << 16,
        Uart::Imx => 2,
    };
    KIND.store(kind, Ordering::Relaxed);
    BASE.store(base, Ordering::Relaxed);
}

fn uart() -> Option<Mmio> {
    let base = BASE.load(Ordering::Relaxed);
    let kind = KIND.load(Ordering::Relaxed);
    let uart = match kind & 0xff {
        0 => Uart::Pl011,
        1 => Uart::Ns16550 {
            reg_shift: (kind >> 8) as u8,
            reg_io_width: (kind >> 16) as u8,
        },
        _ => Uart::Imx,
    };
    // SAFETY: only UARTs the device tree (or board facts) name are stored, and the
    // identity map covers them as Device memory.
    (base != 0).then(|| unsafe { Mmio::new(base, uart) })
}

/// Writes to the console UART, if any.
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(mut uart) = uart() {
            if uart.write_str(s).is_err() {
                // A UART that never drains: go quiet rather than hang.
                BASE.store(0, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

pub fn line(args: fmt::Arguments<'_>) {
    let _ = writeln!(Console, "shim: {args}");
}

pub fn flush() {
    if let Some(uart) = uart() {
        uart.flush();
    }
}

/// `say!("...")`: one `shim: ` line.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::console::line(format_args!($($arg)*)) };
}
