//! The arm64 shim: reads the machine from the device tree, places the payload at a
//! random 2 MiB-aligned physical slot and virtual base, verifies, loads, relocates and
//! maps it, and jumps. Every rule is in shim-common; this is the glue around it.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

mod console;
mod cpu;
mod mmu;
mod sha256;

use core::fmt;

use shim_common::boot::{self, BootError, Perm, Platform};
use shim_common::cmdline::{self, CmdlineError, Options};
use shim_common::container::Format;
use shim_common::digest::Engine;
use shim_common::elf;
use shim_common::entropy::{self, Health, Mixer, Source};
use shim_common::fdt::edit::{self, Edit};
use shim_common::fdt::{self, FdtError, Machine};
use shim_common::image;
use shim_common::layout::{self, MemLimit};
use shim_common::memmap::{MemError, MemoryMap, Range};
use shim_common::plan::ARM64_WINDOW;
use shim_rt::phys;

use crate::mmu::{Attr, MmuError, Pool};

core::arch::global_asm!(include_str!("entry.S"));
core::arch::global_asm!(include_str!("vectors.S"));
core::arch::global_asm!(include_str!("handoff.S"));

/// booting.rst: "The device tree blob (dtb) must be placed on an 8-byte boundary and
/// must not exceed 2 megabytes in size."
const FDT_MAX: u64 = 2 << 20;
/// The longest bootargs the shim hands on (with their NUL): arm64 Linux's
/// COMMAND_LINE_SIZE is 2048 (4096 since v6.2).
const BOOTARGS_MAX: usize = 4096;

extern "C" {
    /// End of the shim's own image (bss and stack included): the container starts here.
    static __image_end: u8;
    /// Start of the data entry.S's relocations write (linker.ld: nothing before it).
    static __data_start: u8;
    /// End of .bss, which entry.S zeroed; .noinit and the stack follow.
    static __bss_end: u8;
}

/// Microseconds since the shim was entered.
fn since_entry_us() -> u64 {
    us(cpu::counter().wrapping_sub(shim_rt::entry_ticks()))
}

/// Microseconds from the counter's zero (the machine's reset, on QEMU) to the shim's
/// entry: what the firmware and the loader took.
fn entry_us() -> u64 {
    us(shim_rt::entry_ticks())
}

fn us(ticks: u64) -> u64 {
    ticks.saturating_mul(1_000_000) / cpu::counter_frequency().max(1)
}

/// Why the shim stopped.
enum Fail {
    Fdt(u64, FdtError),
    Cmdline(CmdlineError),
    Memory(MemError),
    Mmu(MmuError),
    Boot(BootError),
    /// The shim's own stack (this many bytes) overflowed into what lies below it.
    StackOverflow(u64),
    /// The bootargs do not fit the buffer the shim rewrites them in.
    BootargsTooLong(usize),
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fail::Fdt(at, e) => write!(f, "corrupt device tree at {at:#x}: {e}"),
            Fail::Cmdline(e) => write!(f, "bad command line: {e}"),
            Fail::Memory(e) => write!(f, "memory map: {e}"),
            Fail::Mmu(e) => write!(f, "page tables: {e}"),
            Fail::Boot(e) => write!(f, "{e}"),
            Fail::StackOverflow(size) => write!(f, "the shim's {size}-byte stack overflowed"),
            Fail::BootargsTooLong(len) => {
                write!(
                    f,
                    "bootargs of {len} bytes exceed the {BOOTARGS_MAX} the shim passes on"
                )
            }
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
    Memory(MemError),
    Mmu(MmuError),
    Boot(BootError)
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

/// Called by entry.S at EL1, MMU off, relocated, with a stack and zeroed bss;
/// `entry_ticks` is the counter at its first instruction.
#[no_mangle]
extern "C" fn shim_main(
    fdt_pa: u64,
    image_offset: u64,
    base: u64,
    entered_el: u64,
    entry_ticks: u64,
) -> ! {
    shim_rt::mark_entry(entry_ticks);
    // Only the address of the linker symbol is taken (relocated: a runtime address).
    let end = core::ptr::addr_of!(__image_end) as u64 - base;
    // SAFETY: the header's image_size field is at offset 0x10 of our own image.
    let size = unsafe { core::ptr::read_volatile((base + 0x10) as *const u64) };
    let image = Image {
        base,
        end,
        size: size.max(end),
    };
    let slot = (base + image::EARLY_UART_OFFSET as u64) as *const u64;
    // SAFETY: the 16 bytes after the 64-byte header are our own image's (entry.S), two
    // aligned words: with the MMU off, loads must be aligned.
    let slot = unsafe { [0, 1].map(|i| core::ptr::read_volatile(slot.add(i))) };
    if let Some(c) = image::early_uart(slot) {
        console::set_early(c.base, c.uart);
    }
    // SAFETY: called once.
    let mut pool = unsafe { Pool::take() };

    // With the MMU off every access is Device-nGnRnE and must be aligned: before
    // anything else, map ourselves and the device tree as normal memory.
    let fdt_size = early_fdt_size(fdt_pa);
    let mut normal = MemoryMap::new();
    let shim = pages(image.base, image.size);
    let early = normal
        .insert(shim)
        .and_then(|()| match fdt_size {
            Ok(size) => normal.insert(pages(fdt_pa, size)),
            Err(_) => Ok(()),
        })
        .map_err(Fail::Memory)
        .and_then(|()| pool.identity(&normal).map_err(Fail::Mmu));
    // All we wrote with the MMU off: relocated data and the zeroed bss (entry.S), the
    // tables just built, the stack entry.S painted. Not the text and read-only data
    // (entry.S relocates nothing there) nor the rest of .noinit (unused tables, the
    // inflater's state): unwritten, their cache lines cannot be stale.
    let written = [
        Range {
            start: core::ptr::addr_of!(__data_start) as u64,
            end: core::ptr::addr_of!(__bss_end) as u64,
        },
        pool.written(),
        shim_rt::stack(),
    ];
    match early {
        // SAFETY: the table maps our image (code, data, stack) and the FDT as normal
        // memory at their own addresses; `written` covers all we wrote so far.
        Ok(ttbr0) => unsafe { mmu::enable(ttbr0, &written) },
        Err(e) => fail(e),
    }
    let fdt_size = match fdt_size {
        Ok(size) => size,
        Err(e) => fail(Fail::Fdt(fdt_pa, e)),
    };
    match boot(
        &image,
        &mut pool,
        fdt_pa,
        fdt_size,
        image_offset,
        entered_el == 2,
    ) {
        Err(e) => fail(e),
        Ok(never) => match never {},
    }
}

/// Reads the device tree header's magic and totalsize with aligned loads.
fn early_fdt_size(fdt_pa: u64) -> Result<u64, FdtError> {
    if fdt_pa == 0 || !fdt_pa.is_multiple_of(8) {
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

/// The pages `[start, start + len)` touches.
fn pages(start: u64, len: u64) -> Range {
    let page = layout::PAGE;
    Range {
        start: start & !(page - 1),
        end: start.saturating_add(len).saturating_add(page - 1) & !(page - 1),
    }
}

enum Never {}

fn boot(
    image: &Image,
    pool: &mut Pool,
    fdt_pa: u64,
    fdt_size: u64,
    image_offset: u64,
    at_el2: bool,
) -> Result<Never, Fail> {
    // SAFETY: the early map covers the device tree as normal memory.
    let fdt_blob = unsafe { phys(fdt_pa, fdt_size) };
    let (machine, seed_offsets) = {
        let fdt = fdt::Fdt::new(fdt_blob).map_err(|e| Fail::Fdt(fdt_pa, e))?;
        // The console first, so that what is wrong with the rest of the tree is said.
        if let Ok(Some(c)) = fdt::stdout(&fdt) {
            console::set(c.base, c.uart);
        }
        let m = Machine::read(&fdt).map_err(|e| Fail::Fdt(fdt_pa, e))?;
        // Where every seed property lies (duplicates too), to wipe them all.
        let mut offsets = SeedPlaces::default();
        for (slot, (value, offset)) in offsets.0.iter_mut().zip(m.seeds()) {
            *slot = (offset, value.len());
        }
        (m, offsets)
    };
    if let Some(len) = machine.bad_kaslr_seed {
        say!("/chosen/kaslr-seed is {len} bytes, not 8: ignored, as Linux does");
    }
    let opts = cmdline::parse(machine.bootargs)?;
    // What Linux will see: the bootargs without our options (with room for the NUL).
    let mut args = [0u8; BOOTARGS_MAX];
    let bootargs = cmdline::without_shim_options(machine.bootargs, &mut args[..BOOTARGS_MAX - 1])
        .map(|len| &args[..len + 1])
        .ok_or(machine.bootargs.len());

    // What must survive, what the identity map makes normal, what may be handed out:
    // one answer from common::layout. RAM beyond the identity map's reach is clipped.
    let layout = layout::compose(
        &layout::Machine {
            ram: &machine.ram,
            reserved: &machine.reserved,
            no_map: &machine.no_map,
            shim: Range::from_base_size(image.base, image.size)?,
            handoff: Range::from_base_size(fdt_pa, fdt_size)?,
            initrd: machine.initrd,
            mapped_limit: mmu::IDENTITY_LIMIT,
            mem_limit: MemLimit::Amount,
        },
        &opts,
    )?;
    if let Some(note) = layout.clipped_note() {
        say!("{note}");
    }
    mmu::switch_ttbr0(pool.identity(&layout.normal)?);

    // The SHA-256 block function for everything this boot hashes (`shim.sha256=`).
    let engine = boot::sha256_engine(&opts, sha256::instructions, sha256::SOFTWARE);
    // Entropy: firmware seeds, the CPU's RNG, the counter.
    let mut entropy = Mixer::with(engine.compress);
    if let Some((seed, _)) = machine.kaslr_seed {
        entropy.add(Source::KaslrSeed, &seed.to_be_bytes());
    }
    if let Some((seed, _)) = machine.rng_seed {
        entropy.add(Source::RngSeed, seed);
    }
    for (seed, _) in machine.other_seeds() {
        entropy.add(Source::RngSeed, seed);
    }
    let samples = [(); entropy::HEALTH_SAMPLES].map(|()| cpu::rndr());
    match entropy.add_checked(Source::CpuRng, &samples) {
        Health::Absent | Health::Good => {}
        bad => say!("RNDR failed its health check ({bad}): not counted"),
    }
    entropy.add(Source::Counter, &cpu::counter().to_le_bytes());

    // SAFETY: the container (image.end..image.size) lies inside our own image, mapped.
    let container = unsafe { phys(image.base + image.end, image.size - image.end) };
    let inputs = boot::Inputs {
        ram: machine.ram,
        avoid: layout.avoid,
        usable: layout.usable,
        opts,
        container,
        arch: elf::Machine::Aarch64,
        window: ARM64_WINDOW,
        loader_offset: image_offset,
        entropy,
        handoff: fdt_pa,
        shim: Range::from_base_size(image.base, image.size)?,
    };
    let entered = Entered {
        initrd: machine.initrd,
        fdt_blob,
        seed_offsets,
        bootargs,
        at_el2,
        sha256: engine,
    };
    match boot::payload_format(container)? {
        Format::LinuxArm64Image => boot_linux(inputs, entered),
        _ => boot_elf(pool, inputs, entered),
    }
}

/// (offset, length) of each seed property in the firmware's tree; (0, 0) unused.
#[derive(Default)]
struct SeedPlaces([(usize, usize); 10]);

/// What the loader handed over that the handoff still needs.
struct Entered<'a> {
    fdt_blob: &'static mut [u8],
    /// Where the firmware's seeds lie in the blob, to wipe them.
    seed_offsets: SeedPlaces,
    /// The bootargs Linux gets, NUL-terminated, or the length of ones too long.
    bootargs: Result<&'a [u8], usize>,
    initrd: Option<Range>,
    at_el2: bool,
    /// The SHA-256 block function the boot hashes with.
    sha256: Engine,
}

fn boot_elf(
    pool: &mut Pool,
    inputs: boot::Inputs<'_>,
    entered: Entered<'_>,
) -> Result<Never, Fail> {
    let verbose = inputs.opts.verbose;
    // SAFETY: the one call this boot (the Linux path makes the other).
    let inflater = unsafe { shim_rt::inflate_state() };
    let mut platform = Arm64 {
        sha256: entered.sha256,
    };
    let loaded = boot::load(&mut platform, inputs, inflater)?;
    check_stack(verbose)?;

    let root = pool.root()?;
    for (va, pa, len, perm) in loaded.pages() {
        let attr = match perm {
            Perm::Text => Attr::Text,
            Perm::ReadOnly => Attr::ReadOnly,
            Perm::Data => Attr::Data,
        };
        pool.map_pages(root, va, pa, len, attr)?;
    }
    // The payload must not learn what chose its placement (Linux wipes them too).
    fdt::wipe_seeds(entered.fdt_blob, entered.seed_offsets.0);

    // Instruction fetch must see the text as written; data is read through the same
    // cacheable attributes it was written with, so it needs nothing.
    for (_, pa, len, perm) in loaded.pages() {
        if perm == Perm::Text {
            cpu::clean_dcache_pou(pa, len);
        }
    }
    cpu::invalidate_icache();
    mmu::enter_ttbr1(root);
    // The last step before the jump: the block read through the same cacheable map.
    let (info_pa, total) = shim_rt::store_boot_info(loaded.info, cpu::counter());
    if verbose {
        say!("timing total={}us entry={}us", us(total), entry_us());
    }
    console::flush();
    let fdt_pa = entered.fdt_blob.as_ptr() as u64;
    // SAFETY: the payload is verified, loaded, relocated for its virtual base and
    // mapped executable there; the handoff is the documented x0 = FDT, x1 = boot info.
    unsafe { cpu::jump(loaded.entry, fdt_pa, info_pa) }
}

/// A Linux Image: placed and inflated by `boot::load_linux_arm64`, handed a rebuilt
/// device tree (fresh seeds, bootargs without `shim.*`), verified in place, and entered
/// as booting.rst asks.
fn boot_linux(inputs: boot::Inputs<'_>, entered: Entered<'_>) -> Result<Never, Fail> {
    let opts: Options = inputs.opts;
    let mut platform = Arm64 {
        sha256: entered.sha256,
    };
    let bootargs = entered.bootargs.map_err(Fail::BootargsTooLong)?;
    let room = {
        let old = fdt::Fdt::new(entered.fdt_blob).map_err(|e| Fail::Fdt(0, e))?;
        let sizes = [
            Edit::Set("bootargs", bootargs),
            Edit::Set("kaslr-seed", &[0; 8]),
            Edit::Set("rng-seed", &[0; 64]),
        ];
        edit::rebuilt_size(&old, &sizes) as u64
    };
    let mut loaded = boot::load_linux_arm64(
        &mut platform,
        inputs,
        entered.initrd,
        room,
        // SAFETY: the one call this boot (the ELF path makes the other).
        unsafe { shim_rt::inflate_state() },
    )?;

    // The tree Linux gets: fresh seeds (no kaslr-seed under nokaslr: Linux would
    // neither read nor wipe it), and our options gone from bootargs.
    let seeds = loaded.seeds(&mut platform);
    let kaslr = match opts.nokaslr {
        true => Edit::Remove("kaslr-seed"),
        false => Edit::Set("kaslr-seed", &seeds.kaslr),
    };
    let edits = [
        Edit::Set("bootargs", bootargs),
        kaslr,
        Edit::Set("rng-seed", &seeds.rng),
    ];
    let new_size = {
        let old = fdt::Fdt::new(entered.fdt_blob).map_err(|e| Fail::Fdt(0, e))?;
        edit::rebuild(&old, &edits, loaded.fdt).map_err(|e| Fail::Fdt(loaded.fdt_pa, e))?
    };
    drop(seeds);
    // booting.rst: "must not exceed 2 megabytes in size".
    if new_size as u64 > FDT_MAX {
        return Err(Fail::Fdt(loaded.fdt_pa, FdtError::BadHeader("totalsize")));
    }
    // The firmware's copies of its seeds: wiped, since the old tree stays in RAM.
    fdt::wipe_seeds(entered.fdt_blob, entered.seed_offsets.0);
    if opts.verbose {
        say!(
            "device tree rebuilt at {:#x} ({new_size} bytes)",
            loaded.fdt_pa
        );
    }
    check_stack(opts.verbose)?;

    // Right before the jump: the Image must be exactly what was packed.
    let t0 = since_entry_us();
    let sha256 = platform.sha256();
    let zeros = loaded.verify(sha256.compress)?;
    let t1 = since_entry_us();
    cpu::clean_dcache_poc(loaded.image_pa, loaded.reserve);
    cpu::clean_dcache_poc(loaded.fdt_pa, new_size as u64);
    let old = entered.fdt_blob.as_ptr() as u64;
    cpu::clean_dcache_poc(old, entered.fdt_blob.len() as u64);
    if opts.verbose {
        // The total ends at the jump; this line writes nothing Linux reads.
        let total = since_entry_us();
        say!(
            "timing verify={}us zeros={zeros} sha256={} clean={}us total={total}us entry={}us; entering Linux at EL{}",
            t1 - t0,
            sha256.name,
            total - t1,
            entry_us(),
            if entered.at_el2 { 2 } else { 1 }
        );
    }
    console::flush();
    // SAFETY: the Image is verified in its slot and, like the device tree, cleaned to
    // the PoC; the shim runs identity-mapped; nothing on its stack is needed again.
    unsafe { cpu::enter_linux(loaded.image_pa, loaded.fdt_pa, entered.at_el2) }
}

/// Memory, console and SHA-256 for the shared boot sequence.
struct Arm64 {
    sha256: Engine,
}

impl Platform for Arm64 {
    fn memory(&mut self, range: Range) -> &'static mut [u8] {
        // SAFETY: the final identity map covers all RAM as normal memory, and the
        // sequence asks only for free ranges it chose, each once (boot::Platform).
        unsafe { phys(range.start, range.len()) }
    }

    fn say(&mut self, line: fmt::Arguments<'_>) {
        console::line(line);
    }

    fn ticks(&mut self) -> u64 {
        cpu::counter()
    }

    fn ticks_per_second(&self) -> u64 {
        cpu::counter_frequency()
    }

    fn sha256(&self) -> Engine {
        self.sha256
    }

    fn zero(&mut self, bytes: &mut [u8]) {
        // The ranges `memory` hands out are Normal memory in the final identity map.
        cpu::zero(bytes);
    }

    fn fresh_entropy(&mut self) -> [u64; 3] {
        [
            cpu::rndr().unwrap_or(0),
            cpu::rndr().unwrap_or(0),
            cpu::counter(),
        ]
    }
}

/// The stack check (shim-rt), its figure on the console.
fn check_stack(verbose: bool) -> Result<(), Fail> {
    shim_rt::check_stack(verbose, console::line).map_err(Fail::StackOverflow)
}

fn fail(e: Fail) -> ! {
    say!("error: {e}");
    console::flush();
    cpu::halt()
}

/// Called by vectors.S for any exception taken to EL1: `index` is the vector entry
/// (0-3 current EL with SP_EL0, 4-7 with SP_ELx, 8-15 lower ELs; sync, IRQ, FIQ, SError).
#[no_mangle]
extern "C" fn exception(index: u64, esr: u64, elr: u64, far: u64) -> ! {
    const KINDS: [&str; 4] = ["synchronous", "IRQ", "FIQ", "SError"];
    let kind = KINDS.get(index as usize % 4).copied().unwrap_or("?");
    say!(
        "error: {kind} exception (vector {index}) ESR_EL1={esr:#x} (EC {:#x}) ELR_EL1={elr:#x} FAR_EL1={far:#x}",
        esr >> 26
    );
    console::flush();
    cpu::halt()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    say!("panic: {info}");
    console::flush();
    cpu::halt()
}
