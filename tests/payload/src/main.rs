//! Demo payload: a relocatable ET_DYN kernel the shim loads at a random address.
//! It checks that it runs where the boot-info block says, that every relocated pointer
//! is right and that bss is zero, then reports one line on the PL011 and powers off.
#![no_std]
#![no_main]

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
compile_error!("demo-payload builds only for aarch64-unknown-none");

mod board;
mod checks;

use core::mem::size_of;
use shim_common::bootinfo::BootInfo;

// Entry, at link address 0. x0 = FDT and x1 = BootInfo (physical, identity-mapped) are
// left untouched for `payload_main`. The stack is found PC-relatively, valid at any VA.
// bss is deliberately not zeroed: checking that the loader did is the point.
core::arch::global_asm!(
    ".section .text.entry, \"ax\"",
    ".global _start",
    "_start:",
    "    adrp x9, _stack_top",
    "    add  x9, x9, :lo12:_stack_top",
    "    mov  sp, x9",
    "    mov  x29, xzr",
    "    mov  x30, xzr",
    "    b    {main}",
    main = sym payload_main,
);

/// Runs the checks in order; the first failure reports and resets, success powers off.
extern "C" fn payload_main(fdt_pa: u64, info_pa: u64) -> ! {
    let info = read_boot_info(info_pa);
    board::init(fdt_pa as usize);
    let info = match info {
        Ok(info) => info,
        Err(raw) => board::fail(format_args!(
            "bootinfo at {info_pa:#x}: magic={:#x} version={} size={}",
            raw.magic, raw.version, raw.size
        )),
    };
    checks::placement(&info);
    let ptrs = checks::pointers();
    checks::bss();
    board::line(format_args!(
        "ok va={:#x} pa={:#x} ptrs={ptrs} sources={:x} bits={}",
        info.virt_base, info.phys_base, info.entropy_sources, info.kaslr_bits
    ));
    board::power_off(true)
}

/// Reads the block at `info_pa`; a bad one is returned as found, for the report.
fn read_boot_info(info_pa: u64) -> Result<BootInfo, BootInfo> {
    if info_pa == 0 {
        return Err(BootInfo::default());
    }
    // SAFETY: the handoff ABI puts the BootInfo block at `info_pa`, in RAM that TTBR0
    // identity-maps; nothing writes it while the payload runs.
    let bytes = unsafe { core::slice::from_raw_parts(info_pa as *const u8, size_of::<BootInfo>()) };
    // SAFETY: `bytes` spans a whole BootInfo, which is plain integers: any bits are valid.
    BootInfo::read(bytes)
        .ok_or_else(|| unsafe { bytes.as_ptr().cast::<BootInfo>().read_unaligned() })
}
