//! Per-board facts: what a board's firmware and loader do that the shim or xtask must
//! know before (or without) a device tree. Data only; the logic lives in common/.
#![no_std]

/// One board.
#[derive(Clone, Copy, Debug)]
pub struct Board {
    pub name: &'static str,
    /// A PL011 the shim may write to before it has read the device tree (to report a
    /// corrupt one). `None` on boards where a guess could hit the wrong device.
    pub early_pl011: Option<u64>,
    /// Where U-Boot scripts load the shim (`kernel_addr_r`).
    pub kernel_addr_r: u64,
    /// Where U-Boot finds the device tree the firmware handed it (`fdt_addr`).
    pub fdt_addr: u64,
}

/// QEMU `-machine virt` (hw/arm/virt.c: PL011 at 0x0900_0000, RAM from 0x4000_0000;
/// U-Boot's qemu-arm environment: kernel_addr_r 0x4040_0000, fdt_addr 0x4000_0000).
pub const QEMU_VIRT: Board = Board {
    name: "qemu-virt",
    early_pl011: Some(0x0900_0000),
    kernel_addr_r: 0x4040_0000,
    fdt_addr: 0x4000_0000,
};

/// The board the shim is built for.
pub const SELECTED: Board = QEMU_VIRT;
