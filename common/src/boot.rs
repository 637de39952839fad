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

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    //! The whole shared sequence on the host: a fake machine whose RAM is a leaked
    //! buffer, a container around a small relocatable ELF, and checks on what lands in
    //! RAM and what does not.
    use super::*;
    use crate::elf::tests::{rela, sample, BASE};
    use crate::entropy::Source;
    use sha2::{Digest, Sha256};

    const RAM_BASE: u64 = 0x4000_0000;
    const RAM_SIZE: u64 = 64 << 20;
    const FILL: u8 = 0x5a;

    struct Fake {
        ram: *mut u8,
        handed: Vec<Range>,
        lines: Vec<String>,
    }

    impl Fake {
        fn new() -> Fake {
            let ram = Box::leak(vec![FILL; RAM_SIZE as usize].into_boxed_slice());
            Fake {
                ram: ram.as_mut_ptr(),
                handed: Vec::new(),
                lines: Vec::new(),
            }
        }

        fn read(&self, range: Range) -> &[u8] {
            assert!(range.start >= RAM_BASE && range.end <= RAM_BASE + RAM_SIZE);
            // SAFETY: in bounds of the leaked buffer; the test reads after `load` returned.
            unsafe {
                core::slice::from_raw_parts(
                    self.ram.add((range.start - RAM_BASE) as usize),
                    range.len() as usize,
                )
            }
        }
    }

    impl Platform for Fake {
        fn memory(&mut self, range: Range) -> &'static mut [u8] {
            assert!(
                range.start >= RAM_BASE && range.end <= RAM_BASE + RAM_SIZE,
                "{range} outside RAM"
            );
            assert!(
                self.handed.iter().all(|r| !r.overlaps(&range)),
                "{range} handed out twice"
            );
            self.handed.push(range);
            // SAFETY: in bounds, and never handed out overlapping (asserted above).
            unsafe {
                core::slice::from_raw_parts_mut(
                    self.ram.add((range.start - RAM_BASE) as usize),
                    range.len() as usize,
                )
            }
        }

        fn say(&mut self, line: fmt::Arguments<'_>) {
            self.lines.push(line.to_string());
        }
    }

    /// An uncompressed container around `elf`, with the digest of `digest_of`.
    fn container(elf: &[u8], digest_of: &[u8]) -> Vec<u8> {
        let mut c = Vec::from(container::MAGIC);
        for half in [container::VERSION, container::HEADER_LEN as u16, 1, 0] {
            c.extend(half.to_le_bytes());
        }
        c.extend((elf.len() as u64).to_le_bytes());
        c.extend((elf.len() as u64).to_le_bytes());
        c.extend(Sha256::digest(digest_of));
        c.extend(elf);
        c
    }

    fn avoid() -> Avoid {
        let mut a = Avoid::new();
        a.push(Range::from_base_size(RAM_BASE, 2 << 20).unwrap(), "shim")
            .unwrap();
        a.push(
            Range::from_base_size(RAM_BASE + (8 << 20), 4096).unwrap(),
            "fdt",
        )
        .unwrap();
        a
    }

    fn inputs<'a>(container: &'a [u8], cmdline: &[u8], seed: u8) -> Inputs<'a> {
        let mut ram = MemoryMap::new();
        ram.insert(Range::from_base_size(RAM_BASE, RAM_SIZE).unwrap())
            .unwrap();
        let mut entropy = Mixer::new();
        // A zero kaslr-seed means "no seed": never pass one.
        entropy.add(Source::KaslrSeed, &[seed | 0x80; 8]);
        Inputs {
            ram,
            avoid: avoid(),
            opts: crate::cmdline::parse(cmdline).unwrap(),
            container,
            arch: elf::Machine::Aarch64,
            window: plan::ARM64_WINDOW,
            loader_offset: 0,
            entropy,
            handoff: RAM_BASE + (8 << 20),
            shim: Range::from_base_size(RAM_BASE, 2 << 20).unwrap(),
        }
    }

    /// The sample ELF with one RELA and one RELR relocation of its data words.
    fn payload() -> Vec<u8> {
        sample(
            &[rela(BASE + 0x1008, 1027, BASE + 0x1080)],
            &[BASE + 0x1010],
        )
    }

    #[test]
    fn loads_relocates_and_leaves_avoided_memory_alone() {
        let elf = payload();
        let c = container(&elf, &elf);
        for seed in 0..8 {
            let mut fake = Fake::new();
            let mut inflater = DecompressorOxide::new();
            let loaded = load(&mut fake, inputs(&c, b"shim.verbose", seed), &mut inflater).unwrap();
            let p = loaded.placed;
            assert_eq!(p.phys % plan::SLOT_ALIGN, 0);
            assert_eq!(p.virt % plan::SLOT_ALIGN, 0);
            let image = fake.read(Range::from_base_size(p.phys, loaded.info.image_size).unwrap());
            let word = |link: u64| {
                u64::from_le_bytes(image[(link - BASE) as usize..][..8].try_into().unwrap())
            };
            // RELA: addend + displacement; RELR: the stored link address + displacement.
            assert_eq!(word(BASE + 0x1008), p.virt + 0x1080);
            assert_eq!(word(BASE + 0x1010), p.virt + 0x1010);
            // An unrelocated word keeps its link-time value; bss is zero.
            assert_eq!(word(BASE + 0x1018), BASE + 0x1018);
            assert!(image[0x2800..0x3000].iter().all(|&b| b == 0));
            for (range, label) in avoid().iter() {
                assert!(
                    fake.read(range).iter().all(|&b| b == FILL),
                    "{label} was written"
                );
            }
            assert_eq!(loaded.entry, p.virt + 0x10);
            assert_eq!(
                (loaded.info.phys_base, loaded.info.virt_base),
                (p.phys, p.virt)
            );
            assert!(loaded.info.entropy_strong == 1 && loaded.info.kaslr_bits > 25);
            assert!(fake.lines.iter().any(|l| l.starts_with("placed pa=")));
            assert!(fake.lines.iter().any(|l| l.starts_with("timing unpack=")));
            let pages: Vec<_> = loaded.pages().collect();
            assert_eq!(pages[0], (p.virt, p.phys, 0x1000, Perm::Text));
            assert_eq!(
                pages[1],
                (p.virt + 0x1000, p.phys + 0x1000, 0x2000, Perm::Data)
            );
        }
    }

    #[test]
    fn nokaslr_places_at_the_lowest_slot_without_displacement() {
        let elf = payload();
        let c = container(&elf, &elf);
        let mut inflater = DecompressorOxide::new();
        let loaded = load(&mut Fake::new(), inputs(&c, b"nokaslr", 1), &mut inflater).unwrap();
        // The shim takes the first 2 MiB, the unpacked ELF the lowest free page after it.
        assert_eq!(loaded.placed.phys, RAM_BASE + (4 << 20));
        assert_eq!(loaded.placed.virt, plan::ARM64_WINDOW.base + (4 << 20));
        assert_eq!(loaded.info.fixed, 1);
    }

    #[test]
    fn a_flipped_payload_byte_is_refused_before_anything_is_loaded() {
        let elf = payload();
        let mut bad = elf.clone();
        bad[0x40] ^= 1;
        let c = container(&bad, &elf);
        let mut fake = Fake::new();
        let mut inflater = DecompressorOxide::new();
        let e = load(&mut fake, inputs(&c, b"", 1), &mut inflater)
            .err()
            .unwrap();
        assert!(matches!(
            e,
            BootError::Container(ContainerError::DigestMismatch { .. })
        ));
        assert!(e
            .to_string()
            .starts_with("payload digest mismatch: expected "));
        assert_eq!(fake.handed.len(), 1, "only the scratch range was touched");
    }

    #[test]
    fn an_unknown_relocation_type_stops_the_boot_naming_it() {
        let elf = sample(&[rela(BASE + 0x1008, 257, 0)], &[]);
        let c = container(&elf, &elf);
        let mut inflater = DecompressorOxide::new();
        let e = load(&mut Fake::new(), inputs(&c, b"", 1), &mut inflater)
            .err()
            .unwrap();
        let text = e.to_string();
        assert!(text.contains("257") && text.contains("0x401008"), "{text}");
    }

    #[test]
    fn no_room_reports_the_memory_map() {
        let elf = payload();
        let c = container(&elf, &elf);
        let mut fake = Fake::new();
        let mut inflater = DecompressorOxide::new();
        // mem= leaves only the shim's 2 MiB and 1 MiB more.
        let e = load(&mut fake, inputs(&c, b"mem=0x40300000", 1), &mut inflater)
            .err()
            .unwrap();
        assert!(matches!(
            e,
            BootError::Plan(PlanError::Slot(SlotError::NoSlot))
        ));
        assert!(fake
            .lines
            .iter()
            .any(|l| l.contains("needs") && l.contains("memory map")));
        assert!(fake
            .lines
            .iter()
            .any(|l| l.trim_start().starts_with("avoid") && l.ends_with("shim")));
    }
}
