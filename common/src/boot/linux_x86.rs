//! The x86_64 Linux boot sequence: the shim does the kernel's own KASLR. It decodes
//! the bzImage's compressed kernel straight into a physical slot drawn uniformly over
//! all RAM, lays out vmlinux, applies the kernel's relocation table for an independent
//! virtual draw, and keeps the relocated image's digest for the check before the jump.

use crate::container::{self, Format, Inflater};
use crate::digest;
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

/// A Linux x86_64 kernel decoded, laid out and relocated in its slot, not yet entered.
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
    /// The relocated image (`_text` to `__bss_start`) and its digest after relocation.
    image: &'static [u8],
    digest: [u8; 32],
    rng: Rng,
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

    /// Hashes the relocated kernel again and compares with the digest taken when
    /// relocation ended: called right before the jump (kexec purgatory's rule). The
    /// relocated bytes depend on the virtual draw, so no digest of them exists before
    /// the boot; the packed bzImage was checked against its own before decoding.
    pub fn verify(&self, compress: digest::Compress) -> Result<(), BootError> {
        let now = digest::sha256(compress, self.image);
        if now != self.digest {
            return Err(BootError::Container(
                container::ContainerError::DigestMismatch {
                    expected: self.digest,
                    actual: now,
                },
            ));
        }
        Ok(())
    }
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
    // Stored as it is: check the bzImage before anything parses it.
    let t0 = platform.ticks();
    container::verify_with(&payload, payload.packed, platform.sha256_compress())?;
    let t1 = platform.ticks();
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
    let (image, entry_offset, placed, kaslr) = if x86_linux::decodes(bz.compression) {
        let report = Report {
            verbose: inputs.opts.verbose,
            sources,
            strong,
            verify_ticks: t1.wrapping_sub(t0),
        };
        decode_and_relocate(platform, &report, &bz, placed, buf, inflater, &mut rng)?
    } else {
        // A format the shim does not decode: the protected-mode part goes into the
        // slot and is entered at its 64-bit entry (boot.rst: load address + 0x200),
        // so Linux's own decompressor runs there and places the kernel by its rules.
        let dest = buf
            .get_mut(..bz.protected.len())
            .ok_or(BootError::KernelTooLarge)?;
        dest.copy_from_slice(bz.protected);
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
        (&*dest, ENTRY_64, placed, false)
    };
    let digest = digest::sha256(platform.sha256_compress(), image);
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
        image,
        digest,
        rng,
    })
}

/// What the decode path reports with `shim.verbose`.
struct Report {
    verbose: bool,
    sources: u32,
    strong: bool,
    /// Ticks spent checking the packed bzImage's digest.
    verify_ticks: u64,
}

/// Decodes the kernel into `buf` (its slot), lays vmlinux out by p_paddr there, draws
/// the virtual offset and relocates for it. Returns the relocated image (`_text` to
/// the end of its file data), startup_64's offset in it, the placement with its
/// virtual base, and whether both draws were random.
fn decode_and_relocate(
    platform: &mut impl Platform,
    report: &Report,
    bz: &BzImage<'_>,
    placed: Placement,
    buf: &'static mut [u8],
    inflater: &mut Inflater,
    rng: &mut Rng,
) -> Result<(&'static [u8], u64, Placement, bool), BootError> {
    let (sources, strong) = (report.sources, report.strong);
    let needed = buf.len() as u64;
    let align = bz.kernel_alignment.max(x86_linux::MIN_KERNEL_ALIGN);
    let t1 = platform.ticks();
    let output_len = x86_linux::decompress(bz, buf, inflater)?;
    let t2 = platform.ticks();
    let vm = x86_linux::parse_vmlinux(buf.get(..output_len).unwrap_or_default())?;
    if x86_linux::needed_size(bz, &vm) > needed {
        return Err(BootError::KernelTooLarge);
    }
    x86_linux::place_segments(buf, output_len, &vm)?;
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
    let relocs = x86_linux::relocate(buf, output_len, &vm, delta, layout)?;
    let t3 = platform.ticks();
    let image: &'static [u8] = buf;
    let image = image
        .get(..usize::try_from(vm.file_end()).unwrap_or(usize::MAX))
        .ok_or(BootError::KernelTooLarge)?;

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
        let phase = |from: u64, to: u64| Duration(to.wrapping_sub(from), hz);
        platform.say(format_args!(
            "placed pa={:#x} va={:#x} size={needed:#x} phys_slots={} virt_slots={virt_slots} {} sources={}",
            placed.phys,
            placed.virt,
            placed.phys_slots,
            Bits::of(&placed, virt_bits, strong),
            SourceNames(sources)
        ));
        platform.say(format_args!(
            "timing verify={} decode={} ({:?}, {output_len} bytes) relocate={} ({} relocations, {layout:?}) sha256={}",
            Duration(report.verify_ticks, hz),
            phase(t1, t2),
            bz.compression,
            phase(t2, t3),
            relocs
                .rel32
                .saturating_add(relocs.rel32neg)
                .saturating_add(relocs.rel64),
            platform.sha256().name,
        ));
    }
    let entry_offset = vm.entry_offset();
    Ok((image, entry_offset, placed, kaslr))
}
