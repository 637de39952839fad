//! The console: a PL011 UART (ARM PrimeCell UART (PL011) Technical Reference Manual,
//! section 3.2), transmit only. The firmware has already set the baud rate.

use core::fmt;

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_bitfields! {u32,
    /// UARTFR, the flag register.
    FR [
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// UART busy transmitting.
        BUSY OFFSET(3) NUMBITS(1) []
    ]
}

register_structs! {
    Registers {
        (0x00 => dr: ReadWrite<u32>),
        (0x04 => _reserved0),
        (0x18 => fr: ReadOnly<u32, FR::Register>),
        (0x1c => @END),
    }
}

/// A PL011 at a fixed physical address, reached through the identity map.
pub struct Pl011 {
    regs: &'static Registers,
}

impl Pl011 {
    /// # Safety
    /// `base` is the physical address of a PL011, mapped as device memory (or the MMU
    /// is off), and nothing else drives it.
    pub unsafe fn new(base: u64) -> Pl011 {
        // SAFETY: the caller promises a PL011's register block lives at `base`.
        let regs = unsafe { &*(base as usize as *const Registers) };
        Pl011 { regs }
    }

    fn put(&self, byte: u8) {
        while self.regs.fr.is_set(FR::TXFF) {}
        self.regs.dr.set(u32::from(byte));
    }

    /// Waits until the last byte has left the shifter.
    pub fn flush(&self) {
        while self.regs.fr.is_set(FR::BUSY) {}
    }
}

impl fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}
