//! Transmit-only UART drivers for the consoles a device tree can name
//! (`shim_common::fdt::Uart`): PL011 (PrimeCell UART TRM, 3.3), 8250/16550 with the
//! tree's register shift and access width (the BCM2835 aux mini UART is one), and
//! the i.MX UART (i.MX 8M Plus RM, 16.2.14). The firmware has set the baud rate.
//! Every wait is bounded: a UART that never drains silences the console, never hangs.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicU64, Ordering};

use shim_common::fdt::Uart;

/// Polls before a UART is given up on: far longer than a byte takes at 9600 baud.
const PATIENCE: u32 = 1 << 22;

/// PL011 registers and flags.
mod pl011 {
    pub const DR: u64 = 0x00;
    pub const FR: u64 = 0x18;
    /// UARTFR.TXFF: transmit FIFO full.
    pub const FR_TXFF: u32 = 1 << 5;
    /// UARTFR.BUSY: still transmitting.
    pub const FR_BUSY: u32 = 1 << 3;
}

/// 8250/16550 registers (in units of `1 << reg_shift` bytes) and LSR bits.
mod ns16550 {
    pub const THR: u64 = 0;
    pub const LSR: u64 = 5;
    /// LSR.THRE: the holding register (or FIFO) takes another byte.
    pub const LSR_THRE: u32 = 1 << 5;
    /// LSR.TEMT: holding and shift registers empty.
    pub const LSR_TEMT: u32 = 1 << 6;
}

/// i.MX UART registers and bits.
mod imx {
    /// UTXD: transmitter register.
    pub const UTXD: u64 = 0x40;
    /// USR2, with TXDC (bit 3): transmission complete.
    pub const USR2: u64 = 0x98;
    pub const USR2_TXDC: u32 = 1 << 3;
    /// UTS (test register), with TXFULL (bit 4): the transmit FIFO is full.
    pub const UTS: u64 = 0xb4;
    pub const UTS_TXFULL: u32 = 1 << 4;
}

/// A UART at a physical address, reached through an identity map (Device memory) or
/// with the MMU off.
#[derive(Clone, Copy)]
pub struct Mmio {
    base: u64,
    uart: Uart,
}

impl Mmio {
    /// # Safety
    /// `base` is the register block of a UART of kind `uart`, mapped as Device memory
    /// at that address (or the MMU is off), and nothing else drives it.
    pub unsafe fn new(base: u64, uart: Uart) -> Mmio {
        Mmio { base, uart }
    }

    fn read(&self, offset: u64) -> u32 {
        let at = self.base + offset;
        // SAFETY: `new`'s contract: `base` is this kind of UART's register block;
        // `offset` names one of its registers, naturally aligned.
        unsafe {
            match self.uart {
                Uart::Ns16550 {
                    reg_io_width: 1, ..
                } => u32::from(read_volatile(at as *const u8)),
                Uart::Ns16550 {
                    reg_io_width: 2, ..
                } => u32::from(read_volatile(at as *const u16)),
                _ => read_volatile(at as *const u32),
            }
        }
    }

    fn write(&self, offset: u64, value: u32) {
        let at = self.base + offset;
        // SAFETY: as in `read`.
        unsafe {
            match self.uart {
                Uart::Ns16550 {
                    reg_io_width: 1, ..
                } => write_volatile(at as *mut u8, value as u8),
                Uart::Ns16550 {
                    reg_io_width: 2, ..
                } => write_volatile(at as *mut u16, value as u16),
                _ => write_volatile(at as *mut u32, value),
            }
        }
    }

    /// Waits until `(read(offset) & mask == 0) == clear`; false if it never does.
    fn wait(&self, offset: u64, mask: u32, clear: bool) -> bool {
        (0..PATIENCE).any(|_| (self.read(offset) & mask == 0) == clear)
    }

    /// Sends one byte; false if the UART would not take it.
    pub fn put(&self, byte: u8) -> bool {
        let b = u32::from(byte);
        match self.uart {
            Uart::Pl011 => {
                self.wait(pl011::FR, pl011::FR_TXFF, true) && {
                    self.write(pl011::DR, b);
                    true
                }
            }
            Uart::Ns16550 { reg_shift, .. } => {
                let reg = |r: u64| r << reg_shift;
                self.wait(reg(ns16550::LSR), ns16550::LSR_THRE, false) && {
                    self.write(reg(ns16550::THR), b);
                    true
                }
            }
            Uart::Imx => {
                self.wait(imx::UTS, imx::UTS_TXFULL, true) && {
                    self.write(imx::UTXD, b);
                    true
                }
            }
        }
    }

    /// Waits until the last byte has left the shifter.
    pub fn flush(&self) {
        let _ = match self.uart {
            Uart::Pl011 => self.wait(pl011::FR, pl011::FR_BUSY, true),
            Uart::Ns16550 { reg_shift, .. } => {
                self.wait(ns16550::LSR << reg_shift, ns16550::LSR_TEMT, false)
            }
            Uart::Imx => self.wait(imx::USR2, imx::USR2_TXDC, false),
        };
    }
}

impl core::fmt::Write for Mmio {
    /// Writes `s` with `\n` as `\r\n`; an error if the UART stops taking bytes.
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            if (b == b'\n' && !self.put(b'\r')) || !self.put(b) {
                return Err(core::fmt::Error);
            }
        }
        Ok(())
    }
}

/// Where a program keeps the UART it writes to: the base and the kind in two atomics
/// (relaxed accesses are plain loads and stores, fine with the MMU off). "None" is
/// `u64::MAX`, not 0, so that a `static` of it lives in `.data`, not `.bss`.
pub struct Slot {
    base: AtomicU64,
    kind: AtomicU64,
}

const NONE: u64 = u64::MAX;

impl Slot {
    pub const fn new() -> Slot {
        Slot {
            base: AtomicU64::new(NONE),
            kind: AtomicU64::new(NONE),
        }
    }

    /// # Safety
    /// As [`Mmio::new`], for as long as the slot holds it.
    pub unsafe fn set(&self, base: u64, uart: Uart) {
        let kind = match uart {
            Uart::Pl011 => 0,
            Uart::Ns16550 {
                reg_shift,
                reg_io_width,
            } => 1 | u64::from(reg_shift) << 8 | u64::from(reg_io_width) << 16,
            Uart::Imx => 2,
        };
        self.kind.store(kind, Ordering::Relaxed);
        self.base.store(base, Ordering::Relaxed);
    }

    /// Forgets the UART (one that stopped taking bytes, say).
    pub fn clear(&self) {
        self.base.store(NONE, Ordering::Relaxed);
    }

    /// The UART, if one was set.
    pub fn get(&self) -> Option<Mmio> {
        let base = self.base.load(Ordering::Relaxed);
        let kind = self.kind.load(Ordering::Relaxed);
        let uart = match kind & 0xff {
            0 => Uart::Pl011,
            1 => Uart::Ns16550 {
                reg_shift: (kind >> 8) as u8,
                reg_io_width: (kind >> 16) as u8,
            },
            _ => Uart::Imx,
        };
        (base != NONE).then_some(Mmio { base, uart })
    }
}

impl Default for Slot {
    fn default() -> Self {
        Self::new()
    }
}
