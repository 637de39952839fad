//! The checks: placement (virtual and physical), relocated static pointers, zeroed bss.
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
