//! `place`: a machine derived from the input (synthetic ranges, a device tree or an
//! x86 zero page), command-line options and a payload; `layout::compose` must give
//! exactly the usable and normal memory its rules say (checked point by point on
//! every elementary interval), and `plan::place` / `plan::place_request` (the ELF and
//! the Linux Image placements) a slot that is aligned, usable, clear of everything
//! avoided and of no-map memory, and counted as a brute-force enumeration counts.
//!
//! Input: a [`CONTROL`]-byte control block, then the machine. The control block's
//! first byte says how the rest is read ([`SYNTHETIC`], [`DTB`], [`BOOT_PARAMS`]); an
//! all-zero control block with a device tree or a zero page after it places Debian's
//! arm64 Image size with the shim and the tree at the start of RAM.

use shim_common::arm64_linux;
use shim_common::bootparams::{self, BootParams};
use shim_common::cmdline::{self, Options};
use shim_common::entropy::Rng;
use shim_common::fdt::{self, Fdt};
use shim_common::image;
use shim_common::layout::{self, Layout, MemLimit, PAGE};
use shim_common::memmap::{Avoid, MemoryMap, Range};
use shim_common::plan::{self, Mode, Placement, VirtWindow, SLOT_ALIGN};
use shim_common::slot::{self, Request, SlotError};

use super::bytes::Bytes;

/// Bytes of control block before the machine.
pub const CONTROL: usize = 64;
/// The machine is described by the bytes themselves (ranges and sizes).
pub const SYNTHETIC: u8 = 0;
/// The machine is a device tree (what the arm64 shim reads).
pub const DTB: u8 = 1;
/// The machine is an x86 zero page and the memory after it, as the `bootparams`
/// target reads it (what the x86 shim reads).
pub const BOOT_PARAMS: u8 = 2;

/// Debian's arm64 Image, what `cargo xtask simulate` places by default.
const DEFAULT_SIZE: u64 = 0x1ab_0000;
const GIB: u64 = 1 << 30;

/// Everything the layout starts from, owned.
struct World {
    ram: MemoryMap,
    reserved: Avoid,
    no_map: MemoryMap,
    shim: Range,
    handoff: Range,
    initrd: Option<Range>,
    mapped_limit: u64,
    mem_limit: MemLimit,
    opts: Options,
    window: VirtWindow,
}

pub fn run(data: &[u8]) {
    let control = data.get(..CONTROL).unwrap_or(data);
    let rest = data.get(CONTROL..).unwrap_or_default();
    let mut c = Bytes::new(control);
    let flags = c.u8();
    let x86 = flags & 4 != 0;
    let size = match c.u32() {
        0 => DEFAULT_SIZE,
        n if flags & 8 != 0 => u64::from(n) << 21,
        n => u64::from(n),
    };
    let loader = c.u64();
    let loader = if flags & 16 != 0 { loader } else { 0 };
    let mapped_limit = match c.u16() {
        n if flags & 32 != 0 => (u64::from(n) + 1) * GIB,
        _ => 512 * GIB,
    };
    let (shim_off, shim_len) = (u64::from(c.u16()) * PAGE, u64::from(c.u16()) * PAGE + 1);
    let (fdt_off, fdt_len) = (u64::from(c.u16()) * PAGE, u64::from(c.u16()) + 1);
    let key = c.u64();
    let header = linux_header(&mut c);
    let file_size = u64::from(c.u32());
    let extra = tokens(&mut c);

    let (ram, reserved, no_map, initrd, cmdline) = match flags & 3 {
        DTB => {
            let Ok(tree) = Fdt::new(rest) else { return };
            let Ok(m) = fdt::Machine::read(&tree) else {
                return;
            };
            (m.ram, m.reserved, m.no_map, m.initrd, m.bootargs.to_vec())
        }
        BOOT_PARAMS => match from_boot_params(rest) {
            Some(m) => m,
            None => return,
        },
        _ => match synthetic(&mut Bytes::new(rest)) {
            Some(m) => m,
            None => return,
        },
    };
    let Some(first) = ram.first() else { return };
    let at = |off: u64, len: u64| {
        let start = first.start.saturating_add(off);
        Range {
            start,
            end: start.saturating_add(len),
        }
    };
    let mut line = cmdline;
    line.extend_from_slice(extra.as_bytes());
    let Ok(opts) = cmdline::parse(&line) else {
        return;
    };
    let w = World {
        ram,
        reserved,
        no_map,
        shim: at(shim_off, shim_len),
        handoff: at(fdt_off, fdt_len),
        initrd,
        mapped_limit,
        mem_limit: if x86 {
            MemLimit::Address
        } else {
            MemLimit::Amount
        },
        opts,
        window: if x86 {
            plan::X86_64_WINDOW
        } else {
            plan::ARM64_WINDOW
        },
    };
    let machine = layout::Machine {
        ram: &w.ram,
        reserved: &w.reserved,
        no_map: &w.no_map,
        shim: w.shim,
        handoff: w.handoff,
        initrd: w.initrd,
        mapped_limit: w.mapped_limit,
        mem_limit: w.mem_limit,
    };
    // Too many ranges for the fixed tables is an error the shim reports.
    let Ok(l) = layout::compose(&machine, &w.opts) else {
        return;
    };
    check_layout(&w, &l);

    // As common::boot does: offsets from the 2 MiB-aligned start of RAM.
    let dram_base = first.start & !(SLOT_ALIGN - 1);
    let loader_offset = match loader {
        0 => w.opts.image_offset.unwrap_or(0),
        x => x,
    };
    let fixed = w.opts.nokaslr || w.opts.memmap_overflow;
    let mut rng = Rng::from_key([key.to_le_bytes(); 4].concat().try_into().unwrap());
    let elf = plan::place(
        &l.usable,
        dram_base,
        size,
        &w.window,
        fixed,
        loader_offset,
        &mut rng,
    );
    let req = Request {
        size,
        align: SLOT_ALIGN,
        min_addr: dram_base,
        max_end: dram_base.saturating_add(w.window.max_offset),
    };
    check_placement(
        &l,
        &req,
        elf,
        Some(&w.window),
        fixed,
        dram_base,
        loader_offset,
    );

    // A Linux Image: booting.rst's request, from a header built from the input.
    let Ok(img) = image::parse_arm64(&header) else {
        return;
    };
    let kernel = arm64_linux::Layout::new(&img, file_size);
    let Some(req) = kernel.request(dram_base, w.initrd) else {
        assert!(
            super::arm64_image::may_refuse(&kernel, w.initrd),
            "request refused sizes that fit"
        );
        return;
    };
    check_linux_request(&kernel, &req, dram_base, w.initrd);
    let lowest = fixed || !kernel.anywhere;
    let linux = plan::place_request(
        &l.usable,
        &req,
        dram_base,
        None,
        lowest,
        loader_offset,
        &mut rng,
    );
    if let Ok(p) = &linux {
        if let Some(initrd) = w.initrd {
            // One 1 GiB-aligned window of 32 GiB covers the kernel and the initrd.
            let lo = p.phys.min(initrd.start) & !(GIB - 1);
            let hi = (p.phys + req.size).max(initrd.end);
            assert!(
                hi - lo <= arm64_linux::INITRD_WINDOW,
                "kernel at {:#x} and initrd {initrd} share no 32 GiB window",
                p.phys
            );
        }
        assert!(p.phys + req.size <= arm64_linux::PA_LIMIT);
        assert_eq!(p.virt, 0);
    }
    check_placement(&l, &req, linux, None, lowest, dram_base, loader_offset);
}

/// A 64-byte arm64 Image header from the control block.
fn linux_header(c: &mut Bytes<'_>) -> [u8; 64] {
    let mut h = [0u8; 64];
    let text_offset = match c.u8() % 4 {
        0 => 0,
        1 => image::LEGACY_TEXT_OFFSET,
        2 => u64::from(c.u16()) << 12,
        _ => c.u64(),
    };
    let image_size = match c.u8() % 4 {
        0 => DEFAULT_SIZE,
        1 => 0,
        2 => u64::from(c.u32()) << 12,
        _ => c.u64(),
    };
    // Little-endian, 4K pages, and bit 3 (anywhere) unless the input clears it.
    let flags = match c.u8() {
        0 => 0b1010,
        f => u64::from(f) & !1,
    };
    h[0x08..0x10].copy_from_slice(&text_offset.to_le_bytes());
    h[0x10..0x18].copy_from_slice(&image_size.to_le_bytes());
    h[0x18..0x20].copy_from_slice(&flags.to_le_bytes());
    h[0x38..0x3c].copy_from_slice(b"ARM\x64");
    h
}

/// An amount or address: small values scaled to pages, MiB or GiB, or any u64.
fn number(c: &mut Bytes<'_>) -> u64 {
    match c.u8() % 5 {
        0 => u64::from(c.u16()) << 12,
        1 => u64::from(c.u16()) << 20,
        2 => u64::from(c.u8()) << 30,
        3 => 0x4000_0000 + (u64::from(c.u32()) << 12),
        _ => c.u64(),
    }
}

/// Command-line options the layout reads, from the control block.
fn tokens(c: &mut Bytes<'_>) -> String {
    let mut line = String::new();
    for _ in 0..c.u8() % 6 {
        let token = match c.u8() % 10 {
            0 => "nokaslr".to_string(),
            1 => "kaslr".to_string(),
            2 => format!("mem={:#x}", number(c)),
            3 => format!("memmap={:#x}${:#x}", number(c), number(c)),
            4 => format!("memmap={:#x}", number(c)),
            5 => format!("memmap={:#x}@{:#x}", number(c), number(c)),
            6 => format!("memmap={:#x}%{:#x}-1+12", number(c), number(c)),
            7 => format!(
                "memmap={:#x}!{:#x},{:#x}#{:#x}",
                number(c),
                number(c),
                number(c),
                number(c)
            ),
            8 => format!("shim.offset={:#x}", u64::from(c.u16()) << 21),
            _ => "memmap=exactmap".to_string(),
        };
        line.push(' ');
        line.push_str(&token);
    }
    line
}

type Parts = (MemoryMap, Avoid, MemoryMap, Option<Range>, Vec<u8>);

/// RAM, reservations, no-map memory and an initrd described by the bytes.
fn synthetic(b: &mut Bytes<'_>) -> Option<Parts> {
    let range = |b: &mut Bytes<'_>| {
        let start = number(b);
        Range {
            start,
            end: start.saturating_add(number(b)),
        }
    };
    let mut ram = MemoryMap::new();
    for _ in 0..1 + b.u8() % 8 {
        ram.insert(range(b)).ok()?;
    }
    let (mut reserved, mut no_map) = (Avoid::new(), MemoryMap::new());
    for _ in 0..b.u8() % 8 {
        let kind = b.u8();
        let r = range(b);
        if kind & 1 != 0 {
            // As a device tree says it: no-map memory is reserved memory too.
            reserved.push(r, "reserved-memory").ok()?;
            no_map.insert(r).ok()?;
        } else {
            reserved.push(r, "memreserve").ok()?;
        }
    }
    let initrd = b.bool().then(|| range(b));
    Some((ram, reserved, no_map, initrd, Vec::new()))
}

/// What the x86 shim reads from boot_params and the memory behind it (the layout of
/// the `bootparams` target's input): RAM from e820 and E820_EXT, every setup_data
/// node, the initrd, the command line and the first MiB avoided.
fn from_boot_params(mem: &[u8]) -> Option<Parts> {
    let bp = BootParams::new(mem).ok()?;
    let read = super::bootparams::reader(mem);
    let m = bootparams::Machine::read(super::bootparams::BASE, &bp, read).ok()?;
    let mut avoid = m.avoid;
    avoid
        .push(
            Range {
                start: 0,
                end: 1 << 20,
            },
            "first MiB",
        )
        .ok()?;
    let line = bootparams::command_line(&bp, super::bootparams::reader_short(mem)).ok()?;
    let cmdline = match line {
        Some((bytes, range)) => {
            avoid.push(range, "command line").ok()?;
            bytes.to_vec()
        }
        None => Vec::new(),
    };
    Some((m.ram, avoid, MemoryMap::new(), None, cmdline))
}

/// `r` widened to whole pages. The last page of the 64-bit space is no whole page
/// a `Range` can end (its end would be 2^64): layout ends such a range at the last
/// whole page, so that the identity map only ever sees page-aligned ranges.
fn pages_out(r: Range) -> Range {
    Range {
        start: r.start & !(PAGE - 1),
        end: r.end.checked_next_multiple_of(PAGE).unwrap_or(!(PAGE - 1)),
    }
}

fn within(r: &Range, p: u64) -> bool {
    r.start <= p && p < r.end
}

/// `compose`'s rules, point by point: every set involved is a union of the ranges
/// below, so membership is constant between consecutive endpoints and checking one
/// point per elementary interval checks everything.
fn check_layout(w: &World, l: &Layout) {
    let ram: Vec<Range> = w.ram.iter().collect();
    let clipped: u64 = ram
        .iter()
        .map(|r| r.end.saturating_sub(r.start.max(w.mapped_limit)))
        .sum();
    assert_eq!(l.clipped, clipped, "clipped bytes");
    // Where mem= (or a bare memmap=) ends the RAM that may be used.
    let limit_end = match (w.opts.memory_limit(), w.mem_limit) {
        (None, _) => u64::MAX,
        (Some(limit), MemLimit::Address) => limit,
        (Some(amount), MemLimit::Amount) => {
            let mut left = amount;
            let mut end = u64::MAX;
            for r in &ram {
                let r = Range {
                    start: r.start,
                    end: r.end.min(w.mapped_limit),
                };
                if left <= r.len() {
                    end = r.start + left;
                    break;
                }
                left -= r.len();
            }
            end
        }
    };
    let mut avoid = vec![(w.shim, "shim"), (w.handoff, "handoff")];
    avoid.extend(w.initrd.map(|r| (r, "initrd")));
    avoid.extend(w.reserved.iter());
    avoid.retain(|(r, _)| !r.is_empty());
    assert!(l.avoid.iter().eq(avoid.iter().copied()), "the avoid list");
    let no_map: Vec<Range> = w.no_map.iter().map(pages_out).collect();
    let memmap: Vec<Range> = w.opts.memmap_avoid().collect();
    let (shim_pages, fdt_pages) = (pages_out(w.shim), pages_out(w.handoff));

    let mut points = vec![0, w.mapped_limit, limit_end];
    let ranges = ram
        .iter()
        .chain(&no_map)
        .chain(&memmap)
        .chain(avoid.iter().map(|(r, _)| r))
        .chain([&shim_pages, &fdt_pages]);
    for r in ranges {
        points.extend([r.start, r.end]);
    }
    points.sort_unstable();
    points.dedup();
    let usable: Vec<Range> = l.usable.iter().collect();
    let normal: Vec<Range> = l.normal.iter().collect();
    for &p in &points {
        let in_ram = ram.iter().any(|r| within(r, p)) && p < w.mapped_limit;
        let unmapped = no_map.iter().any(|r| within(r, p));
        let want_normal = (in_ram || within(&shim_pages, p) || within(&fdt_pages, p)) && !unmapped;
        let want_usable = in_ram
            && p < limit_end
            && !unmapped
            && !avoid.iter().any(|(r, _)| within(r, p))
            && !memmap.iter().any(|r| within(r, p));
        let is_normal = normal.iter().any(|r| within(r, p));
        let is_usable = usable.iter().any(|r| within(r, p));
        assert_eq!(is_normal, want_normal, "normal at {p:#x}");
        assert_eq!(is_usable, want_usable, "usable at {p:#x}");
    }
}

/// The slots for `req` in `usable`, enumerated one by one; `None` if there are too many
/// to enumerate.
fn enumerate(usable: &MemoryMap, req: &Request) -> Option<Vec<u64>> {
    if req.size == 0 || !req.align.is_power_of_two() {
        return Some(Vec::new());
    }
    let mut slots = Vec::new();
    for r in usable.iter() {
        let from = r.start.max(req.min_addr);
        let Some(mut a) = from.checked_next_multiple_of(req.align) else {
            continue;
        };
        while a
            .checked_add(req.size)
            .is_some_and(|e| e <= r.end && e <= req.max_end)
        {
            slots.push(a);
            if slots.len() > 1 << 16 {
                return None;
            }
            let Some(next) = a.checked_add(req.align) else {
                break;
            };
            a = next;
        }
    }
    Some(slots)
}

fn check_placement(
    l: &Layout,
    req: &Request,
    placed: Result<Placement, plan::PlanError>,
    window: Option<&VirtWindow>,
    lowest: bool,
    dram_base: u64,
    loader_offset: u64,
) {
    let count = slot::count(&l.usable, req);
    let slots = enumerate(&l.usable, req);
    if let (Ok(n), Some(all)) = (count, &slots) {
        assert_eq!(n, all.len() as u64, "slot::count against the enumeration");
        assert_eq!(slot::lowest(&l.usable, req), all.first().copied());
        if let Some(&last) = all.last() {
            assert_eq!(slot::nth(&l.usable, req, n - 1), Some(last));
            assert!(slot::is_slot(&l.usable, req, last));
            assert!(!slot::is_slot(&l.usable, req, last.wrapping_add(1)) || req.align == 1);
        }
        assert_eq!(slot::nth(&l.usable, req, n), None);
        if let Some(&mid) = all.get(all.len() / 2) {
            assert_eq!(slot::nth(&l.usable, req, all.len() as u64 / 2), Some(mid));
        }
    }
    let p = match placed {
        Ok(p) => p,
        Err(plan::PlanError::Slot(SlotError::NoSlot)) => {
            assert_eq!(count, Ok(0), "no slot, but slot::count finds some");
            return;
        }
        Err(plan::PlanError::Slot(SlotError::ZeroSize)) => {
            assert_eq!(req.size, 0);
            return;
        }
        Err(e) => panic!("placement failed: {e:?}"),
    };
    let image = Range::from_base_size(p.phys, req.size).expect("the slot wraps");
    assert_eq!(p.phys % SLOT_ALIGN, 0, "slot {:#x} not aligned", p.phys);
    assert!(l.usable.contains_range(&image), "slot {image} not usable");
    assert!(l.normal.contains_range(&image), "slot {image} not normal");
    assert!(
        l.avoid.overlapping(image).is_none(),
        "slot {image} overlaps the avoid list"
    );
    assert!(
        p.phys >= req.min_addr && image.end <= req.max_end,
        "slot {image} out of bounds"
    );
    assert!(slot::is_slot(&l.usable, req, p.phys));
    if let Some(all) = &slots {
        assert!(
            all.binary_search(&p.phys).is_ok(),
            "slot {image} not enumerated"
        );
    }
    if loader_offset != 0 && p.mode != Mode::Loader {
        assert_eq!(p.refused_offset.map(|(o, _)| o), Some(loader_offset));
    }
    match p.mode {
        Mode::Loader => {
            assert_eq!(Some(p.phys), dram_base.checked_add(loader_offset));
            assert_eq!((p.phys_slots, p.bits), (1, 0));
            let virt = window.map_or(0, |w| w.base.wrapping_add(loader_offset));
            assert_eq!(p.virt, virt);
        }
        Mode::Lowest => {
            assert!(lowest, "lowest slot without nokaslr");
            assert_eq!(Some(p.phys), slot::lowest(&l.usable, req));
            let virt = window.map_or(0, |w| w.base.wrapping_add(p.phys - dram_base));
            assert_eq!((p.virt, p.bits), (virt, 0));
        }
        Mode::Random => {
            assert!(!lowest, "random slot under nokaslr");
            assert_eq!(Ok(p.phys_slots), count);
            let disp_bits = window.map_or(0, |w| w.disp_bits);
            assert_eq!(p.bits, p.phys_slots.ilog2() + disp_bits);
            if let Some(w) = window {
                let disp = p.virt.wrapping_sub(w.base).wrapping_sub(p.phys - dram_base);
                assert_eq!(disp % SLOT_ALIGN, 0);
                assert!(
                    disp < (1u64 << w.disp_bits) * SLOT_ALIGN,
                    "displacement {disp:#x}"
                );
                assert!(image.end - dram_base <= w.max_offset, "beyond the window");
            }
        }
    }
}

/// booting.rst's request from the header: the sizes and the bounds.
fn check_linux_request(
    k: &arm64_linux::Layout,
    req: &Request,
    dram_base: u64,
    initrd: Option<Range>,
) {
    assert_eq!(Some(req.size), k.text_offset.checked_add(k.reserve));
    assert_eq!(req.align, SLOT_ALIGN);
    assert!(req.min_addr >= dram_base && req.max_end <= arm64_linux::PA_LIMIT);
    if k.legacy {
        assert_eq!(k.text_offset, image::LEGACY_TEXT_OFFSET);
        assert!(!k.anywhere);
    }
    if initrd.is_none() {
        assert_eq!(
            (req.min_addr, req.max_end),
            (dram_base, arm64_linux::PA_LIMIT)
        );
    }
}
