//! The x86_64 Linux boot sequence: the shim does the kernel's own KASLR. It decodes
//! the bzImage's compressed kernel straight into a physical slot drawn uniformly over
//! all RAM, lays out vmlinux and draws an independent virtual base; right before the
//! jump it checks the laid-out kernel against the container's digest, then relocates.

use crate::container::{self, Format, Inflater};
use crate::entropy::Rng;
use crate::memmap::Range;
use crate::plan::{self, Mode, Placement};
use crate::slot::{self, SlotError};
use crate::x86_linux::{self, BzImage};

use super::{fresh, report, say_mode, weak_fixed, Bits, BootError, Duration, Inputs, Platform};
use super::{KernelSeeds, SourceNames};

/// boot_params and the command line go below 4 GiB, where every loader puts them.
const PARAMS_BELOW: u64 = 1 << 32;
/// boot.rst: the 64-bit entry is the protected-mode part's start + 0x200.
const ENTRY_64: u64 = 0x200;

/// A Linux x86_64 kernel decoded and laid out in its slot, not yet relocated or entered.
pub struct LoadedLinuxX86<'a> {
    /// `phys` is the kernel's physical base (its `_text`), `virt` its `_text` address.
    pub placed: Placement,
    /// The bzImage as packed: its setup header goes into the new boot_params.
    pub bz: BzImage<'a>,
    /// startup_64, physical (the shim enters it through the identity map).
    pub entry_pa: u64,
    /// What the kernel owns from `placed.phys` on: the image, its bss and the
    /// decompressor's working room (`needed_size`).
    pub slot: Range,
    /// Whether both draws were random, so Linux's KASLR_FLAG is set.
    pub kaslr: bool,
    /// Free memory for boot_params, the command line and the seed node: clear of the
    /// slot and below 4 GiB.
    pub params: &'static mut [u8],
    pub params_pa: u64,
    /// The slot's bytes: the kernel decoded and laid out, or (`None`) the protected-mode
    /// part copied to its start, for Linux's own decompressor.
    buf: &'static mut [u8],
    decoded: Option<Decoded>,
    verbose: bool,
    /// The container: its digest of what the check covers ([`linux_x86_digest`]) and
    /// that message's zero runs.
    payload: container::Payload<'a>,
    rng: Rng,
}

/// vmlinux decoded and laid out in the slot, relocated for `delta` at the jump.
#[derive(Clone, Copy)]
struct Decoded {
    laid: LaidOut,
    delta: u64,
    layout: x86_linux::RelocLayout,
}

/// vmlinux decoded into `buf[..output_len]` of a slot and laid out there by p_paddr,
/// its relocation table after the ELF file.
#[derive(Clone, Copy)]
struct LaidOut {
    output_len: usize,
    vm: x86_linux::Vmlinux,
}

impl LaidOut {
    /// The slot's bytes [`linux_x86_digest`] covers: the image to its file end, then
    /// the relocation table (from the ELF file's end to the output's).
    fn parts<'b>(&self, buf: &'b [u8]) -> Result<[&'b [u8]; 2], BootError> {
        let at = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let image = buf.get(..at(self.vm.file_end()));
        let relocs = buf.get(at(self.vm.elf_len())..self.output_len);
        match (image, relocs) {
            (Some(image), Some(relocs)) => Ok([image, relocs]),
            _ => Err(BootError::KernelTooLarge),
        }
    }
}

impl LoadedLinuxX86<'_> {
    /// The kernel's seed (SETUP_RNG_SEED), with its own label and fresh platform
    /// entropy, so it reveals neither draw nor the key behind them.
    pub fn seeds(&mut self, platform: &mut impl Platform) -> KernelSeeds {
        let mut seeds = KernelSeeds {
            kaslr: [0; 8],
            rng: [0; 64],
        };
        self.rng
            .derive("linux rng-seed", &fresh(platform), &mut seeds.rng);
        seeds
    }

    /// Called right before the jump: checks the setup code and the slot against the
    /// container's digest (kexec purgatory's rule), then applies the kernel's
    /// relocations, the last write before the jump (Linux's own decompressor, where it
    /// runs, relocates for itself).
    pub fn verify_and_relocate(&mut self, platform: &mut impl Platform) -> Result<(), BootError> {
        let t0 = platform.ticks();
        let parts = match self.decoded {
            Some(d) => d.laid.parts(self.buf)?,
            None => [
                self.buf.get(..self.bz.protected.len()).unwrap_or_default(),
                &[],
            ],
        };
        let compress = platform.sha256_compress();
        let zeros =
            container::check_digest(&self.payload, &message(self.bz.setup, parts), compress)?;
        let t1 = platform.ticks();
        let relocated = match self.decoded {
            Some(d) => {
                let (laid, layout) = (d.laid, d.layout);
                let r = x86_linux::relocate(self.buf, laid.output_len, &laid.vm, d.delta, layout)?;
                Some((r, layout))
            }
            None => None,
        };
        if self.verbose {
            let (t2, hz) = (platform.ticks(), platform.ticks_per_second());
            let verify = Duration(t1.wrapping_sub(t0), hz);
            match relocated {
                Some((r, layout)) => platform.say(format_args!(
                    "timing verify={verify} zeros={zeros} relocate={} ({} relocations, {layout:?})",
                    Duration(t2.wrapping_sub(t1), hz),
                    r.rel32.saturating_add(r.rel32neg).saturating_add(r.rel64),
                )),
                None => platform.say(format_args!("timing verify={verify} zeros={zeros}")),
            }
        }
        Ok(())
    }
}

/// The digest a bzImage's container records: SHA-256 of what the shim runs from it,
/// as it lies right before relocation. That is the setup code (the first
/// `(setup_sects + 1) * 512` bytes: boot_params takes their header), then, for a kernel
/// the shim decodes, vmlinux laid out in its slot up to its file end and its relocation
/// table; for one left to Linux's decompressor, the protected-mode part, so the digest
/// of the file. xtask packs it ([`crate::container::pack_stored`]); the shim checks it
/// right before the jump, which no digest of the relocated bytes could allow: they
/// depend on the virtual draw.
#[cfg(any(test, feature = "alloc"))]
pub fn linux_x86_digest(file: &[u8]) -> Result<crate::digest::Hashed, BootError> {
    let bz = x86_linux::parse_bzimage(file)?;
    let digest = |slot| container::hashed(&message(bz.setup, slot));
    if !x86_linux::decodes(bz.compression) {
        return Ok(digest([bz.protected, &[]]));
    }
    let slot = usize::try_from(x86_linux::slot_size(&bz)).map_err(|_| BootError::KernelTooLarge)?;
    let mut buf = alloc::vec![0u8; slot];
    let laid = lay_out(&bz, &mut buf, &mut alloc::boxed::Box::<Inflater>::default())?;
    Ok(digest(laid.parts(&buf)?))
}

/// What [`linux_x86_digest`] hashes, in order: the setup code, then the slot's parts.
fn message<'b>(setup: &'b [u8], slot: [&'b [u8]; 2]) -> [&'b [u8]; 3] {
    [setup, slot[0], slot[1]]
}

/// Decodes the kernel into `buf` (its slot) and lays vmlinux out there by p_paddr, as
/// Linux's decompressor does before it relocates.
fn lay_out(
    bz: &BzImage<'_>,
    buf: &mut [u8],
    inflater: &mut Inflater,
) -> Result<LaidOut, BootError> {
    let output_len = x86_linux::decompress(bz, buf, inflater)?;
    let vm = x86_linux::parse_vmlinux(buf.get(..output_len).unwrap_or_default())?;
    if x86_linux::needed_size(bz, &vm) > buf.len() as u64 {
        return Err(BootError::KernelTooLarge);
    }
    x86_linux::place_segments(buf, output_len, &vm)?;
    Ok(LaidOut { output_len, vm })
}

/// Places, decodes and relocates the bzImage's kernel; `params_room` bytes are found
/// for what the kernel is handed. The initrd and every setup_data node are in the
/// avoid list already.
pub fn load_linux_x86<'a>(
    platform: &mut impl Platform,
    inputs: Inputs<'a>,
    params_room: u64,
    inflater: &mut Inflater,
) -> Result<LoadedLinuxX86<'a>, BootError> {
    let (sources, strong) = (inputs.entropy.sources(), inputs.entropy.strong());
    let mut rng = inputs.entropy.finish();
    let payload = container::parse(inputs.container)?;
    if payload.format != Format::LinuxX86BzImage || payload.unpacked_size == 0 {
        return Err(BootError::Format(payload.format));
    }
    // Stored as it is, and read before its digest is checked: the digest covers what
    // the shim makes of it (decoded and laid out), checked right before the jump.
    let bz = x86_linux::parse_bzimage(payload.packed)?;

    // Before decoding, the room is bounded by the header: init_size covers the kernel
    // with its bss (header.S), the decoded length its relocation table.
    let align = bz.kernel_alignment.max(x86_linux::MIN_KERNEL_ALIGN);
    let needed = x86_linux::slot_size(&bz);
    if needed == 0 {
        return Err(BootError::KernelTooLarge);
    }
    // Never below LOAD_PHYSICAL_ADDR (the header's pref_address), as Linux's own
    // decompressor never runs the kernel lower (compressed/head_64.S).
    let req = slot::Request {
        size: needed,
        align,
        min_addr: bz.pref_address,
        max_end: u64::MAX,
    };
    let fixed =
        inputs.opts.nokaslr || inputs.opts.memmap_overflow || weak_fixed(&inputs.opts, strong);
    let placed = plan::place_request(&inputs.usable, &req, 0, None, fixed, 0, &mut rng)
        .inspect_err(|_| {
            report(
                platform,
                "the Linux kernel",
                needed,
                &inputs.ram,
                &inputs.avoid,
                &inputs.usable,
            )
        })?;
    say_mode(platform, &placed, &inputs.opts, strong, "kernel");
    let slot = Range::from_base_size(placed.phys, needed)?;

    // boot_params and the rest: the lowest free pages below 4 GiB clear of the slot.
    let mut rest = inputs.usable;
    rest.remove_lossy(slot);
    let params_req = slot::Request {
        size: params_room.max(1).next_multiple_of(4096),
        align: 4096,
        min_addr: 0,
        max_end: PARAMS_BELOW,
    };
    let params_pa = slot::lowest(&rest, &params_req)
        .ok_or(SlotError::NoSlot)
        .inspect_err(|_| {
            report(
                platform,
                "boot_params",
                params_req.size,
                &inputs.ram,
                &inputs.avoid,
                &rest,
            )
        })?;
    let params = platform.memory(Range::from_base_size(params_pa, params_req.size)?);

    let buf = platform.memory(slot);
    let (decoded, entry_offset, placed, kaslr) = if x86_linux::decodes(bz.compression) {
        let report = Report {
            verbose: inputs.opts.verbose,
            sources,
            strong,
        };
        decode_and_draw(platform, &report, &bz, placed, buf, inflater, &mut rng)?
    } else {
        // A format the shim does not decode: the protected-mode part goes into the
        // slot and is entered at its 64-bit entry (boot.rst: load address + 0x200),
        // so Linux's own decompressor runs there and places the kernel by its rules.
        let len = bz.protected.len();
        buf.get_mut(..len)
            .ok_or(BootError::KernelTooLarge)?
            .copy_from_slice(bz.protected);
        platform.say(format_args!(
            "the kernel is {}-compressed, which the shim does not decode: Linux's own decompressor runs from the slot drawn here and places the kernel by its own rules",
            bz.compression
        ));
        if inputs.opts.verbose {
            platform.say(format_args!(
                "placed pa={:#x} size={needed:#x} phys_slots={} {} sources={} (Linux's decompressor)",
                placed.phys,
                placed.phys_slots,
                Bits::of(&placed, 0, strong),
                SourceNames(sources)
            ));
        }
        (None, ENTRY_64, placed, false)
    };
    let entry_pa = placed
        .phys
        .checked_add(entry_offset)
        .ok_or(BootError::KernelTooLarge)?;
    Ok(LoadedLinuxX86 {
        placed,
        bz,
        entry_pa,
        slot,
        kaslr,
        params,
        params_pa,
        buf,
        decoded,
        verbose: inputs.opts.verbose,
        payload,
        rng,
    })
}

/// What the decode path reports with `shim.verbose`.
struct Report {
    verbose: bool,
    sources: u32,
    strong: bool,
}

/// Decodes the kernel into `buf` (its slot), lays vmlinux out by p_paddr there and
/// draws the virtual offset, for the relocation at the jump. Returns what the slot
/// holds, startup_64's offset in it, the placement with its virtual base, and whether
/// both draws were random.
fn decode_and_draw(
    platform: &mut impl Platform,
    report: &Report,
    bz: &BzImage<'_>,
    placed: Placement,
    buf: &mut [u8],
    inflater: &mut Inflater,
    rng: &mut Rng,
) -> Result<(Option<Decoded>, u64, Placement, bool), BootError> {
    let (sources, strong) = (report.sources, report.strong);
    let needed = buf.len() as u64;
    let align = bz.kernel_alignment.max(x86_linux::MIN_KERNEL_ALIGN);
    let t1 = platform.ticks();
    let laid = lay_out(bz, buf, inflater)?;
    let t2 = platform.ticks();
    let (output_len, vm) = (laid.output_len, laid.vm);
    // The virtual draw, independent of the physical one: uniform over kaslr.c's slots.
    let virt_slots = x86_linux::virt_slots(needed, &vm, align);
    let index = match (placed.mode, virt_slots) {
        (Mode::Random, n) if n > 1 => rng.below(n),
        _ => 0,
    };
    let virt_addr = x86_linux::virt_addr(index, &vm, align).ok_or(BootError::KernelTooLarge)?;
    let delta = virt_addr.wrapping_sub(vm.load_physical_addr());
    // The table's layout changed in v6.15; a kernel whose version we cannot read is
    // told by the table itself.
    let layout = match x86_linux::reloc_layout(bz.version) {
        Some(layout) => layout,
        None => x86_linux::detect_layout(buf, output_len, &vm)?,
    };

    let kaslr = placed.mode == Mode::Random;
    let virt_bits = match kaslr {
        true => virt_slots.max(1).ilog2(),
        false => 0,
    };
    let placed = Placement {
        virt: x86_linux::START_KERNEL_MAP.wrapping_add(virt_addr),
        ..placed
    };
    if report.verbose {
        let hz = platform.ticks_per_second();
        platform.say(format_args!(
            "placed pa={:#x} va={:#x} size={needed:#x} phys_slots={} virt_slots={virt_slots} {} sources={}",
            placed.phys,
            placed.virt,
            placed.phys_slots,
            Bits::of(&placed, virt_bits, strong),
            SourceNames(sources)
        ));
        platform.say(format_args!(
            "timing decode={} ({:?}, {output_len} bytes, laid out) sha256={}",
            Duration(t2.wrapping_sub(t1), hz),
            bz.compression,
            platform.sha256().name,
        ));
    }
    let decoded = Decoded {
        laid,
        delta,
        layout,
    };
    Ok((Some(decoded), vm.entry_offset(), placed, kaslr))
}
