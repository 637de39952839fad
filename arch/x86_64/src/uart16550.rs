//! The console: the 16550 UART at COM1's I/O port 0x3F8 (TI PC16550D data sheet,
//! "Register description"), transmit only. It may do nothing but port I/O.

use core::fmt;

use x86_64::instructions::port::Port;

/// COM1's base I/O port.
pub const COM1: u16 = 0x3f8;

/// Register offsets from the base port.
const THR: u16 = 0; // transmit holding register (DLAB = 0); divisor latch low (DLAB = 1)
const IER: u16 = 1; // interrupt enable (DLAB = 0); divisor latch high (DLAB = 1)
const FCR: u16 = 2; // FIFO control
const LCR: u16 = 3; // line control
const MCR: u16 = 4; // modem control
const LSR: u16 = 5; // line status

/// LCR: 8 data bits, no parity, 1 stop bit; DLAB selects the divisor latch.
const LCR_8N1: u8 = 0b0000_0011;
const LCR_DLAB: u8 = 1 << 7;
/// FCR: FIFOs on, both cleared.
const FCR_ENABLE_CLEAR: u8 = 0b0000_0111;
/// MCR: DTR and RTS asserted.
const MCR_DTR_RTS: u8 = 0b0000_0011;
/// LSR: transmit holding register empty; transmitter (THR and shift register) empty.
const LSR_THRE: u8 = 1 << 5;
const LSR_TEMT: u8 = 1 << 6;
/// 115200 baud from the 1.8432 MHz clock: divisor 1.
const DIVISOR_115200: u16 = 1;
/// Polls of LSR before a byte is sent regardless (a missing or stuck UART).
const SPINS: u32 = 1 << 20;

/// A 16550 at a fixed I/O port.
pub struct Uart16550 {
    base: u16,
}

impl Uart16550 {
    /// # Safety
    /// `base` is the I/O port of a 16550 (or of nothing), and nothing else drives it.
    pub const unsafe fn new(base: u16) -> Uart16550 {
        Uart16550 { base }
    }

    fn write_reg(&self, reg: u16, value: u8) {
        // SAFETY: `new`'s caller promises a 16550 (or nothing) at `base`; its registers
        // touch no memory.
        unsafe { Port::<u8>::new(self.base + reg).write(value) }
    }

    fn read_reg(&self, reg: u16) -> u8 {
        // SAFETY: as above; reading LSR only clears its error bits, unused here.
        unsafe { Port::<u8>::new(self.base + reg).read() }
    }

    /// 115200 8N1, FIFOs on, interrupts off.
    pub fn init(&self) {
        self.write_reg(IER, 0);
        self.write_reg(LCR, LCR_DLAB);
        let [low, high] = DIVISOR_115200.to_le_bytes();
        self.write_reg(THR, low);
        self.write_reg(IER, high);
        self.write_reg(LCR, LCR_8N1);
        self.write_reg(FCR, FCR_ENABLE_CLEAR);
        self.write_reg(MCR, MCR_DTR_RTS);
    }

    /// Waits, a bounded time, for an LSR bit. Without a UART LSR reads 0xff.
    fn wait(&self, bit: u8) {
        for _ in 0..SPINS {
            if self.read_reg(LSR) & bit != 0 {
                return;
            }
            core::hint::spin_loop();
        }
    }

    fn put(&self, byte: u8) {
        self.wait(LSR_THRE);
        self.write_reg(THR, byte);
    }

    /// Waits until the last byte has left the shift register.
    pub fn flush(&self) {
        self.wait(LSR_TEMT);
    }
}

impl fmt::Write for Uart16550 {
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
