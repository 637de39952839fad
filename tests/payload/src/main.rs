//! Demo payload: a relocatable ET_DYN kernel the shim loads at a random address.
//! It checks that it runs where the boot-info block says, that every relocated pointer
//! is right and that bss is zero, then reports one line on the console and powers off.
//! What differs between arm64 and x86_64 (entry, console, power, translation) is in
//! `arch`; the checks and the report are shared.
#![no_std]
#![no_main]

#[cfg(not(all(
    any(target_arch = "aarch64", target_arch = "x86_64"),
    target_os = "none"
)))]
compile_error!("demo-payload builds only for aarch64-unknown-none and x86_64-unknown-none");

#[cfg_attr(target_arch = "aarch64", path = "arch/aarch64.rs")]
#[cfg_attr(target_arch = "x86_64", path = "arch/x86_64.rs")]
mod arch;
mod checks;

use core::fmt::{self, Write};
use core::mem::size_of;
use core::panic::PanicInfo;
use shim_common::bootinfo::BootInfo;

/// Called by the arch entry with the BootInfo block's and the firmware handoff's (FDT
/// or boot_params) physical addresses. Runs the checks in order; the first failure
/// reports and powers off with failure, success reports and powers off.
fn run(info_pa: u64, handoff_pa: u64) -> ! {
    let info = read_boot_info(info_pa);
    arch::init(handoff_pa);
    let info = match info {
        Ok(info) => info,
        Err(raw) => fail(format_args!(
            "bootinfo at {info_pa:#x}: magic={:#x} version={} size={}",
            raw.magic, raw.version, raw.size
        )),
    };
    let scanned = arch::check_handoff(handoff_pa, &info);
    checks::placement(&info);
    let ptrs = checks::pointers();
    checks::bss();
    checks::timing(&info);
    line(format_args!(
        "ok va={:#x} pa={:#x} ptrs={ptrs} sources={:x} bits={} total={}{}",
        info.virt_base,
        info.phys_base,
        info.entropy_sources,
        info.kaslr_bits,
        Micros(info.total_ticks, info.counter_hz),
        Scanned(scanned)
    ));
    arch::power_off(true)
}

/// A tick count as the shim prints it: `<n>us`, or `<n>ticks` without a frequency.
struct Micros(u64, u64);

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Micros(ticks, 0) => write!(f, "{ticks}ticks"),
            Micros(ticks, hz) => write!(f, "{}us", ticks.saturating_mul(1_000_000) / hz),
        }
    }
}

/// ` residue-scan=<MiB>` when the RAM was searched for a planted seed.
struct Scanned(Option<u64>);

impl fmt::Display for Scanned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(mib) => write!(f, " residue-scan={mib}MiB"),
            None => Ok(()),
        }
    }
}

/// Reads the block at `info_pa`; a bad one is returned as found, for the report.
fn read_boot_info(info_pa: u64) -> Result<BootInfo, BootInfo> {
    if info_pa == 0 {
        return Err(BootInfo::default());
    }
    // SAFETY: the handoff ABI puts the BootInfo block at `info_pa`, in RAM that the low
    // half identity-maps; nothing writes it while the payload runs.
    let bytes = unsafe { core::slice::from_raw_parts(info_pa as *const u8, size_of::<BootInfo>()) };
    // SAFETY: `bytes` spans a whole BootInfo, which is plain integers: any bits are valid.
    BootInfo::read(bytes)
        .ok_or_else(|| unsafe { bytes.as_ptr().cast::<BootInfo>().read_unaligned() })
}

/// Prints `payload: <args>\n`, if there is a console.
pub fn line(args: fmt::Arguments) {
    if let Some(mut console) = arch::console() {
        let _ = writeln!(console, "payload: {args}");
    }
}

/// Prints `payload: FAIL <why>` and powers off with failure.
pub fn fail(why: fmt::Arguments) -> ! {
    line(format_args!("FAIL {why}"));
    arch::power_off(false)
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    match info.location() {
        Some(at) => fail(format_args!("panic at {}:{}", at.file(), at.line())),
        None => fail(format_args!("panic")),
    }
}
