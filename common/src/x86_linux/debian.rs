//! Debian's x86_64 cloud kernel (LZ4) through every step, checked against readings that
//! do not go through this module: handle_relocations() transcribed line by line from
//! misc.c, and fields System.map names. Runs where `SHIM_LINUX_X86` names a directory
//! with `bzImage` and `System.map`, as `cargo xtask test` sets it; skips otherwise.

use std::collections::HashMap;
use std::time::Instant;

use crate::container::Inflater;

use super::*;

struct Inputs {
    bzimage: Vec<u8>,
    /// System.map: name -> address.
    map: HashMap<String, u64>,
}

impl Inputs {
    fn sym(&self, name: &str) -> u64 {
        *self
            .map
            .get(name)
            .unwrap_or_else(|| panic!("System.map has no {name}"))
    }
}

fn inputs() -> Option<Inputs> {
    let bzimage = debian_file("bzImage")?;
    let map = String::from_utf8(debian_file("System.map")?)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let addr = u64::from_str_radix(w.next()?, 16).ok()?;
            let _kind = w.next()?;
            Some((w.next()?.to_string(), addr))
        })
        .collect();
    Some(Inputs { bzimage, map })
}

/// handle_relocations() of arch/x86/boot/compressed/misc.c (v6.1; `three_lists` false
/// drops the inverse loop as v6.15 does), line by line, on `mem` standing for physical
/// memory from `output` on. `bss_start` is `VO___bss_start - VO__text`, from System.map.
fn misc_c_handle_relocations(
    mem: &mut [u8],
    output: u64,
    output_len: u64,
    virt_addr: u64,
    bss_start: u64,
    load_physical_addr: u64,
    three_lists: bool,
) {
    let idx = |addr: u64| (addr - output) as usize;
    let rd = |mem: &[u8], reloc: u64| {
        i32::from_le_bytes(mem[idx(reloc)..idx(reloc) + 4].try_into().unwrap())
    };
    let min_addr = output;
    let max_addr = min_addr + bss_start;
    let mut delta = min_addr.wrapping_sub(load_physical_addr);
    let map = delta.wrapping_sub(START_KERNEL_MAP);
    delta = virt_addr.wrapping_sub(load_physical_addr);
    if delta == 0 {
        return;
    }
    // for (reloc = output + output_len - sizeof(*reloc); *reloc; reloc--)
    let mut reloc = output + output_len - 4;
    while rd(mem, reloc) != 0 {
        let extended = (rd(mem, reloc) as i64 as u64).wrapping_add(map);
        let ptr = extended;
        assert!(
            !(ptr < min_addr || ptr > max_addr),
            "32-bit relocation outside of kernel!"
        );
        let f = &mut mem[idx(ptr)..idx(ptr) + 4];
        let v = u32::from_le_bytes(f.try_into().unwrap()).wrapping_add(delta as u32);
        f.copy_from_slice(&v.to_le_bytes());
        reloc -= 4;
    }
    if three_lists {
        // while (*--reloc)
        loop {
            reloc -= 4;
            if rd(mem, reloc) == 0 {
                break;
            }
            let extended = (rd(mem, reloc) as i64 as u64).wrapping_add(map);
            let ptr = extended;
            assert!(
                !(ptr < min_addr || ptr > max_addr),
                "inverse 32-bit relocation outside of kernel!"
            );
            let f = &mut mem[idx(ptr)..idx(ptr) + 4];
            let v = i32::from_le_bytes(f.try_into().unwrap()).wrapping_sub(delta as i32);
            f.copy_from_slice(&v.to_le_bytes());
        }
    }
    // for (reloc--; *reloc; reloc--)
    reloc -= 4;
    while rd(mem, reloc) != 0 {
        let extended = (rd(mem, reloc) as i64 as u64).wrapping_add(map);
        let ptr = extended;
        assert!(
            !(ptr < min_addr || ptr > max_addr),
            "64-bit relocation outside of kernel!"
        );
        let f = &mut mem[idx(ptr)..idx(ptr) + 8];
        let v = u64::from_le_bytes(f.try_into().unwrap()).wrapping_add(delta);
        f.copy_from_slice(&v.to_le_bytes());
        reloc -= 4;
    }
}

fn u64_at(b: &[u8], at: u64) -> u64 {
    u64::from_le_bytes(b[at as usize..at as usize + 8].try_into().unwrap())
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

#[test]
fn debian_cloud_kernel_end_to_end() {
    let Some(k) = inputs() else {
        return;
    };
    let bz = parse_bzimage(&k.bzimage).unwrap();
    assert_eq!(
        bz.compression,
        Compression::Lz4,
        "Debian's cloud kernel is LZ4"
    );
    assert!(bz.protocol >= 0x020c);
    let version = bz.version.expect("a version string");
    assert!(version.major >= 6, "{version}");
    let layout = reloc_layout(bz.version).unwrap();

    // Decompress into a slot of the size chosen from the header alone.
    let slot = slot_size(&bz);
    let mut buf = vec![0u8; slot as usize];
    let mut inflater = Box::<Inflater>::default();
    let t = Instant::now();
    let n = decompress(&bz, &mut buf, &mut inflater).unwrap();
    let t_decompress = t.elapsed();
    assert_eq!(n as u64, bz.decompressed_len);
    assert!(
        buf[n..].iter().all(|&b| b == 0),
        "nothing written past the output"
    );

    let vm = parse_vmlinux(&buf[..n]).unwrap();
    let text = k.sym("_text");
    let load = vm.load_physical_addr();
    assert_eq!(load, bz.pref_address, "LOAD_PHYSICAL_ADDR, two ways");
    assert_eq!(text, START_KERNEL_MAP + load);
    assert_eq!(vm.entry_offset(), k.sym("startup_64") - text);
    assert!(vm.image_size() >= k.sym("_end") - text);
    assert!(vm.file_end() >= k.sym("__bss_start") - text);
    assert!(
        bz.init_size >= vm.image_size(),
        "header.S: INIT_SIZE >= VO_INIT_SIZE"
    );
    assert_eq!(needed_size(&bz, &vm), slot);
    assert!(vm.elf_len() < n as u64);
    assert_eq!(
        detect_layout(&buf, n, &vm),
        Ok(layout),
        "by version and by table"
    );
    eprintln!(
        "{}: {} segments, LOAD_PHYSICAL_ADDR {load:#x}, image {:#x}, file end {:#x}, \
         ELF {:#x} + relocs {:#x} = output {n:#x}, init_size {:#x}, slot {slot:#x}, {layout:?}",
        core::str::from_utf8(bz.version_string).unwrap_or("?"),
        vm.segments().len(),
        vm.image_size(),
        vm.file_end(),
        vm.elf_len(),
        n as u64 - vm.elf_len(),
        bz.init_size,
    );
    let virt = virt_slots(slot, &vm, bz.kernel_alignment);
    eprintln!("virtual bases: {virt} of {:#x}", bz.kernel_alignment);
    assert!(virt > 400, "about 9 bits, as kaslr.c gives");

    let t = Instant::now();
    place_segments(&mut buf, n, &vm).unwrap();
    let t_place = t.elapsed();

    // The banner in the laid-out image carries the header's version.
    let release = bz.version_string.split(|&b| b == b' ').next().unwrap();
    let banner = (k.sym("linux_banner") - text) as usize;
    let mut want = b"Linux version ".to_vec();
    want.extend(release);
    want.extend(b" (");
    assert!(
        buf[banner..].starts_with(&want),
        "{:?}",
        String::from_utf8_lossy(&buf[banner..banner + 80])
    );
    // sys_call_table holds 64-bit pointers to the syscalls, at their link addresses.
    let table = k.sym("sys_call_table") - text;
    assert_eq!(u64_at(&buf, table), k.sym("__x64_sys_read"));
    assert_eq!(u64_at(&buf, table + 8), k.sym("__x64_sys_write"));
    let placed = buf.clone();

    // Every entry of the table, read by hand: nearly all fields hold link addresses
    // inside [_text, _end) before relocation (rel64 pointers; rel32 sign-extended).
    let (start, end) = (text, k.sym("_end"));
    let mut lists: Vec<Vec<u64>> = vec![vec![]];
    let mut at = n - 4;
    while lists.len()
        <= if layout == RelocLayout::ThreeLists {
            3
        } else {
            2
        }
    {
        let w = u32::from_le_bytes(placed[at..at + 4].try_into().unwrap());
        if w == 0 {
            lists.push(vec![]);
        } else {
            lists.last_mut().unwrap().push(w as i32 as i64 as u64);
        }
        if at as u64 == vm.elf_len() {
            break;
        }
        at -= 4;
    }
    let field = |va: u64| va - START_KERNEL_MAP - load;
    let inside = |vals: &mut dyn Iterator<Item = u64>| {
        let (mut n, mut ok) = (0usize, 0usize);
        for v in vals {
            n += 1;
            ok += usize::from((start..end).contains(&v));
        }
        (ok, n)
    };
    let rel32 = &lists[0];
    let rel64 = lists.iter().rev().nth(1).unwrap();
    let (ok32, n32) = inside(&mut rel32.iter().map(|&va| {
        let o = field(va) as usize;
        u32::from_le_bytes(placed[o..o + 4].try_into().unwrap()) as i32 as i64 as u64
    }));
    let (ok64, n64) = inside(&mut rel64.iter().map(|&va| u64_at(&placed, field(va))));
    eprintln!("rel32 fields into the kernel: {ok32}/{n32}; rel64: {ok64}/{n64}");
    assert!(ok32 * 100 >= n32 * 99 && ok64 * 100 >= n64 * 99);

    // Relocate for a known virtual base and compare with misc.c's own loop.
    let delta = 0x3e0_0000u64;
    let t = Instant::now();
    let counts = relocate(&mut buf, n, &vm, delta, layout).unwrap();
    let t_relocate = t.elapsed();
    eprintln!(
        "{counts:?}; lz4 {t_decompress:?} ({:.0} MB/s), place {t_place:?}, relocate {t_relocate:?}",
        n as f64 / t_decompress.as_secs_f64() / 1e6
    );
    assert_eq!((counts.rel32, counts.rel64), (n32, n64));
    assert_eq!(counts.table_start, vm.elf_len());
    assert!(counts.rel32 > 10_000 && counts.rel64 > 1_000, "{counts:?}");
    if layout == RelocLayout::ThreeLists {
        assert_eq!(counts.rel32neg, lists[1].len());
        assert!(
            counts.rel32neg > 0,
            "6.1 SMP kernels have percpu references"
        );
    }
    let mut reference = placed.clone();
    misc_c_handle_relocations(
        &mut reference,
        0x4000_0000,
        n as u64,
        load + delta,
        k.sym("__bss_start") - text,
        load,
        layout == RelocLayout::ThreeLists,
    );
    assert_eq!(
        first_difference(&buf, &reference),
        None,
        "as misc.c relocates"
    );
    assert_ne!(buf, placed);
    assert_eq!(u64_at(&buf, table), k.sym("__x64_sys_read") + delta);
    assert_eq!(u64_at(&buf, table + 8), k.sym("__x64_sys_write") + delta);

    // delta 0 changes nothing.
    buf.copy_from_slice(&placed);
    assert_eq!(relocate(&mut buf, n, &vm, 0, layout), Ok(counts));
    assert_eq!(first_difference(&buf, &placed), None);

    // The other layout is refused before any write: read as two lists, the 6.1 table
    // ends at the 0 before the inverse list, short of the ELF's end; a v6.15 table read
    // as three runs into the ELF file.
    let wrong = match layout {
        RelocLayout::ThreeLists => RelocLayout::TwoLists,
        RelocLayout::TwoLists => RelocLayout::ThreeLists,
    };
    let err = relocate(&mut buf, n, &vm, delta, wrong).unwrap_err();
    eprintln!("{wrong:?} on this kernel: {err}");
    assert!(matches!(
        err,
        RelocError::TableNotAtElfEnd { .. } | RelocError::TableRunsOff { .. }
    ));
    assert_eq!(first_difference(&buf, &placed), None);
}
