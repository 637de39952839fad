//! The x86 Linux boot protocol (Documentation/arch/x86/boot.rst,
//! arch/x86/include/uapi/asm/bootparam.h): the zero page as the shim receives it, all
//! checked, and the one it builds for Linux. One file per structure of the protocol.

use core::fmt;

use crate::memmap::MemError;

mod build;
mod e820;
mod header;
mod machine;
mod setup_data;
#[cfg(test)]
mod testutil;
mod zero_page;

pub use build::{
    build_linux_zero_page, LinuxBootParams, LOADER_UNDEFINED, MAX_SETUP_HEADER_END,
    MIN_LINUX_PROTOCOL,
};
pub use e820::*;
pub use header::*;
pub use machine::*;
pub use setup_data::*;
pub use zero_page::*;

/// What is wrong with the boot parameters the loader handed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootParamsError {
    /// The zero page is shorter than [`ZERO_PAGE_SIZE`] bytes.
    Truncated { len: usize },
    /// No `"HdrS"` at 0x202: not boot_params built from a boot-protocol header.
    BadHeaderMagic(u32),
    /// `e820_entries` above 128.
    TooManyE820 { count: u8 },
    /// E820 entry `index` (counted across every source given) ends beyond 2^64.
    E820Overflow {
        index: usize,
        addr: u64,
        size: u64,
        typ: u32,
    },
    /// A `SETUP_E820_EXT` payload whose length is not a multiple of 20.
    BadE820Ext { len: usize },
    /// The `setup_data` list revisits a node or is longer than [`MAX_SETUP_DATA_NODES`].
    SetupDataLoop,
    /// A `setup_data` node (header or data) the caller could not read.
    SetupDataUnreadable { pa: u64, len: u64 },
    /// A `setup_data` node at `pa` whose `len` runs past 2^64.
    SetupDataOverflow { pa: u64, len: u32 },
    /// A `SETUP_INDIRECT` node at `pa` too short or pointing past 2^64.
    BadSetupIndirect { pa: u64 },
    /// No NUL within `max + 1` bytes of the command line (`max` = `cmdline_size`).
    CmdlineUnterminated { max: usize },
    /// The command line at `pa` lies outside memory the caller can read.
    CmdlineUnreadable { pa: u64 },
    /// The memory map does not fit the fixed-size range sets.
    Memory(MemError),
    /// The kernel's setup area is `len` bytes, shorter than the `need` its header takes.
    KernelSetupTruncated { len: usize, need: usize },
    /// No `"HdrS"` in the kernel's setup header: not a bzImage.
    KernelHeaderMagic(u32),
    /// The kernel speaks boot protocol `version`, older than 2.12.
    KernelProtocol { version: u16 },
    /// The jump at 0x200 ends the kernel's setup header at `end`, before `setup_data`
    /// or past 0x281.
    KernelHeaderEnd { end: usize },
    /// `what` reaches `pa`, above 4 GiB, and the kernel lacks XLF_CAN_BE_LOADED_ABOVE_4G.
    Above4G { what: &'static str, pa: u64 },
    /// An initrd range that ends before it starts or past 2^64.
    BadInitrd { start: u64, end: u64 },
    /// A setup_data node of `need` bytes does not fit in `have`.
    SetupDataNoRoom { need: usize, have: usize },
    /// setup_data of `len` bytes: more than its u32 `len` field can say.
    SetupDataTooLong { len: usize },
}

impl fmt::Display for BootParamsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootParamsError::Truncated { len } => {
                write!(f, "boot_params: {len} bytes, need {ZERO_PAGE_SIZE}")
            }
            BootParamsError::BadHeaderMagic(m) => {
                write!(f, "boot_params: header magic {m:#x} is not HdrS")
            }
            BootParamsError::TooManyE820 { count } => write!(
                f,
                "boot_params: e820_entries {count} exceeds {E820_MAX_ENTRIES_ZEROPAGE}"
            ),
            BootParamsError::E820Overflow {
                index,
                addr,
                size,
                typ,
            } => write!(
                f,
                "e820 entry {index} (addr {addr:#x} size {size:#x} type {typ}) overflows 64 bits"
            ),
            BootParamsError::BadE820Ext { len } => write!(
                f,
                "setup_data E820_EXT length {len} is not a multiple of {E820_ENTRY_SIZE}"
            ),
            BootParamsError::SetupDataLoop => write!(
                f,
                "setup_data list loops or is longer than {MAX_SETUP_DATA_NODES} nodes"
            ),
            BootParamsError::SetupDataUnreadable { pa, len } => {
                write!(f, "setup_data: cannot read {len:#x} bytes at {pa:#x}")
            }
            BootParamsError::CmdlineUnreadable { pa } => {
                write!(f, "command line at {pa:#x} is outside memory")
            }
            BootParamsError::SetupDataOverflow { pa, len } => {
                write!(
                    f,
                    "setup_data node at {pa:#x} len {len:#x} overflows 64 bits"
                )
            }
            BootParamsError::BadSetupIndirect { pa } => {
                write!(f, "setup_data indirect node at {pa:#x} malformed")
            }
            BootParamsError::CmdlineUnterminated { max } => write!(
                f,
                "command line has no NUL within cmdline_size {max} + 1 bytes"
            ),
            BootParamsError::Memory(e) => write!(f, "e820: {e}"),
            BootParamsError::KernelSetupTruncated { len, need } => write!(
                f,
                "kernel setup area is {len:#x} bytes, its header needs {need:#x}"
            ),
            BootParamsError::KernelHeaderMagic(m) => {
                write!(f, "kernel header magic {m:#x} is not HdrS: not a bzImage")
            }
            BootParamsError::KernelProtocol { version } => write!(
                f,
                "kernel boot protocol {}.{:02} is older than 2.12",
                version >> 8,
                version & 0xff
            ),
            BootParamsError::KernelHeaderEnd { end } => {
                write!(
                    f,
                    "kernel setup header ends at {end:#x}, outside 0x258..=0x281"
                )
            }
            BootParamsError::Above4G { what, pa } => write!(
                f,
                "{what} reaches {pa:#x}, above 4 GiB, and the kernel cannot take it there"
            ),
            BootParamsError::BadInitrd { start, end } => {
                write!(f, "initrd range {start:#x}..{end:#x} is malformed")
            }
            BootParamsError::SetupDataNoRoom { need, have } => write!(
                f,
                "setup_data node needs {need:#x} bytes, {have:#x} available"
            ),
            BootParamsError::SetupDataTooLong { len } => {
                write!(
                    f,
                    "setup_data of {len:#x} bytes does not fit its u32 length"
                )
            }
        }
    }
}

impl From<MemError> for BootParamsError {
    fn from(e: MemError) -> Self {
        BootParamsError::Memory(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::memmap::MemError;

    #[test]
    fn error_lines_are_single_lines() {
        let all = [
            BootParamsError::Truncated { len: 12 },
            BootParamsError::BadHeaderMagic(0),
            BootParamsError::TooManyE820 { count: 200 },
            BootParamsError::E820Overflow {
                index: 0,
                addr: 1,
                size: 2,
                typ: 3,
            },
            BootParamsError::BadE820Ext { len: 3 },
            BootParamsError::SetupDataLoop,
            BootParamsError::SetupDataUnreadable { pa: 1, len: 2 },
            BootParamsError::SetupDataOverflow { pa: 1, len: 2 },
            BootParamsError::BadSetupIndirect { pa: 1 },
            BootParamsError::CmdlineUnterminated { max: 1 },
            BootParamsError::Memory(MemError::TooManyRanges),
            BootParamsError::KernelSetupTruncated { len: 1, need: 2 },
            BootParamsError::KernelHeaderMagic(0),
            BootParamsError::KernelProtocol { version: 0x20b },
            BootParamsError::KernelHeaderEnd { end: 0x300 },
            BootParamsError::Above4G {
                what: "initrd",
                pa: 1 << 32,
            },
            BootParamsError::BadInitrd { start: 2, end: 1 },
            BootParamsError::SetupDataNoRoom { need: 2, have: 1 },
            BootParamsError::SetupDataTooLong { len: 1 << 32 },
        ];
        for e in all {
            let s = e.to_string();
            assert!(!s.is_empty() && !s.contains('\n'), "{s}");
        }
    }
}
