//! The boot sequence every backend shares: from machine facts and the payload container
//! to a verified, loaded and relocated image with its boot-info block. The backend
//! gathers the facts, gives memory access through [`Platform`], then maps and jumps.

use core::fmt;
use core::mem::size_of;

use crate::bootinfo::{self, BootInfo};
use crate::cmdline::Options;
use crate::container::{self, ContainerError, DecompressorOxide, Format};
use crate::elf::{self, Elf, ElfError};
use crate::entropy::Mixer;
use crate::memmap::{Avoid, MemError, MemoryMap, Range};
use crate::plan::{self, Mode, Placement, PlanError, VirtWindow};
use crate::slot::{self, SlotError};

/// What the sequence needs from the machine it runs on.
pub trait Platform {
    /// Physical memory `range` as bytes. The backend has mapped all RAM; the sequence
    /// asks only for free ranges it chose, each once, and never two that overlap.
    fn memory(&mut self, range: Range) -> &'static mut [u8];
    /// Prints one console line; the backend adds the `shim: ` prefix.
    fn say(&mut self, line: fmt::Arguments<'_>);
    /// A free-running counter, for the per-phase timing `shim.verbose` prints.
    fn ticks(&mut self) -> u64 {
        0
    }
    /// The counter's frequency; 0 if unknown (timings are then printed in ticks).
    fn ticks_per_second(&self) -> u64 {
        0
    }
}

/// The facts the backend gathered.
pub struct Inputs<'a> {
    /// All RAM.
    pub ram: MemoryMap,
    /// What must survive until the payload runs: the shim and its container, the
    /// device tree or boot_params, the command line, the initrd, reserved memory.
    pub avoid: Avoid,
    pub opts: Options,
    /// The container xtask appended to the shim.
    pub container: &'a [u8],
    pub arch: elf::Machine,
    pub window: VirtWindow,
    /// The loader's image offset (arm64 x1), 0 for none.
    pub loader_offset: u64,
    /// Every entropy source, already mixed.
    pub entropy: Mixer,
    /// The device tree or boot_params, passed on in the boot info.
    pub handoff: u64,
    /// The shim's own memory, reported in the boot info.
    pub shim: Range,
}

/// Why the sequence stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError {
    NoPayload,
    Container(ContainerError),
    Format(Format),
    Elf(ElfError),
    Memory(MemError),
    Plan(PlanError),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::NoPayload => f.write_str("no payload container after the shim image"),
            BootError::Container(e @ ContainerError::DigestMismatch { .. }) => write!(f, "{e}"),
            BootError::Container(e) => write!(f, "bad payload container: {e}"),
            BootError::Format(format) => write!(f, "payload format {format:?} not supported yet"),
            BootError::Elf(e) => write!(f, "bad payload ELF: {e}"),
            BootError::Memory(e) => write!(f, "memory map: {e}"),
            BootError::Plan(e) => write!(f, "cannot place payload: {e}"),
        }
    }
}

macro_rules! from {
    ($($variant:ident($ty:ty)),*) => {$(
        impl From<$ty> for BootError {
            fn from(e: $ty) -> BootError { BootError::$variant(e) }
        }
    )*};
}
from!(
    Container(ContainerError),
    Elf(ElfError),
    Memory(MemError),
    Plan(PlanError)
);

impl From<SlotError> for BootError {
    fn from(e: SlotError) -> BootError {
        BootError::Plan(PlanError::Slot(e))
    }
}

/// A payload ready to map and enter.
pub struct Loaded {
    pub placed: Placement,
    pub elf: Elf<'static>,
    /// The boot-info block to hand over (the backend puts it in its own memory).
    pub info: BootInfo,
    /// The relocated entry point.
    pub entry: u64,
}

/// What a payload page may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perm {
    /// Read and execute.
    Text,
    ReadOnly,
    /// Read and write, never execute.
    Data,
}

impl Loaded {
    /// Each segment's pages: (virtual address, physical address, length, permission),
    /// 4 KiB-aligned. Segments never share a page when linked with page alignment;
    /// the backend's page-table code refuses a page mapped twice.
    pub fn pages(&self) -> impl Iterator<Item = (u64, u64, u64, Perm)> + '_ {
        let base = self.elf.link_base();
        self.elf.segments().map(move |seg| {
            let start = seg.vaddr.wrapping_sub(base) & !4095;
            let end = seg
                .vaddr
                .wrapping_sub(base)
                .saturating_add(seg.memsz)
                .next_multiple_of(4096);
            let perm = match (seg.flags.write, seg.flags.exec) {
                (_, true) => Perm::Text,
                (true, false) => Perm::Data,
                (false, false) => Perm::ReadOnly,
            };
            (
                self.placed.virt.wrapping_add(start),
                self.placed.phys + start,
                end - start,
                perm,
            )
        })
    }
}

/// Unpacks and verifies the payload, places it, loads and relocates it, and fills the
/// boot info. `inflater` is the inflate state (about 11 KB), kept off the stack.
pub fn load(
    platform: &mut impl Platform,
    mut inputs: Inputs<'_>,
    inflater: &mut DecompressorOxide,
) -> Result<Loaded, BootError> {
    let (sources, strong) = (inputs.entropy.sources(), inputs.entropy.strong());
    let mut rng = inputs.entropy.finish();
    if inputs.container.is_empty() {
        return Err(BootError::NoPayload);
    }
    let payload = container::parse(inputs.container)?;
    if payload.format != Format::Elf64Dyn {
        return Err(BootError::Format(payload.format));
    }

    // Unpack into the lowest free range and check the digest before anything parses it.
    let free = plan::usable(&inputs.ram, &inputs.avoid, &inputs.opts)?;
    let scratch_len = payload.unpacked_size.next_multiple_of(4096);
    let req = slot::Request {
        size: scratch_len,
        align: 4096,
        min_addr: 0,
        max_end: u64::MAX,
    };
    let scratch = slot::lowest(&free, &req)
        .ok_or(SlotError::NoSlot)
        .inspect_err(|_| {
            report(
                platform,
                "unpacking",
                scratch_len,
                &inputs.ram,
                &inputs.avoid,
                &free,
            )
        })?;
    let scratch = Range::from_base_size(scratch, scratch_len)?;
    let scratch_mem = platform.memory(scratch);
    let t0 = platform.ticks();
    let n = container::unpack(&payload, scratch_mem, inflater)?;
    let scratch_mem: &'static [u8] = scratch_mem;
    let unpacked = scratch_mem.get(..n).unwrap_or_default();
    let t1 = platform.ticks();
    container::verify(&payload, unpacked)?;
    let t2 = platform.ticks();
    let elf = Elf::parse(unpacked, inputs.arch)?;
    inputs.avoid.push(scratch, "scratch")?;

    // Choose the slot and the virtual base.
    let free = plan::usable(&inputs.ram, &inputs.avoid, &inputs.opts)?;
    let span = elf.span();
    // The origin of image offsets, 2 MiB aligned so that an aligned slot gives an
    // aligned virtual base even when RAM starts unaligned (kexec-tools' e820 at 0x400).
    let dram_base = inputs.ram.first().map_or(0, |r| r.start) & !(plan::SLOT_ALIGN - 1);
    let loader_offset = match inputs.loader_offset {
        0 => inputs.opts.image_offset.unwrap_or(0),
        x1 => x1,
    };
    let placed = plan::place(
        &free,
        dram_base,
        span,
        &inputs.window,
        inputs.opts.nokaslr,
        loader_offset,
        &mut rng,
    )
    .inspect_err(|_| {
        report(
            platform,
            "the loaded payload",
            span,
            &inputs.ram,
            &inputs.avoid,
            &free,
        )
    })?;
    if let Some((offset, why)) = placed.refused_offset {
        platform.say(format_args!(
            "image offset {offset:#x} refused: {why}; choosing a slot instead"
        ));
    }
    match placed.mode {
        Mode::Lowest => platform.say(format_args!("nokaslr: payload at the lowest slot")),
        Mode::Loader => platform.say(format_args!("payload at the loader's image offset")),
        Mode::Random if !strong => platform.say(format_args!(
            "warning: no strong entropy source, only the counter"
        )),
        Mode::Random => {}
    }
    let t3 = platform.ticks();
    if inputs.opts.verbose {
        platform.say(format_args!(
            "placed pa={:#x} va={:#x} slots={} entropy={} sources={}",
            placed.phys,
            placed.virt,
            placed.phys_slots,
            placed.bits,
            SourceNames(sources)
        ));
    }

    let image = platform.memory(Range::from_base_size(placed.phys, span)?);
    elf.load(image)?;
    let t4 = platform.ticks();
    let relocs = elf.relocate(image, placed.virt)?;
    let t5 = platform.ticks();
    if inputs.opts.verbose {
        let hz = platform.ticks_per_second();
        let phase = |from: u64, to: u64| Duration(to.wrapping_sub(from), hz);
        platform.say(format_args!(
            "timing unpack={} verify={} place={} load={} relocate={} ({} bytes, {} relocations)",
            phase(t0, t1),
            phase(t1, t2),
            phase(t2, t3),
            phase(t3, t4),
            phase(t4, t5),
            n,
            relocs.rela + relocs.relr
        ));
    }

    let mut seed = [0u8; 32];
    rng.fill(&mut seed);
    let info = BootInfo {
        magic: bootinfo::MAGIC,
        version: bootinfo::VERSION,
        size: size_of::<BootInfo>() as u32,
        phys_base: placed.phys,
        virt_base: placed.virt,
        image_size: span,
        shim_base: inputs.shim.start,
        shim_size: inputs.shim.len(),
        fdt_or_boot_params: inputs.handoff,
        entropy_sources: sources,
        entropy_strong: u32::from(strong),
        phys_slots: placed.phys_slots,
        kaslr_bits: placed.bits,
        fixed: u32::from(placed.mode != Mode::Random),
        seed,
    };
    let entry = placed
        .virt
        .wrapping_add(elf.entry().wrapping_sub(elf.link_base()));
    Ok(Loaded {
        placed,
        elf,
        info,
        entry,
    })
}

/// Says why nothing fits: what was needed, then RAM, the avoid list and what is free.
fn report(
    p: &mut impl Platform,
    what: &str,
    size: u64,
    ram: &MemoryMap,
    avoid: &Avoid,
    free: &MemoryMap,
) {
    p.say(format_args!("{what} needs {size:#x} bytes; memory map:"));
    plan::report(|line| p.say(line), ram, avoid, free);
}

/// A tick count shown in microseconds when the frequency is known.
struct Duration(u64, u64);

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Duration(ticks, 0) => write!(f, "{ticks}ticks"),
            // Saturates only past 1.8e13 ticks: hours, not a boot phase.
            Duration(ticks, hz) => write!(f, "{}us", ticks.saturating_mul(1_000_000) / hz),
        }
    }
}

/// The names of the entropy sources in a bitmask, comma-separated.
pub struct SourceNames(pub u32);

impl fmt::Display for SourceNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for source in crate::entropy::Source::ALL {
            if self.0 & source.bit() != 0 {
                write!(f, "{sep}{}", source.name())?;
                sep = ",";
            }
        }
        Ok(())
    }
}
