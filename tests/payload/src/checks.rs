//! The checks: placement (virtual and physical), relocated static pointers, zeroed bss,
//! and the shim's timings.
//! Each reports the first mismatch through `fail`, naming the values involved.
//! Addresses of linker symbols are taken PC-relatively, so they are right at any VA.

use crate::arch::{pc, sym_addr, translate};
use crate::fail;
use core::hint::black_box;
use core::ptr::{addr_of, read_unaligned, read_volatile};
use shim_common::bootinfo::BootInfo;

// `N`, `fn f<i>() -> u32 { i }`, `FNS`, `DATA` and `REFS = [&DATA[i]]`, from build.rs.
include!(concat!(env!("OUT_DIR"), "/table.rs"));

/// A relocated pointer at an odd offset: RELR cannot encode it, so it stays an
/// R_AARCH64_RELATIVE or R_X86_64_RELATIVE in `.rela.dyn` (the loader writes it unaligned).
#[repr(C, packed)]
struct Unaligned {
    pad: u8,
    ptr: &'static u32,
}
static UNALIGNED: Unaligned = Unaligned {
    pad: 0x5a,
    ptr: &DATA[N - 1],
};

/// 16 KiB in `.bss`, plus everything else there, must read as zero.
static mut BSS_BLOCK: [u64; 2048] = [0; 2048];

/// Runs at `virt_base`, within `image_size`, backed by `phys_base` + offset.
pub fn placement(info: &BootInfo) {
    let start = sym_addr!("_image_start") as u64;
    let end = sym_addr!("_image_end") as u64;
    let pc = pc();
    let (va, size) = (info.virt_base, info.image_size);
    if start != va {
        fail(format_args!("image_start={start:#x} virt_base={va:#x}"));
    }
    if pc.wrapping_sub(va) >= size || size < end - start {
        fail(format_args!(
            "pc={pc:#x} image_size={size:#x} need={:#x}",
            end - start
        ));
    }
    let bss = addr_of!(BSS_BLOCK) as usize + 8192;
    for (name, at) in [
        ("text", start as usize),
        ("data", sym_addr!("_data_start")),
        ("bss", bss),
    ] {
        let want = info.phys_base + (at as u64 - start);
        match translate(at) {
            Ok(pa) if pa == want => {}
            Ok(pa) => fail(format_args!(
                "{name} va={at:#x} pa={pa:#x} want pa={want:#x}"
            )),
            Err(fault) => fail(format_args!("{name} va={at:#x} {fault}")),
        }
    }
}

/// Every relocated pointer in the tables points where it should; returns how many.
pub fn pointers() -> usize {
    let text = sym_addr!("_image_start")..sym_addr!("_text_end");
    for i in 0..N {
        // SAFETY: i < N; volatile, so the relocated value is loaded from the table.
        let f = unsafe { read_volatile(FNS.as_ptr().add(i)) };
        let (at, lo, hi) = (f as usize, text.start, text.end);
        if !text.contains(&at) {
            fail(format_args!(
                "FNS[{i}]={at:#x} outside text {lo:#x}..{hi:#x}"
            ));
        }
        let got = f();
        if got != i as u32 {
            fail(format_args!("FNS[{i}]={at:#x} returned {got}"));
        }
        // SAFETY: as above for REFS.
        let r = unsafe { read_volatile(REFS.as_ptr().add(i)) };
        let want = DATA.as_ptr().wrapping_add(i);
        // SAFETY: `r` is a valid `&u32` once relocated; if it is wrong, `ptr::eq` fails first.
        if !core::ptr::eq(r, want) || unsafe { read_volatile(r) } != i as u32 {
            fail(format_args!("REFS[{i}]={r:p} want {want:p}"));
        }
    }
    // SAFETY: reads the (unaligned) field of a static; black_box forces a real load.
    let r = unsafe { read_unaligned(black_box(addr_of!(UNALIGNED.ptr))) };
    let want = &DATA[N - 1] as *const u32;
    if !core::ptr::eq(r, want) || UNALIGNED.pad != 0x5a {
        fail(format_args!("UNALIGNED={r:p} want {want:p}"));
    }
    2 * N + 1
}

/// `BSS_BLOCK` and all of `[_bss_start, _bss_end)` (the stack lies above) read as zero.
pub fn bss() {
    let block = addr_of!(BSS_BLOCK) as usize;
    let (lo, hi) = (sym_addr!("_bss_start"), sym_addr!("_bss_end"));
    let block_end = block + core::mem::size_of::<[u64; 2048]>();
    if block < lo || block_end > hi {
        fail(format_args!(
            "bss block {block:#x} outside bss {lo:#x}..{hi:#x}"
        ));
    }
    for (name, from, to) in [("bss block", block, block_end), ("bss", lo, hi)] {
        for at in (from..to).step_by(8) {
            // SAFETY: [from, to) lies in the loaded, RW-mapped bss; `at` is 8-aligned
            // (linker.ld aligns bss to 16, the block is u64).
            let v = unsafe { read_volatile(at as *const u64) };
            if v != 0 {
                fail(format_args!(
                    "{name} not zero at {at:#x} (+{:#x}): {v:#x}",
                    at - from
                ));
            }
        }
    }
}

/// The kaslr-seed a residue test plants in the device tree it hands QEMU
/// (`residue-scan` on the command line): the shim must leave no copy of it anywhere in
/// RAM, in either byte order. Built at run time so this image holds no copy itself.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
pub fn planted_seed() -> u64 {
    black_box(0x5eed_c0de_a5a5_1234u64 ^ 0xffff_0000_ffff_0000) ^ 0xffff_0000_ffff_0000
}

/// Scans `[start, end)` (8-aligned, identity-mapped RAM) for `seed` at any byte
/// offset, in either byte order; returns the first address it is found at.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
pub fn find_seed(start: u64, end: u64, seed: u64) -> Option<u64> {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let patterns = [seed, seed.swap_bytes()];
    // A word can hold the start of a copy only if one of its bytes is a first byte.
    let firsts = patterns.map(|p| (p & 0xff) * LOW);
    let has_zero_byte = |w: u64| w.wrapping_sub(LOW) & !w & HIGH != 0;
    let mut at = start;
    let mut next = 0;
    while at + 8 <= end {
        // SAFETY: the caller names identity-mapped RAM; `at` is 8-aligned.
        let w = unsafe { read_volatile(at as *const u64) };
        if firsts.iter().any(|&f| has_zero_byte(w ^ f)) {
            if at + 16 <= end {
                // SAFETY: as above, the next word is inside the range.
                next = unsafe { read_volatile((at + 8) as *const u64) };
            }
            for shift in 0..8u32 {
                let v = match shift {
                    0 => w,
                    s => (w >> (8 * s)) | (next << (64 - 8 * s)),
                };
                if patterns.contains(&v) {
                    return Some(at + u64::from(shift));
                }
            }
        }
        at += 8;
    }
    None
}

/// The shim's timings add up: the phases fit in the total from its entry to the jump,
/// which is not zero, and the counter at entry is not later than now.
pub fn timing(info: &BootInfo) {
    let phases = [info.unpack_ticks, info.verify_ticks, info.relocate_ticks];
    let sum = phases.iter().fold(0u64, |a, &t| a.saturating_add(t));
    if info.total_ticks == 0 || sum > info.total_ticks {
        fail(format_args!(
            "timing total={} unpack={} verify={} relocate={} (ticks)",
            info.total_ticks, info.unpack_ticks, info.verify_ticks, info.relocate_ticks
        ));
    }
    let now = crate::arch::counter();
    if info.entry_ticks.saturating_add(info.total_ticks) > now {
        fail(format_args!(
            "timing entry={} total={} after now={now} (ticks)",
            info.entry_ticks, info.total_ticks
        ));
    }
}
