//! A Linux-protocol arm64 Image for one test: entered as the shim enters a kernel (MMU
//! and caches off, x0 = FDT), it searches the first 512 MiB of QEMU virt's RAM for the
//! kaslr-seed the test planted, in both byte orders and at any byte offset, prints
//! `payload: ok ... residue-scan=512MiB` or `payload: FAIL residue: ...` (the demo
//! payload's lines) on the PL011, and powers off with PSCI. All in assembly
//! (`scan.S`): no stack, no relocations, nothing to set up.
#![no_std]
#![no_main]

core::arch::global_asm!(include_str!("scan.S"));

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
