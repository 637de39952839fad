//! The boot sequence every backend shares: from machine facts and the payload container
//! to a verified, loaded and relocated image with its boot-info block. The backend
//! gathers the facts, gives memory access through [`Platform`], then maps and jumps.

use core::fmt;
use core::mem::size_of;
use zeroize::Zeroize;

use crate::arm64_linux;
use crate::bootinfo::{self, BootInfo};
use crate::cmdline::Options;
use crate::container::{self, ContainerError, Format, Inflater};
use crate::digest;
use crate::elf::{self, Elf, ElfError};
use crate::entropy::{Mixer, Rng};
use crate::image::{self, ImageError};
use crate::memmap::{Avoid, MemError, MemoryMap, Range};
use crate::plan::{self, Mode, Placement, PlanError, VirtWindow};
use crate::slot::{self, SlotError};
use crate::x86_linux;

mod linux_x86;
#[cfg(any(test, feature = "alloc"))]
pub use linux_x86::linux_x86_digest;
pub use linux_x86::{load_linux_x86, LoadedLinuxX86};

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
    /// The SHA-256 block function to verify payloads with: the CPU's instructions
    /// where it has them, and its name for `shim.verbose`.
    fn sha256(&self) -> digest::Engine {
        digest::PORTABLE
    }
    /// The block function of [`sha256`](Self::sha256) alone.
    fn sha256_compress(&self) -> digest::Compress {
        self.sha256().compress
    }
    /// Zero-fills `bytes` (a range [`memory`](Self::memory) gave): the payload's bss
    /// and gaps. A backend may have a faster way than stores (arm64's DC ZVA).
    fn zero(&mut self, bytes: &mut [u8]) {
        bytes.fill(0);
    }
    /// Entropy read now, after the placement was drawn (CPU RNG values, the counter),
    /// mixed into the seeds handed on so they are more than the placement stream.
    fn fresh_entropy(&mut self) -> [u64; 3] {
        [self.ticks(), 0, 0]
    }
}

/// The facts the backend gathered.
pub struct Inputs<'a> {
    /// All RAM.
    pub ram: MemoryMap,
    /// What must survive until the payload runs: the shim and its container, the
    /// device tree or boot_params, the command line, the initrd, reserved memory.
    pub avoid: Avoid,
    /// What the placer may hand out (`layout::compose`): RAM within the command
    /// line's limits, clear of `avoid`, normal memory in the identity map.
    pub usable: MemoryMap,
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
    /// The Linux Image header is not one we can boot.
    Image(ImageError),
    /// The kernel's sizes overflow the address space, or no 32 GiB window holds it
    /// with the initrd.
    KernelTooLarge,
    Memory(MemError),
    Plan(PlanError),
    /// The x86 bzImage, its kernel's decoding, its vmlinux or relocation table.
    BzImage(x86_linux::BzImageError),
    Decompress(x86_linux::DecompressError),
    Vmlinux(x86_linux::VmlinuxError),
    Reloc(x86_linux::RelocError),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::NoPayload => f.write_str("no payload container after the shim image"),
            BootError::Container(e @ ContainerError::DigestMismatch { .. }) => write!(f, "{e}"),
            BootError::Container(e) => write!(f, "bad payload container: {e}"),
            BootError::Format(format) => write!(f, "payload format {format:?} not supported yet"),
            BootError::Elf(e) => write!(f, "bad payload ELF: {e}"),
            BootError::Image(e) => write!(f, "bad Linux Image: {e}"),
            BootError::KernelTooLarge => f.write_str(
                "the Linux Image's sizes overflow, or no 32 GiB window holds it with the initrd",
            ),
            BootError::Memory(e) => write!(f, "memory map: {e}"),
            BootError::Plan(e) => write!(f, "cannot place payload: {e}"),
            BootError::BzImage(e) => write!(f, "bad bzImage: {e}"),
            BootError::Decompress(e) => write!(f, "cannot decompress the kernel: {e}"),
            BootError::Vmlinux(e) => write!(f, "bad vmlinux in the bzImage: {e}"),
            BootError::Reloc(e) => write!(f, "bad kernel relocation table: {e}"),
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
    Image(ImageError),
    Memory(MemError),
    Plan(PlanError),
    BzImage(x86_linux::BzImageError),
    Decompress(x86_linux::DecompressError),
    Vmlinux(x86_linux::VmlinuxError),
    Reloc(x86_linux::RelocError)
);

impl From<SlotError> for BootError {
    fn from(e: SlotError) -> BootError {
        BootError::Plan(PlanError::Slot(e))
    }
}

/// A payload ready to map and enter.
pub struct Loaded {
    pub placed: Placement,
    /// The boot-info block to hand over (the backend puts it in its own memory).
    pub info: BootInfo,
    /// The relocated entry point.
    pub entry: u64,
    /// What [`Loaded::pages`] yields, one entry a segment: worked out, and checked,
    /// by [`load`].
    pages: [Option<Pages>; elf::MAX_SEGMENTS],
}

/// A segment's pages: (virtual address, physical address, length, permission).
type Pages = (u64, u64, u64, Perm);

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
        self.pages.iter().flatten().copied()
    }
}

/// The pages of `seg`, an image linked at `base` and placed at `placed`; `None` if
/// its addresses wrap.
fn segment_pages(seg: &elf::Segment, base: u64, placed: &Placement) -> Option<Pages> {
    let offset = seg.vaddr.checked_sub(base)?;
    let start = offset & !4095;
    let end = offset
        .checked_add(seg.memsz)?
        .checked_next_multiple_of(4096)?;
    let perm = match (seg.flags.write, seg.flags.exec) {
        (_, true) => Perm::Text,
        (true, false) => Perm::Data,
        (false, false) => Perm::ReadOnly,
    };
    Some((
        placed.virt.wrapping_add(start),
        placed.phys.checked_add(start)?,
        end.checked_sub(start)?,
        perm,
    ))
}

/// Unpacks and verifies the payload, places it, loads and relocates it, and fills the
/// boot info. `inflater` holds the inflater's tables, kept off the stack.
pub fn load(
    platform: &mut impl Platform,
    mut inputs: Inputs<'_>,
    inflater: &mut Inflater,
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

    // The slot first, from the ELF and program headers the container keeps as they
    // are; what follows them is the image laid out as it loads, unpacked straight into
    // the slot. (Only the slot is decided on unverified bytes; nothing runs from them.)
    let t0 = platform.ticks();
    let kept = payload.kept.len() as u64;
    let headers = Elf::headers(payload.kept, payload.unpacked_size, inputs.arch).and_then(|elf| {
        // The slot is 2 MiB aligned, and so is the virtual base: a payload asking for
        // more (its largest p_align) is refused rather than placed against it.
        elf.check_align(plan::SLOT_ALIGN)?;
        elf.laid_out(kept, payload.unpacked_size)?;
        Ok(elf)
    });
    let mut elf = match headers {
        Ok(elf) => elf,
        // Unreadable headers: a corrupt payload is reported as such (its digest), a
        // sound one by what is wrong with its headers.
        Err(e) => {
            let map = (&inputs.ram, &inputs.avoid);
            unpack_verified(platform, map, &payload, &inputs.usable, inflater)?;
            return Err(BootError::Elf(e));
        }
    };
    let span = elf.span();
    // The origin of image offsets, 2 MiB aligned so that an aligned slot gives an
    // aligned virtual base even when RAM starts unaligned (kexec-tools' e820 at 0x400).
    let dram_base = inputs.ram.first().map_or(0, |r| r.start) & !(plan::SLOT_ALIGN - 1);
    let loader_offset = match inputs.loader_offset {
        0 => inputs.opts.image_offset.unwrap_or(0),
        x1 => x1,
    };
    let fixed =
        inputs.opts.nokaslr || inputs.opts.memmap_overflow || weak_fixed(&inputs.opts, strong);
    let placed = plan::place(
        &inputs.usable,
        dram_base,
        span,
        &inputs.window,
        fixed,
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
            &inputs.usable,
        )
    })?;
    say_mode(platform, &placed, &inputs.opts, strong, "payload");
    let bits = Bits::of(&placed, inputs.window.disp_bits, strong);
    if inputs.opts.verbose {
        platform.say(format_args!(
            "placed pa={:#x} va={:#x} slots={} {bits} sources={}",
            placed.phys,
            placed.virt,
            placed.phys_slots,
            SourceNames(sources)
        ));
    }
    let slot = Range::from_base_size(placed.phys, span)?;
    inputs.avoid.push(slot, "payload")?;

    // Unpack into the slot, check the digest before anything reads the image, then
    // clear what is not file bytes (bss) and relocate in place.
    let t1 = platform.ticks();
    let image = platform.memory(slot);
    container::unpack_body(&payload, image, inflater)?;
    let t2 = platform.ticks();
    let zeros = container::verify_body(&payload, image, platform.sha256_compress())?;
    let t3 = platform.ticks();
    elf.clear_gaps_with(image, &mut |bytes| platform.zero(bytes))?;
    elf.read_tables(image)?;
    let t4 = platform.ticks();
    let relocs = elf.relocate(image, placed.virt)?;
    let t5 = platform.ticks();
    let n = payload.unpacked_size;
    if inputs.opts.verbose {
        let hz = platform.ticks_per_second();
        let phase = |from: u64, to: u64| Duration(to.wrapping_sub(from), hz);
        platform.say(format_args!(
            "timing place={} unpack={} verify={} zeros={zeros} sha256={} load={} relocate={} \
             ({} bytes, {} relocations)",
            phase(t0, t1),
            phase(t1, t2),
            phase(t2, t3),
            platform.sha256().name,
            phase(t3, t4),
            phase(t4, t5),
            n,
            relocs.rela.saturating_add(relocs.relr)
        ));
    }

    let mut seed = [0u8; 32];
    rng.derive("payload seed", &fresh(platform), &mut seed);
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
        kaslr_bits: bits.credited,
        fixed: u32::from(placed.mode != Mode::Random),
        seed,
        phys_bits: bits.phys,
        virt_bits: bits.virt,
        counter_hz: platform.ticks_per_second(),
        // Filled by the arch right before the jump.
        entry_ticks: 0,
        total_ticks: 0,
        unpack_ticks: t2.wrapping_sub(t1),
        verify_ticks: t3.wrapping_sub(t2),
        relocate_ticks: t5.wrapping_sub(t4),
    };
    let entry = placed
        .virt
        .wrapping_add(elf.entry().wrapping_sub(elf.link_base()));
    let mut pages = [None; elf::MAX_SEGMENTS];
    for (page, seg) in pages.iter_mut().zip(elf.segments()) {
        let out = ElfError::SegmentOutOfFile { vaddr: seg.vaddr };
        *page = Some(segment_pages(&seg, elf.link_base(), &placed).ok_or(out)?);
    }
    Ok(Loaded {
        placed,
        info,
        entry,
        pages,
    })
}

/// The payload's format, from its container header.
pub fn payload_format(container: &[u8]) -> Result<Format, BootError> {
    if container.is_empty() {
        return Err(BootError::NoPayload);
    }
    Ok(container::parse(container)?.format)
}

/// The platform's fresh entropy as bytes.
fn fresh(platform: &mut impl Platform) -> [u8; 24] {
    let mut out = [0u8; 24];
    for (chunk, word) in out.chunks_exact_mut(8).zip(platform.fresh_entropy()) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// A Linux arm64 Image inflated into its slot, not yet verified.
pub struct LoadedLinux<'a> {
    /// `phys` is the 2 MiB-aligned base; the Image starts `text_offset` above it.
    pub placed: Placement,
    /// The Image's first byte.
    pub image_pa: u64,
    /// The bytes the Image must have free from `image_pa` (bss included).
    pub reserve: u64,
    /// The inflated Image, in place.
    image: &'static [u8],
    payload: container::Payload<'a>,
    /// Where the rebuilt device tree goes: free memory clear of the kernel's slot.
    pub fdt: &'static mut [u8],
    pub fdt_pa: u64,
    rng: Rng,
}

/// Fresh seeds for the kernel, drawn after placement (see [`LoadedLinux::seeds`]).
/// Wiped when dropped: once written where the kernel reads them, no other copy stays.
pub struct KernelSeeds {
    /// `/chosen/kaslr-seed`: Linux's virtual offset. Never 0 (0 means "no seed").
    pub kaslr: [u8; 8],
    /// `/chosen/rng-seed`: credited to Linux's entropy pool.
    pub rng: [u8; 64],
}

impl Drop for KernelSeeds {
    fn drop(&mut self) {
        self.kaslr.zeroize();
        self.rng.zeroize();
    }
}

impl LoadedLinux<'_> {
    /// The kernel's seeds, each with its own label and fresh platform entropy, so
    /// neither reveals the physical placement, the key behind it or the other seed.
    pub fn seeds(&mut self, platform: &mut impl Platform) -> KernelSeeds {
        let mut seeds = KernelSeeds {
            kaslr: [0; 8],
            rng: [0; 64],
        };
        let fresh = fresh(platform);
        self.rng
            .derive("linux kaslr-seed", &fresh, &mut seeds.kaslr);
        self.rng.derive("linux rng-seed", &fresh, &mut seeds.rng);
        if seeds.kaslr == [0; 8] {
            seeds.kaslr[7] = 1;
        }
        seeds
    }

    /// Checks the SHA-256 of the Image as it lies in its slot: called right before
    /// the jump (kexec purgatory's rule), so nothing the shim did since unpacking can
    /// have changed what runs. Returns the bytes of zero runs read rather than hashed.
    pub fn verify(&self, compress: digest::Compress) -> Result<u64, BootError> {
        Ok(container::verify_with(&self.payload, self.image, compress)?)
    }
}

/// Places a Linux arm64 Image as booting.rst asks, uniformly over every slot when its
/// header allows it, inflates it straight into the slot and finds room for the
/// rebuilt device tree (`fdt_room` bytes). `initrd` bounds the slots (the initrd
/// window); it is in the avoid list already.
pub fn load_linux_arm64<'a>(
    platform: &mut impl Platform,
    inputs: Inputs<'a>,
    initrd: Option<Range>,
    fdt_room: u64,
    inflater: &mut Inflater,
) -> Result<LoadedLinux<'a>, BootError> {
    let (sources, strong) = (inputs.entropy.sources(), inputs.entropy.strong());
    let mut rng = inputs.entropy.finish();
    let payload = container::parse(inputs.container)?;
    if payload.format != Format::LinuxArm64Image {
        return Err(BootError::Format(payload.format));
    }
    let mut head = [0u8; 64];
    unpack_head(platform, &payload, &inputs.usable, &mut head, inflater)?;
    let header = image::parse_arm64(&head)?;
    let layout = arm64_linux::Layout::new(&header, payload.unpacked_size);
    let dram_base = inputs.ram.first().map_or(0, |r| r.start) & !(plan::SLOT_ALIGN - 1);
    let req = layout
        .request(dram_base, initrd)
        .ok_or(BootError::KernelTooLarge)?;
    if layout.legacy {
        platform.say(format_args!(
            "Image header has image_size 0 (a kernel before v3.17): text_offset {:#x} and {:#x} bytes assumed, placed low as booting.rst asks",
            layout.text_offset, layout.reserve
        ));
    } else if !layout.anywhere {
        platform.say(format_args!(
            "Image flag bit 3 is clear (place near the start of DRAM): physical randomization is off for this kernel"
        ));
    }

    let t0 = platform.ticks();
    let free = inputs.usable;
    let loader_offset = match inputs.loader_offset {
        0 => inputs.opts.image_offset.unwrap_or(0),
        x1 => x1,
    };
    let lowest = inputs.opts.nokaslr
        || inputs.opts.memmap_overflow
        || !layout.anywhere
        || weak_fixed(&inputs.opts, strong);
    let placed = plan::place_request(
        &free,
        &req,
        dram_base,
        None,
        lowest,
        loader_offset,
        &mut rng,
    )
    .inspect_err(|_| {
        report(
            platform,
            "the Linux Image",
            req.size,
            &inputs.ram,
            &inputs.avoid,
            &free,
        )
    })?;
    if layout.anywhere || placed.mode != Mode::Lowest {
        say_mode(platform, &placed, &inputs.opts, strong, "kernel");
    }
    let slot = Range::from_base_size(placed.phys, req.size)?;
    // Inside the slot, which holds `text_offset + reserve` bytes.
    let image_pa = placed
        .phys
        .checked_add(layout.text_offset)
        .ok_or(BootError::KernelTooLarge)?;
    if inputs.opts.verbose {
        platform.say(format_args!(
            "placed pa={image_pa:#x} size={:#x} slots={} {} sources={}",
            layout.reserve,
            placed.phys_slots,
            Bits::of(&placed, 0, strong),
            SourceNames(sources)
        ));
    }

    // The device tree's new home: the lowest free page run clear of the slot.
    let mut rest = free;
    rest.remove_lossy(slot);
    let fdt_req = slot::Request {
        size: fdt_room.max(1),
        align: 4096,
        min_addr: 0,
        max_end: u64::MAX,
    };
    let fdt_pa = slot::lowest(&rest, &fdt_req)
        .ok_or(SlotError::NoSlot)
        .inspect_err(|_| {
            report(
                platform,
                "the device tree",
                fdt_room,
                &inputs.ram,
                &inputs.avoid,
                &rest,
            )
        })?;
    let fdt = platform.memory(Range::from_base_size(fdt_pa, fdt_req.size)?);

    // Straight into the slot: no scratch copy.
    let t1 = platform.ticks();
    let mem = platform.memory(slot);
    let dest = mem
        .get_mut(usize::try_from(layout.text_offset).unwrap_or(usize::MAX)..)
        .unwrap_or_default();
    let n = container::unpack(&payload, dest, inflater)?;
    let dest: &'static [u8] = dest;
    let t2 = platform.ticks();
    if inputs.opts.verbose {
        let hz = platform.ticks_per_second();
        platform.say(format_args!(
            "timing place={} unpack={} ({n} bytes)",
            Duration(t1.wrapping_sub(t0), hz),
            Duration(t2.wrapping_sub(t1), hz),
        ));
    }
    Ok(LoadedLinux {
        placed,
        image_pa,
        reserve: layout.reserve,
        image: dest.get(..n).unwrap_or_default(),
        payload,
        fdt,
        fdt_pa,
        rng,
    })
}

/// The payload's first `head.len()` bytes (fewer if it is shorter), to read its headers
/// before anything is placed. An LZ4 block decodes only whole: the first goes to the
/// lowest free memory, which is free again once the head is copied out of it.
fn unpack_head(
    platform: &mut impl Platform,
    payload: &container::Payload<'_>,
    free: &MemoryMap,
    head: &mut [u8],
    inflater: &mut Inflater,
) -> Result<usize, BootError> {
    let Some(block) = container::first_block_len(payload) else {
        return Ok(container::unpack_prefix(payload, head, inflater)?);
    };
    let req = slot::Request {
        size: block
            .max(1)
            .checked_next_multiple_of(4096)
            .ok_or(SlotError::NoSlot)?,
        align: 4096,
        min_addr: 0,
        max_end: u64::MAX,
    };
    let at = slot::lowest(free, &req).ok_or(SlotError::NoSlot)?;
    let scratch = platform.memory(Range::from_base_size(at, req.size)?);
    let n = container::unpack_prefix(payload, scratch, inflater)?.min(head.len());
    let (to, from) = (head.get_mut(..n), scratch.get(..n));
    if let (Some(to), Some(from)) = (to, from) {
        to.copy_from_slice(from);
    }
    Ok(n)
}

/// Unpacks the payload into the lowest page run of `free` and checks its SHA-256 there,
/// before anything parses it; returns the verified bytes and the tick after unpacking.
fn unpack_verified(
    platform: &mut impl Platform,
    (ram, avoid): (&MemoryMap, &Avoid),
    payload: &container::Payload<'_>,
    free: &MemoryMap,
    inflater: &mut Inflater,
) -> Result<(&'static [u8], u64), BootError> {
    // A corrupt header's size may not round up: then it fits nowhere.
    let scratch_len = payload
        .unpacked_size
        .checked_next_multiple_of(4096)
        .ok_or(SlotError::NoSlot)?;
    let req = slot::Request {
        size: scratch_len,
        align: 4096,
        min_addr: 0,
        max_end: u64::MAX,
    };
    let scratch = slot::lowest(free, &req)
        .ok_or(SlotError::NoSlot)
        .inspect_err(|_| report(platform, "unpacking", scratch_len, ram, avoid, free))?;
    let scratch_mem = platform.memory(Range::from_base_size(scratch, scratch_len)?);
    let n = container::unpack(payload, scratch_mem, inflater)?;
    let scratch_mem: &'static [u8] = scratch_mem;
    let unpacked = scratch_mem.get(..n).unwrap_or_default();
    let t = platform.ticks();
    container::verify_with(payload, unpacked, platform.sha256_compress())?;
    Ok((unpacked, t))
}

/// The SHA-256 block function a boot hashes with: the CPU's instructions where
/// `instructions` finds them, else the arch's code without them (`software`);
/// `shim.sha256=portable` asks for `software`, and `instructions` is not called.
pub fn sha256_engine(
    opts: &Options,
    instructions: impl FnOnce() -> Option<digest::Engine>,
    software: digest::Engine,
) -> digest::Engine {
    match opts.sha256_portable {
        true => software,
        false => instructions().unwrap_or(software),
    }
}

/// `shim.weak=fixed` and nothing but the counter to draw from: do not randomize.
fn weak_fixed(opts: &Options, strong: bool) -> bool {
    opts.weak_fixed && !strong
}

/// Says how the placement was decided: always, not only with `shim.verbose`, since a
/// fixed or weakly drawn placement must never pass unnoticed (seeds/001: loaders in
/// the wild leave junk in x1).
fn say_mode(
    platform: &mut impl Platform,
    placed: &Placement,
    opts: &Options,
    strong: bool,
    what: &str,
) {
    if let Some((offset, why)) = placed.refused_offset {
        platform.say(format_args!(
            "image offset {offset:#x} refused: {why}; choosing a slot instead"
        ));
    }
    match placed.mode {
        Mode::Lowest if opts.nokaslr => {
            platform.say(format_args!("nokaslr: {what} at the lowest slot"))
        }
        Mode::Lowest if opts.memmap_overflow => platform.say(format_args!(
            "more than {} memmap= entries, not all kept: {what} at the lowest slot, not randomized",
            crate::cmdline::MAX_MEMMAP
        )),
        Mode::Lowest => platform.say(format_args!(
            "shim.weak=fixed and no strong entropy source: {what} at the lowest slot, not randomized"
        )),
        Mode::Loader => platform.say(format_args!(
            "{what} at the loader's image offset: not randomized"
        )),
        Mode::Random if !strong => platform.say(format_args!(
            "warning: no strong entropy source, only the counter: a weak placement (shim.weak=fixed refuses it)"
        )),
        Mode::Random => {}
    }
}

/// The bits a placement had: what the layout allowed, physical and virtual, and what
/// the sources back (0 with only the counter, which is guessable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bits {
    pub phys: u32,
    pub virt: u32,
    pub credited: u32,
}

impl Bits {
    pub fn of(placed: &Placement, disp_bits: u32, strong: bool) -> Bits {
        let (phys, virt) = match placed.mode {
            Mode::Random => (placed.phys_slots.ilog2(), disp_bits),
            _ => (0, 0),
        };
        // A count: at most 63 + disp_bits.
        let credited = if strong { phys.saturating_add(virt) } else { 0 };
        Bits {
            phys,
            virt,
            credited,
        }
    }
}

impl fmt::Display for Bits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "phys_bits={} virt_bits={} entropy={}",
            self.phys, self.virt, self.credited
        )
    }
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

/// A tick count shown in microseconds when the frequency is known: (ticks, Hz).
pub struct Duration(pub u64, pub u64);

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Duration(ticks, hz) = *self;
        match core::num::NonZeroU64::new(hz) {
            None => write!(f, "{ticks}ticks"),
            // Saturates only past 1.8e13 ticks: hours, not a boot phase.
            Some(hz) => write!(f, "{}us", ticks.saturating_mul(1_000_000) / hz),
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
    use crate::container::Compression;
    use crate::elf::builder::{rela, sample, word, BASE};
    use crate::entropy::Source;

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

    /// An uncompressed container around `elf`, laid out as xtask packs it.
    fn container(elf: &[u8]) -> Vec<u8> {
        container::pack_elf(Compression::None, elf, elf::Machine::Aarch64).unwrap()
    }

    /// `container(elf)` with byte `at` of its payload (the laid-out file) flipped,
    /// under the digest of the unflipped one.
    fn flipped(elf: &[u8], at: usize) -> Vec<u8> {
        let mut c = container(elf);
        c[container::HEADER_LEN + at] ^= 0xff;
        c
    }

    /// Debian's x86_64 cloud kernel through the whole x86 Linux sequence on the fake
    /// machine (64 MiB: two 52 MiB slots fit), where `SHIM_LINUX_X86` names it: the
    /// slot holds exactly what an independent decode, layout and relocation for the
    /// reported virtual base give; the digest packed from the file catches a changed
    /// byte of the image, of its relocation table or of the setup code; nokaslr.
    #[test]
    fn debian_bzimage_sequence() {
        let Some(bz) = x86_linux::debian_file("bzImage") else {
            return;
        };
        let digest = linux_x86_digest(&bz).unwrap();
        // The kernel laid out has its bss, brk and .init.scratch as zeros in the file:
        // read at the check, not hashed.
        let zeros: u64 = digest.runs.iter().map(|r| r.len).sum();
        assert!(zeros > 10 << 20, "{zeros} bytes of zero runs");
        let c = container::pack_stored(Format::LinuxX86BzImage, &bz, &digest);
        let slots = [0x40a0_0000, 0x40c0_0000];
        let parsed = x86_linux::parse_bzimage(&bz).unwrap();
        let mut inflater = Box::<Inflater>::default();
        let mut want = vec![0u8; x86_linux::slot_size(&parsed) as usize];
        let n = x86_linux::decompress(&parsed, &mut want, &mut inflater).unwrap();
        let vm = x86_linux::parse_vmlinux(&want[..n]).unwrap();
        x86_linux::place_segments(&mut want, n, &vm).unwrap();
        let laid_out = want;
        let end = vm.file_end() as usize;
        for (cmdline, kaslr) in [(&b""[..], true), (b"nokaslr", false)] {
            let mut fake = Fake::new();
            let input = inputs(&c, cmdline, 1);
            let mut loaded = load_linux_x86(&mut fake, input, 8192, &mut inflater).unwrap();
            assert!(
                slots.contains(&loaded.placed.phys),
                "{:#x}",
                loaded.placed.phys
            );
            assert_eq!(loaded.kaslr, kaslr);
            assert_eq!(loaded.entry_pa, loaded.placed.phys);
            assert!(
                loaded.params_pa >= RAM_BASE
                    && !loaded
                        .slot
                        .overlaps(&Range::from_base_size(loaded.params_pa, 8192).unwrap())
            );
            let slot = Range::from_base_size(loaded.placed.phys, end as u64).unwrap();
            assert!(
                fake.read(slot) == &laid_out[..end],
                "laid out, not yet relocated"
            );

            // A byte changed in the image, in the relocation table or in the setup
            // code is caught right before the jump, and nothing is relocated.
            let phys = loaded.placed.phys;
            let flip = |fake: &mut Fake, at: u64| {
                // SAFETY: a byte of the fake RAM, inside the slot `load` handed out.
                unsafe { *fake.ram.add((phys + at - RAM_BASE) as usize) ^= 1 };
            };
            for at in [0x1234, n as u64 - 8] {
                flip(&mut fake, at);
                assert!(matches!(
                    loaded.verify_and_relocate(&mut fake),
                    Err(BootError::Container(ContainerError::DigestMismatch { .. }))
                ));
                flip(&mut fake, at);
            }
            let mut setup = bz.clone();
            setup[0x300] ^= 1;
            let bad = container::pack_stored(Format::LinuxX86BzImage, &setup, &digest);
            let mut other = Fake::new();
            let input = inputs(&bad, cmdline, 1);
            let mut refused = load_linux_x86(&mut other, input, 8192, &mut inflater).unwrap();
            assert!(matches!(
                refused.verify_and_relocate(&mut other),
                Err(BootError::Container(ContainerError::DigestMismatch { .. }))
            ));
            assert!(fake.read(slot) == &laid_out[..end], "nothing relocated");

            // Then relocated as misc.c would, for the reported base.
            loaded.verify_and_relocate(&mut fake).unwrap();
            let mut want = laid_out.clone();
            let virt_addr = loaded.placed.virt - x86_linux::START_KERNEL_MAP;
            if !kaslr {
                assert_eq!(virt_addr, vm.load_physical_addr());
            }
            let delta = virt_addr.wrapping_sub(vm.load_physical_addr());
            let layout = x86_linux::reloc_layout(parsed.version).unwrap();
            x86_linux::relocate(&mut want, n, &vm, delta, layout).unwrap();
            assert!(
                fake.read(slot) == &want[..end],
                "the slot differs from the reference"
            );
        }
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
        let opts = crate::cmdline::parse(cmdline).unwrap();
        let mut ram_limited = ram;
        if let Some(limit) = opts.memory_limit() {
            ram_limited.truncate_above(limit);
        }
        let usable = crate::memmap::free_memory(&ram_limited, &avoid()).unwrap();
        Inputs {
            ram,
            avoid: avoid(),
            usable,
            opts,
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
        let c = container(&elf);
        for seed in 0..8 {
            let mut fake = Fake::new();
            let mut inflater = Inflater::new();
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
            assert!(fake
                .lines
                .iter()
                .any(|l| l.starts_with("timing place=") && l.contains(" sha256=portable ")));
            let pages: Vec<_> = loaded.pages().collect();
            assert_eq!(pages[0], (p.virt, p.phys, 0x1000, Perm::Text));
            assert_eq!(
                pages[1],
                (p.virt + 0x1000, p.phys + 0x1000, 0x2000, Perm::Data)
            );
        }
    }

    #[test]
    fn the_payload_is_unpacked_straight_into_its_slot() {
        let elf = payload();
        let c = container(&elf);
        let mut fake = Fake::new();
        let loaded = load(&mut fake, inputs(&c, b"", 1), &mut Inflater::new()).unwrap();
        let slot = Range::from_base_size(loaded.placed.phys, loaded.info.image_size).unwrap();
        assert_eq!(fake.handed, [slot], "no scratch, no copy: only the slot");
        // Over the fake's junk: the gap after the text and the bss are zero, the
        // file bytes are the file's.
        let image = fake.read(slot);
        assert!(image[0x100..0x1000].iter().all(|&b| b == 0), "gap cleared");
        assert!(image[0x1200..0x3000].iter().all(|&b| b == 0), "bss cleared");
        assert!(image[..0x100].iter().all(|&b| b == 0xaa), "text");
        assert_eq!(word(image, BASE + 0x1018), BASE + 0x1018);
    }

    #[test]
    fn shim_sha256_portable_overrides_the_detected_engine() {
        let hardware = digest::Engine {
            name: "hardware",
            compress: digest::portable,
        };
        let opts = |line: &[u8]| crate::cmdline::parse(line).unwrap();
        let engine = |line, found| sha256_engine(&opts(line), || found, digest::PORTABLE).name;
        assert_eq!(engine(b"", Some(hardware)), "hardware");
        assert_eq!(engine(b"", None), digest::PORTABLE.name);
        assert_eq!(engine(b"shim.sha256=auto", Some(hardware)), "hardware");
        let forced = sha256_engine(
            &opts(b"shim.sha256=portable"),
            || unreachable!(),
            digest::PORTABLE,
        );
        assert_eq!(forced.name, digest::PORTABLE.name);
    }

    #[test]
    fn nokaslr_places_at_the_lowest_slot_without_displacement() {
        let elf = payload();
        let c = container(&elf);
        let mut inflater = Inflater::new();
        let loaded = load(&mut Fake::new(), inputs(&c, b"nokaslr", 1), &mut inflater).unwrap();
        // The shim takes the first 2 MiB: the slot is the lowest one after it.
        assert_eq!(loaded.placed.phys, RAM_BASE + (2 << 20));
        assert_eq!(loaded.placed.virt, plan::ARM64_WINDOW.base + (2 << 20));
        assert_eq!(loaded.info.fixed, 1);
    }

    #[test]
    fn a_flipped_payload_byte_is_refused_before_anything_is_loaded() {
        let elf = payload();
        let (_, headers) = crate::elf::lay_out(&elf, elf::Machine::Aarch64).unwrap();
        let c = flipped(&elf, headers + 0x1010);
        let mut fake = Fake::new();
        let mut inflater = Inflater::new();
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
        assert_eq!(fake.handed.len(), 1, "only the slot was touched");
    }

    #[test]
    fn one_window_is_enough() {
        let elf = payload();
        let c = container(&elf);
        // mem= leaves the shim's 2 MiB and 1 MiB more: one slot, and nothing else is
        // needed.
        let loaded = load(
            &mut Fake::new(),
            inputs(&c, b"mem=0x40300000", 1),
            &mut Inflater::new(),
        )
        .unwrap();
        assert_eq!(loaded.placed.phys, RAM_BASE + (2 << 20));
        assert_eq!(loaded.placed.phys_slots, 1);
    }

    #[test]
    fn a_payload_with_garbled_headers_is_a_digest_mismatch() {
        let c = flipped(&payload(), 0x38); // e_phnum
        let e = load(&mut Fake::new(), inputs(&c, b"", 1), &mut Inflater::new())
            .err()
            .unwrap();
        assert!(
            matches!(
                e,
                BootError::Container(ContainerError::DigestMismatch { .. })
            ),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_relocation_type_stops_the_boot_naming_it() {
        let elf = sample(&[rela(BASE + 0x1008, 257, 0)], &[]);
        let c = container(&elf);
        let mut inflater = Inflater::new();
        let e = load(&mut Fake::new(), inputs(&c, b"", 1), &mut inflater)
            .err()
            .unwrap();
        let text = e.to_string();
        assert!(text.contains("257") && text.contains("0x401008"), "{text}");
    }

    #[test]
    fn a_payload_aligned_above_2_mib_is_refused_not_misplaced() {
        use crate::elf::builder::{build, Seg, AARCH64};
        let seg = Seg {
            vaddr: 0,
            data: vec![0xaa; 0x100],
            memsz: 0x100,
            flags: 5,
            align: 4 << 20,
        };
        let elf = build(AARCH64, 0, &[seg], &[]);
        let c = container(&elf);
        let mut fake = Fake::new();
        let e = load(&mut fake, inputs(&c, b"", 1), &mut Inflater::new())
            .err()
            .unwrap();
        assert_eq!(
            e,
            BootError::Elf(ElfError::AlignAboveGranule {
                align: 4 << 20,
                granule: 2 << 20
            })
        );
        assert_eq!(
            fake.handed.len(),
            1,
            "only the scratch the digest was checked in"
        );
    }

    #[test]
    fn no_room_reports_the_memory_map() {
        let elf = payload();
        let c = container(&elf);
        let mut fake = Fake::new();
        let mut inflater = Inflater::new();
        // mem= leaves only the shim's 2 MiB.
        let e = load(&mut fake, inputs(&c, b"mem=0x40200000", 1), &mut inflater)
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

    /// A fake arm64 Image: its 64-byte header, then counting bytes.
    fn arm64_image(text_offset: u64, image_size: u64, flags: u64, len: usize) -> Vec<u8> {
        let mut b: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        b[0x08..0x10].copy_from_slice(&text_offset.to_le_bytes());
        b[0x10..0x18].copy_from_slice(&image_size.to_le_bytes());
        b[0x18..0x20].copy_from_slice(&flags.to_le_bytes());
        b[0x38..0x3c].copy_from_slice(b"ARM\x64");
        b
    }

    fn linux<'a>(
        fake: &mut Fake,
        c: &'a [u8],
        cmdline: &[u8],
        seed: u8,
        initrd: Option<Range>,
    ) -> Result<LoadedLinux<'a>, BootError> {
        let mut inflater = Inflater::new();
        load_linux_arm64(
            fake,
            inputs(c, cmdline, seed),
            initrd,
            0x3000,
            &mut inflater,
        )
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_linux_image_is_inflated_into_a_random_slot_and_verified_in_place() {
        let img = arm64_image(0, 6 * MIB, 0b1010, 3 * MIB as usize);
        for compression in [container::Compression::Zlib, container::Compression::Gzip] {
            let c = container::pack(Format::LinuxArm64Image, compression, &img);
            let mut seen = std::collections::HashSet::new();
            for seed in 0..12 {
                let mut fake = Fake::new();
                let l = linux(&mut fake, &c, b"shim.verbose", seed, None).unwrap();
                assert_eq!(l.placed.phys % plan::SLOT_ALIGN, 0);
                assert_eq!((l.image_pa, l.reserve), (l.placed.phys, 6 * MIB));
                // 64 MiB less the shim's 2 MiB and the FDT's block: 26 slots of 6 MiB.
                assert_eq!(l.placed.phys_slots, 26);
                assert_eq!(l.placed.bits, 4);
                let slot = Range::from_base_size(l.placed.phys, 6 * MIB).unwrap();
                let fdt = Range::from_base_size(l.fdt_pa, l.fdt.len() as u64).unwrap();
                assert!(!slot.overlaps(&fdt));
                for (range, label) in avoid().iter() {
                    assert!(!slot.overlaps(&range) && !fdt.overlaps(&range), "{label}");
                }
                l.verify(digest::portable).unwrap();
                assert_eq!(
                    fake.read(Range::from_base_size(l.image_pa, img.len() as u64).unwrap()),
                    &img[..]
                );
                assert!(fake.lines.iter().any(|line| line.starts_with(&format!(
                    "placed pa={:#x} size=0x600000 slots=26",
                    l.image_pa
                ))));
                seen.insert(l.placed.phys);
            }
            assert!(seen.len() >= 6, "{seen:?}");
        }
    }

    #[test]
    fn a_linux_image_changed_after_unpacking_fails_verification() {
        let img = arm64_image(0, 4 * MIB, 0b1010, MIB as usize);
        let c = container::pack(Format::LinuxArm64Image, container::Compression::None, &img);
        let mut fake = Fake::new();
        let l = linux(&mut fake, &c, b"", 3, None).unwrap();
        let at = (l.image_pa - RAM_BASE + 100) as usize;
        // SAFETY: inside the leaked buffer; nothing else holds this byte.
        unsafe { *fake.ram.add(at) ^= 1 };
        assert!(matches!(
            l.verify(digest::portable),
            Err(BootError::Container(ContainerError::DigestMismatch { .. }))
        ));
    }

    #[test]
    fn linux_placement_rules() {
        // Flag bit 3 clear: the lowest slot above the shim, and the shim says why.
        let low = arm64_image(0x8_0000, 4 * MIB, 0b0010, MIB as usize);
        let c = container::pack(Format::LinuxArm64Image, container::Compression::Zlib, &low);
        let mut fake = Fake::new();
        let l = linux(&mut fake, &c, b"", 1, None).unwrap();
        assert_eq!(
            (l.placed.phys, l.image_pa),
            (RAM_BASE + 2 * MIB, RAM_BASE + 2 * MIB + 0x8_0000)
        );
        assert!(fake
            .lines
            .iter()
            .any(|line| line.contains("physical randomization is off")));
        // image_size 0: a pre-3.17 kernel, 16 MiB reserved at 0x80000, and a message.
        let legacy = arm64_image(0, 0, 0, MIB as usize);
        let c = container::pack(
            Format::LinuxArm64Image,
            container::Compression::Zlib,
            &legacy,
        );
        let mut fake = Fake::new();
        let l = linux(&mut fake, &c, b"", 1, None).unwrap();
        // 16.5 MiB does not fit below the FDT at +8 MiB: the lowest slot is after it.
        assert_eq!(
            (l.image_pa, l.reserve),
            (RAM_BASE + 10 * MIB + 0x8_0000, 16 * MIB)
        );
        assert!(fake.lines.iter().any(|line| line.contains("before v3.17")));
        // nokaslr: lowest, said once.
        let img = arm64_image(0, 4 * MIB, 0b1010, MIB as usize);
        let c = container::pack(Format::LinuxArm64Image, container::Compression::Zlib, &img);
        let mut fake = Fake::new();
        let l = linux(&mut fake, &c, b"nokaslr", 1, None).unwrap();
        assert_eq!(
            (l.placed.phys, l.placed.mode),
            (RAM_BASE + 2 * MIB, Mode::Lowest)
        );
        assert!(fake.lines.iter().any(|line| line.starts_with("nokaslr")));
        // An ELF container is not a Linux Image, and a Linux container is not an ELF.
        let elf = payload();
        let ce = container(&elf);
        assert!(matches!(
            linux(&mut Fake::new(), &ce, b"", 1, None),
            Err(BootError::Format(Format::Elf64Dyn))
        ));
        let e = load(&mut Fake::new(), inputs(&c, b"", 1), &mut Inflater::new())
            .err()
            .unwrap();
        assert_eq!(e, BootError::Format(Format::LinuxArm64Image));
        // A corrupt header is refused before anything is placed.
        let mut bad = img.clone();
        bad[0x38] = b'X';
        let c = container::pack(Format::LinuxArm64Image, container::Compression::Zlib, &bad);
        assert!(matches!(
            linux(&mut Fake::new(), &c, b"", 1, None),
            Err(BootError::Image(_))
        ));
    }

    #[test]
    fn kernel_seeds_are_fresh_labelled_and_never_zero() {
        let img = arm64_image(0, 4 * MIB, 0b1010, MIB as usize);
        let c = container::pack(Format::LinuxArm64Image, container::Compression::Zlib, &img);
        let mut fake = Fake::new();
        let mut l = linux(&mut fake, &c, b"", 1, None).unwrap();
        let a = l.seeds(&mut fake);
        let b = l.seeds(&mut fake);
        assert_ne!(a.kaslr, [0; 8]);
        assert_ne!(a.kaslr, b.kaslr);
        assert_ne!(a.rng, b.rng);
        assert!(!a.rng.windows(8).any(|w| w == a.kaslr));
    }

    #[test]
    fn counter_only_entropy_is_weak_in_words_and_numbers() {
        let elf = payload();
        let c = container(&elf);
        let counter_only = |cmdline: &[u8]| {
            let mut i = inputs(&c, cmdline, 1);
            i.entropy = Mixer::new();
            i.entropy.add(Source::Counter, &12345u64.to_le_bytes());
            i
        };
        let mut fake = Fake::new();
        let loaded = load(
            &mut fake,
            counter_only(b"shim.verbose"),
            &mut Inflater::new(),
        )
        .unwrap();
        let info = loaded.info;
        assert_eq!((info.entropy_strong, info.kaslr_bits), (0, 0));
        assert_eq!(info.virt_bits, 25);
        assert!(info.phys_bits > 0 && info.fixed == 0);
        assert!(fake
            .lines
            .iter()
            .any(|l| l.starts_with("warning: no strong entropy")));
        assert!(fake
            .lines
            .iter()
            .any(|l| l.contains("entropy=0 sources=counter")));
        // shim.weak=fixed: no randomization at all on such a boot...
        let mut fake = Fake::new();
        let loaded = load(
            &mut fake,
            counter_only(b"shim.weak=fixed"),
            &mut Inflater::new(),
        )
        .unwrap();
        assert_eq!((loaded.placed.mode, loaded.info.fixed), (Mode::Lowest, 1));
        assert!(fake
            .lines
            .iter()
            .any(|l| l.starts_with("shim.weak=fixed and no strong entropy")));
        // ...but a strong source still randomizes under it.
        let loaded = load(
            &mut Fake::new(),
            inputs(&c, b"shim.weak=fixed", 1),
            &mut Inflater::new(),
        )
        .unwrap();
        assert_eq!(loaded.placed.mode, Mode::Random);
        assert_eq!(loaded.info.kaslr_bits, loaded.info.phys_bits + 25);
    }

    #[test]
    fn more_memmaps_than_kept_turns_randomization_off_and_says_so() {
        let elf = payload();
        let c = container(&elf);
        let line: Vec<u8> = (0..17)
            .flat_map(|i| format!("memmap=4K${:#x} ", 0x7000_0000 + i * 0x1000).into_bytes())
            .collect();
        let mut fake = Fake::new();
        let loaded = load(&mut fake, inputs(&c, &line, 1), &mut Inflater::new()).unwrap();
        assert_eq!(loaded.placed.mode, Mode::Lowest);
        assert!(fake
            .lines
            .iter()
            .any(|l| l.starts_with("more than 16 memmap= entries")));
    }
}
