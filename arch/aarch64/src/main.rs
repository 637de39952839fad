//! The arm64 shim: reads the machine from the device tree, places the payload at a
//! random 2 MiB-aligned physical slot and virtual base, verifies, loads, relocates and
//! maps it, and jumps. Every rule is in shim-common; this is the glue around it.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

mod console;
mod cpu;
mod mmu;
mod pl011;

use core::fmt;
use core::mem::{size_of, MaybeUninit};
use core::ptr::addr_of_mut;

use shim_common::bootinfo::{self, BootInfo};
use shim_common::cmdline::{self, CmdlineError};
use shim_common::container::{self, ContainerError, Format};
use shim_common::elf::{self, Elf, ElfError};
use shim_common::entropy::{Mixer, Source};
use shim_common::fdt::{self, FdtError, Machine};
use shim_common::memmap::{Avoid, MemError, MemoryMap, Range};
use shim_common::plan::{self, Mode, PlanError, ARM64_WINDOW};
use shim_common::slot;

use crate::mmu::{Attr, MmuError, Pool};

core::arch::global_asm!(include_str!("entry.S"));

/// booting.rst: "The device tree blob (dtb) must be placed on an 8-byte boundary and
/// must not exceed 2 megabytes in size."
const FDT_MAX: u64 = 2 << 20;
const MIB2: u64 = 2 << 20;

extern "C" {
    /// End of the shim's own image (bss and stack included): the container starts here.
    static __image_end: u8;
}

/// The boot-info block handed to the payload; it stays in the shim's bss.
static mut BOOT_INFO: MaybeUninit<BootInfo> = MaybeUninit::uninit();

/// Why the shim stopped.
enum Fail {
    Fdt(u64, FdtError),
    Cmdline(CmdlineError),
    NoPayload,
    Container(ContainerError),
    Format(Format),
    Elf(ElfError),
    Memory(MemError),
    Plan(PlanError),
    Mmu(MmuError),
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fail::Fdt(at, e) => write!(f, "corrupt device tree at {at:#x}: {e}"),
            Fail::Cmdline(e) => write!(f, "bad command line: {e}"),
            Fail::NoPayload => write!(f, "no payload container after the shim image"),
            Fail::Container(e @ ContainerError::DigestMismatch { .. }) => write!(f, "{e}"),
            Fail::Container(e) => write!(f, "bad payload container: {e}"),
            Fail::Format(format) => write!(f, "payload format {format:?} not supported yet"),
            Fail::Elf(e) => write!(f, "bad payload ELF: {e}"),
            Fail::Memory(e) => write!(f, "memory map: {e}"),
            Fail::Plan(e) => write!(f, "cannot place payload: {e}"),
            Fail::Mmu(e) => write!(f, "page tables: {e}"),
        }
    }
}

macro_rules! from {
    ($($variant:ident($ty:ty)),*) => {$(
        impl From<$ty> for Fail {
            fn from(e: $ty) -> Fail { Fail::$variant(e) }
        }
    )*};
}
from!(
    Cmdline(CmdlineError),
    Container(ContainerError),
    Elf(ElfError),
    Memory(MemError),
    Plan(PlanError),
    Mmu(MmuError)
);

/// Where the shim itself lies, from its header and linker symbols.
struct Image {
    /// Load address (the header's first byte).
    base: u64,
    /// Offset of `__image_end`: text, data, bss and stack.
    end: u64,
    /// The header's image_size as xtask packed it: everything, container included.
    size: u64,
}

/// Called by entry.S at EL1, MMU off, relocated, with a stack and zeroed bss.
#[no_mangle]
extern "C" fn shim_main(fdt_pa: u64, image_offset: u64, base: u64) -> ! {
    // Only the address of the linker symbol is taken (relocated: a runtime address).
    let end = core::ptr::addr_of!(__image_end) as u64 - base;
    // SAFETY: the header's image_size field is at offset 0x10 of our own image.
    let size = unsafe { core::ptr::read_volatile((base + 0x10) as *const u64) };
    let image = Image {
        base,
        end,
        size: size.max(end),
    };
    // SAFETY: called once.
    let mut pool = unsafe { Pool::take() };

    // With the MMU off every access is Device-nGnRnE and must be aligned: before
    // anything else, map ourselves and the device tree as normal memory.
    let fdt_size = early_fdt_size(fdt_pa);
    let mut normal = MemoryMap::new();
    let shim = round_2m(image.base, image.size);
    let written = Range {
        start: image.base,
        end: image.base + image.end,
    };
    let early = normal
        .insert(shim)
        .and_then(|()| match fdt_size {
            Ok(size) => normal.insert(round_2m(fdt_pa, size)),
            Err(_) => Ok(()),
        })
        .map_err(Fail::Memory)
        .and_then(|()| pool.identity(&normal).map_err(Fail::Mmu));
    match early {
        // SAFETY: the table maps our image (code, data, stack) and the FDT as normal
        // memory at their own addresses; `written` covers all we wrote so far.
        Ok(ttbr0) => unsafe { mmu::enable(ttbr0, written) },
        Err(e) => fail(e),
    }
    if let Some(uart) = shim_boards::SELECTED.early_pl011 {
        console::set(uart);
    }
    let fdt_size = match fdt_size {
        Ok(size) => size,
        Err(e) => fail(Fail::Fdt(fdt_pa, e)),
    };
    match boot(&image, &mut pool, fdt_pa, fdt_size, image_offset) {
        Err(e) => fail(e),
        Ok(never) => match never {},
    }
}

/// Reads the device tree header's magic and totalsize with aligned loads.
fn early_fdt_size(fdt_pa: u64) -> Result<u64, FdtError> {
    if fdt_pa == 0 || fdt_pa % 8 != 0 {
        return Err(FdtError::BadHeader("alignment"));
    }
    let word = |i: u64| {
        // SAFETY: the loader passed a device tree address in x0; reading its first two
        // words, 8-byte aligned, is what booting.rst allows us.
        u32::from_be(unsafe { core::ptr::read_volatile((fdt_pa + 4 * i) as *const u32) })
    };
    match (word(0), u64::from(word(1))) {
        (fdt::MAGIC, size) if (fdt::HEADER_SIZE as u64..=FDT_MAX).contains(&size) => Ok(size),
        (fdt::MAGIC, _) => Err(FdtError::BadHeader("totalsize")),
        (magic, _) => Err(FdtError::BadMagic(magic)),
    }
}

fn round_2m(start: u64, len: u64) -> Range {
    let end = start.saturating_add(len).saturating_add(MIB2 - 1) & !(MIB2 - 1);
    Range {
        start: start & !(MIB2 - 1),
        end,
    }
}

/// # Safety
/// `[pa, pa + len)` is identity-mapped memory that nothing else references.
unsafe fn phys<'a>(pa: u64, len: u64) -> &'a mut [u8] {
    // SAFETY: as the caller promises.
    unsafe { core::slice::from_raw_parts_mut(pa as *mut u8, len as usize) }
}

enum Never {}

fn boot(
    image: &Image,
    pool: &mut Pool,
    fdt_pa: u64,
    fdt_size: u64,
    image_offset: u64,
) -> Result<Never, Fail> {
    // SAFETY: the early map covers the device tree as normal memory.
    let fdt_blob = unsafe { phys(fdt_pa, fdt_size) };
    let (machine, seed_offsets) = {
        let fdt = fdt::Fdt::new(fdt_blob).map_err(|e| Fail::Fdt(fdt_pa, e))?;
        let m = Machine::read(&fdt).map_err(|e| Fail::Fdt(fdt_pa, e))?;
        let offsets = (
            m.kaslr_seed.map(|s| s.1),
            m.rng_seed.map(|(v, o)| (o, v.len())),
        );
        (m, offsets)
    };
    match machine.console {
        Some(c) if c.pl011 => console::set(c.base),
        _ => {}
    }
    let opts = cmdline::parse(machine.bootargs)?;

    // Everything that must survive until the payload runs.
    let mut avoid = Avoid::new();
    avoid.push(Range::from_base_size(image.base, image.size)?, "shim")?;
    avoid.push(Range::from_base_size(fdt_pa, fdt_size)?, "fdt")?;
    if let Some(initrd) = machine.initrd {
        avoid.push(initrd, "initrd")?;
    }
    for (range, label) in machine.reserved.iter() {
        avoid.push(range, label)?;
    }

    // The final identity map: all RAM (and the early ranges) normal memory.
    let mut normal = machine.ram;
    normal.insert(round_2m(image.base, image.size))?;
    normal.insert(round_2m(fdt_pa, fdt_size))?;
    mmu::switch_ttbr0(pool.identity(&normal)?);

    // Entropy: firmware seeds, the CPU's RNG, the counter.
    let mut mixer = Mixer::new();
    if let Some((seed, _)) = machine.kaslr_seed {
        mixer.add(Source::KaslrSeed, &seed.to_be_bytes());
    }
    if let Some((seed, _)) = machine.rng_seed {
        mixer.add(Source::RngSeed, seed);
    }
    for _ in 0..4 {
        if let Some(r) = cpu::rndr() {
            mixer.add(Source::CpuRng, &r.to_le_bytes());
        }
    }
    mixer.add(Source::Counter, &cpu::counter().to_le_bytes());
    let (sources, strong) = (mixer.sources(), mixer.strong());
    let mut rng = mixer.finish();

    // The payload container, right after our own image.
    let container_len = image
        .size
        .checked_sub(image.end)
        .filter(|&n| n > 0)
        .ok_or(Fail::NoPayload)?;
    // SAFETY: the container lies inside our own image, mapped normal memory.
    let packed = unsafe { phys(image.base + image.end, container_len) };
    let payload = container::parse(packed)?;
    if payload.format != Format::Elf64Dyn {
        return Err(Fail::Format(payload.format));
    }

    // Unpack into scratch memory (the lowest fit) and check the digest at once.
    let free = plan::usable(&machine.ram, &avoid, &opts)?;
    let scratch_len = payload.unpacked_size.next_multiple_of(4096);
    let req = slot::Request {
        size: scratch_len,
        align: 4096,
        min_addr: 0,
        max_end: u64::MAX,
    };
    let scratch = slot::lowest(&free, &req).ok_or(PlanError::Slot(slot::SlotError::NoSlot))?;
    // SAFETY: `scratch` is free RAM (not the shim, FDT, initrd or reserved), mapped.
    let unpacked = unsafe { phys(scratch, payload.unpacked_size) };
    container::unpack(&payload, unpacked, miniz_oxide_state())?;
    container::verify(&payload, unpacked)?;
    let elf = Elf::parse(unpacked, elf::Machine::Aarch64)?;
    avoid.push(Range::from_base_size(scratch, scratch_len)?, "scratch")?;

    // Choose the slot and the virtual base.
    let free = plan::usable(&machine.ram, &avoid, &opts)?;
    let span = elf.span();
    let dram_base = machine.ram.first().map_or(0, |r| r.start);
    let loader_offset = if image_offset != 0 {
        image_offset
    } else {
        opts.image_offset.unwrap_or(0)
    };
    let placed = plan::place(
        &free,
        dram_base,
        span,
        &ARM64_WINDOW,
        opts.nokaslr,
        loader_offset,
        &mut rng,
    )
    .inspect_err(|_| {
        say!("payload needs {span:#x} bytes; memory map:");
        let _ = plan::report(&mut console::Console, &machine.ram, &avoid, &free);
    })?;
    if let Some((offset, why)) = placed.refused_offset {
        say!("image offset {offset:#x} refused: {why}; choosing a slot instead");
    }
    match placed.mode {
        Mode::Lowest => say!("nokaslr: payload at the lowest slot"),
        Mode::Loader => say!("payload at the loader's image offset"),
        Mode::Random if !strong => say!("warning: no strong entropy source, only the counter"),
        Mode::Random => {}
    }
    if opts.verbose {
        say!(
            "placed pa={:#x} va={:#x} slots={} entropy={} sources={}",
            placed.phys,
            placed.virt,
            placed.phys_slots,
            placed.bits,
            console::Sources(sources)
        );
    }

    // Load, relocate, map.
    // SAFETY: the slot is free RAM chosen above, disjoint from everything in use.
    let loaded = unsafe { phys(placed.phys, span) };
    elf.load(loaded)?;
    elf.relocate(loaded, placed.virt)?;
    let root = pool.root()?;
    for seg in elf.segments() {
        let offset = (seg.vaddr - elf.link_base()) & !4095;
        let len = (seg.vaddr - elf.link_base() + seg.memsz).next_multiple_of(4096) - offset;
        let attr = match (seg.flags.write, seg.flags.exec) {
            (_, true) => Attr::Text,
            (true, false) => Attr::Data,
            (false, false) => Attr::ReadOnly,
        };
        pool.map_pages(root, placed.virt + offset, placed.phys + offset, len, attr)?;
    }

    // What the payload learns, and what must not leak to it.
    let mut seed = [0u8; 32];
    rng.fill(&mut seed);
    let info = BootInfo {
        magic: bootinfo::MAGIC,
        version: bootinfo::VERSION,
        size: size_of::<BootInfo>() as u32,
        phys_base: placed.phys,
        virt_base: placed.virt,
        image_size: span,
        shim_base: image.base,
        shim_size: image.size,
        fdt_or_boot_params: fdt_pa,
        entropy_sources: sources,
        entropy_strong: u32::from(strong),
        phys_slots: placed.phys_slots,
        kaslr_bits: placed.bits,
        fixed: u32::from(placed.mode != Mode::Random),
        seed,
    };
    // SAFETY: BOOT_INFO is ours alone; this is its only writer.
    let info_pa = unsafe {
        let slot = &mut *addr_of_mut!(BOOT_INFO);
        slot.write(info);
        slot.as_ptr() as u64
    };
    fdt::wipe_seeds(fdt_blob, seed_offsets.0, seed_offsets.1);

    let entry = placed.virt + (elf.entry() - elf.link_base());
    cpu::clean_dcache_pou(placed.phys, span);
    cpu::invalidate_icache();
    mmu::enter_ttbr1(root);
    console::flush();
    // SAFETY: the payload is loaded, relocated for `placed.virt`, verified and mapped
    // executable there; the handoff is the documented x0 = FDT, x1 = boot info.
    unsafe { cpu::jump(entry, fdt_pa, info_pa) }
}

/// The inflate state (about 11 KB) lives in bss rather than on our 64 KiB stack.
fn miniz_oxide_state() -> &'static mut miniz_oxide::inflate::core::DecompressorOxide {
    static mut STATE: MaybeUninit<miniz_oxide::inflate::core::DecompressorOxide> =
        MaybeUninit::uninit();
    // SAFETY: called once per boot; the reference is the only one.
    unsafe { (*addr_of_mut!(STATE)).write(Default::default()) }
}

fn fail(e: Fail) -> ! {
    say!("{e}");
    console::flush();
    cpu::halt()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    say!("panic: {info}");
    cpu::halt()
}
