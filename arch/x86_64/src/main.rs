//! The x86_64 shim: reads the machine from boot_params (E820 map, setup_data, command
//! line, initrd), places the payload at a random 2 MiB-aligned physical slot and virtual
//! base, verifies, loads, relocates and maps it, and jumps. Every rule is in shim-common;
//! this is the glue around it.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

mod console;
mod cpu;
mod exceptions;
mod paging;
mod sha256;
mod uart16550;

use core::fmt;

use shim_common::boot::{self, BootError, Duration, Platform};
use shim_common::bootparams::{self, BootParams, BootParamsError, ZeroPage, ZERO_PAGE_SIZE};
use shim_common::cmdline::{self, CmdlineError};
use shim_common::container::Format;
use shim_common::digest::Engine;
use shim_common::elf;
use shim_common::entropy::{self, Health, Mixer, Source};
use shim_common::layout::{self, MemLimit};
use shim_common::memmap::{MemError, MemoryMap, Range};
use shim_common::plan::X86_64_WINDOW;
use shim_rt::phys;

use crate::paging::{Caps, PagingError, Pool};
use x86_64::structures::paging::PageTable;
use zerocopy::FromBytes;

core::arch::global_asm!(include_str!("entry.S"), options(att_syntax));
core::arch::global_asm!(include_str!("setup.S"), options(att_syntax));
core::arch::global_asm!(include_str!("vectors.S"), options(att_syntax));
core::arch::global_asm!(include_str!("handoff.S"), options(att_syntax));

const GIB: u64 = 1 << 30;
/// The identity map reaches at least this far: the 32-bit protocol's whole space, where
/// firmware tables and devices live.
const LOW_4G: u64 = 4 * GIB;
/// Real-mode memory (IVT, BDA, EBDA, the setup part, option ROMs, BIOS): never used.
const FIRST_MIB: Range = Range {
    start: 0,
    end: 1 << 20,
};
/// The longest command line the shim passes on: its header's cmdline_size and the NUL.
const CMDLINE_MAX: usize = 4096;
/// Offset of the packed image size in the protected-mode part's header (entry.S).
const IMAGE_SIZE_OFFSET: u64 = 0x10;

extern "C" {
    /// End of the shim's own image (bss, page tables and stack included): the container
    /// starts here.
    static __image_end: u8;
}

/// Why the shim stopped.
enum Fail {
    BootParams(BootParamsError),
    Cmdline(CmdlineError),
    Memory(MemError),
    Paging(PagingError),
    Boot(BootError),
    /// The shim's own stack (this many bytes) overflowed into what lies below it.
    StackOverflow(u64),
    /// Something the loader pointed at lies outside the identity map (beyond RAM).
    Unmapped(&'static str, u64),
    /// Entered at startup_64 with 5-level paging, loaded at this address above 4 GiB.
    FiveLevel(u64),
    /// The command line (this many bytes) does not fit the shim's buffer.
    CmdlineTooLong(usize),
    /// The room found for boot_params is not a whole zero page.
    ParamsRoom,
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fail::BootParams(e) => write!(f, "{e}"),
            Fail::Cmdline(e) => write!(f, "bad command line: {e}"),
            Fail::Memory(e) => write!(f, "memory map: {e}"),
            Fail::Paging(e) => write!(f, "page tables: {e}"),
            Fail::Boot(e) => write!(f, "{e}"),
            Fail::StackOverflow(size) => write!(f, "the shim's {size}-byte stack overflowed"),
            Fail::Unmapped(what, pa) => write!(f, "{what} at {pa:#x} is outside memory"),
            Fail::ParamsRoom => f.write_str("no room for Linux's boot_params"),
            Fail::CmdlineTooLong(len) => write!(
                f,
                "the command line ({len} bytes) is longer than the shim's {CMDLINE_MAX}"
            ),
            Fail::FiveLevel(base) => write!(
                f,
                "entered with 5-level paging and loaded at {base:#x}, above 4 GiB: \
                 cannot return to 4-level paging there"
            ),
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
    BootParams(BootParamsError),
    Cmdline(CmdlineError),
    Memory(MemError),
    Paging(PagingError),
    Boot(BootError)
);

/// Where the shim itself lies, from its header and linker symbols.
struct Image {
    /// Load address (startup_32, the protected-mode part's first byte).
    base: u64,
    /// Offset of `__image_end`: code, data, bss, page tables and stack.
    end: u64,
    /// The header's image size as xtask packed it: everything, container included.
    size: u64,
}

/// Called by entry.S in long mode, relocated, on our stack, bss zeroed, interrupts off,
/// with the boot_params and load addresses (both physical, identity-mapped), and 1 if
/// still under the loader's 5-level paging (loaded above 4 GiB with CR4.LA57 set), and
/// the TSC at entry.S's first instruction.
#[no_mangle]
extern "C" fn shim_main(boot_params_pa: u64, base: u64, five_level: u64, entry_tsc: u64) -> ! {
    shim_rt::mark_entry(entry_tsc);
    cpu::start_pit_stopwatch();
    console::init();
    exceptions::install();
    if five_level != 0 {
        // entry.S goes back to 4-level paging through startup_32 only below 4 GiB.
        fail(Fail::FiveLevel(base));
    }
    // Only the address of the linker symbol is taken (relocated: a runtime address).
    let end = core::ptr::addr_of!(__image_end) as u64 - base;
    // SAFETY: the header's image size field is at offset 0x10 of our own image.
    let size = unsafe { core::ptr::read_volatile((base + IMAGE_SIZE_OFFSET) as *const u64) };
    let image = Image {
        base,
        end,
        size: size.max(end),
    };
    match boot(&image, boot_params_pa) {
        Err(e) => fail(e),
        Ok(never) => match never {},
    }
}

/// How far the identity map must reach: all RAM, ourselves, boot_params, and at least
/// the low 4 GiB.
fn reach(ram: &MemoryMap, also: &[Range]) -> u64 {
    let top = ram.last().map_or(0, |r| r.end);
    let want = also.iter().fold(top.max(LOW_4G), |acc, r| acc.max(r.end));
    // RAM beyond what one PML4 entry maps is clipped by the layout, not mapped.
    want.min(paging::IDENTITY_LIMIT)
}

enum Never {}

fn boot(image: &Image, bp_pa: u64) -> Result<Never, Fail> {
    let features = cpu::Features::read();
    cpu::enable_nx_wp(&features);
    let caps = Caps {
        nx: features.nx,
        page_1g: features.page_1g,
    };
    // SAFETY: called once.
    let mut pool = unsafe { Pool::take(caps) };

    // boot_params: the loader maps its 4 KiB (boot.rst, 64-bit protocol).
    if bp_pa == 0 {
        return Err(Fail::Unmapped("boot_params", 0));
    }
    let bp_range = Range::from_base_size(bp_pa, ZERO_PAGE_SIZE as u64)?;
    // SAFETY: the loader passed boot_params in %rsi/%esi and maps it; we only read it.
    let bp = BootParams::new(unsafe { phys(bp_pa, ZERO_PAGE_SIZE as u64) })?;
    let mut ram = MemoryMap::new();
    bootparams::ram_from_e820(bp.e820()?, &mut ram)?;

    // Our own identity map, before reading anything else the loader may not have
    // mapped: [0, max(4 GiB, RAM, us, boot_params)), XD except our own code.
    let shim = Range::from_base_size(image.base, image.size)?;
    let code = Range::from_base_size(image.base, image.end)?;
    let pml4 = pool.root()?;
    let mut mapped = reach(&ram, &[shim, bp_range]);
    pool.identity(pml4, mapped, &[code])?;
    // SAFETY: the new map covers our code, stack, data and boot_params, and all RAM.
    unsafe { cpu::load_cr3(paging::pa_of(pml4)) };
    let readable = |mapped: u64, pa: u64, len: u64| {
        let r = Range::from_base_size(pa, len).ok()?;
        // SAFETY: [pa, pa + len) lies in the identity map; it is only read.
        (r.end <= mapped).then(|| &*unsafe { phys(pa, len) })
    };

    // setup_data: E820_EXT nodes add to the memory map, an RNG_SEED node to the
    // entropy; every node, boot_params and the initrd are avoided.
    let machine = bootparams::Machine::read(bp_pa, &bp, |pa, len| readable(mapped, pa, len))?;
    let ram = machine.ram;
    if machine.ram_dropped > 0 {
        say!(
            "the e820 map splits RAM into more ranges than the shim's {}: the smallest, {} KiB, left unused",
            ram.len(),
            machine.ram_dropped >> 10
        );
    }
    let more = reach(&ram, &[]);
    if more > mapped {
        pool.identity(pml4, more, &[code])?;
        // SAFETY: the same tables, grown: everything mapped before still is.
        unsafe { cpu::load_cr3(paging::pa_of(pml4)) };
        mapped = more;
    }
    // Everything the firmware and the loader left that must survive (boot_params is
    // the handoff; the layout adds it and the shim).
    let mut avoid = machine.avoid;
    avoid.push(FIRST_MIB, "first MiB")?;
    // The command line: NUL-terminated, at most cmdline_size bytes before the NUL.
    let cmdline = bootparams::command_line(&bp, |pa, len| {
        readable(mapped, pa, len.min(mapped.saturating_sub(pa)))
    })?;
    let cmdline = match cmdline {
        Some((bytes, range)) => {
            avoid.push(range, "command line")?;
            bytes
        }
        None => &[],
    };
    let opts = cmdline::parse(cmdline)?;

    // The SHA-256 block function for everything this boot hashes (`shim.sha256=`).
    let engine = boot::sha256_engine(&opts, sha256::instructions, sha256::software());
    // Every SETUP_RNG_SEED node is mixed in (and consumed before the handoff).
    let mut entropy = Mixer::with(engine.compress);
    for (seed, _) in machine.rng_seeds() {
        entropy.add(Source::RngSeed, seed);
    }

    // Entropy: the CPU's seed and RNG instructions where CPUID has them, the TSC.
    // Each is health-checked as Linux's x86_init_rdrand does; a failing one is not
    // counted. A read is retried up to 10 times, as Intel's DRNG guide advises.
    let retried = |read: &dyn Fn() -> Option<u64>| (0..10).find_map(|_| read());
    let seed = || retried(&|| cpu::rdseed(&features));
    let rand = || retried(&cpu::rdrand);
    for (source, name, samples) in [
        (
            Source::CpuSeed,
            "RDSEED",
            [(); entropy::HEALTH_SAMPLES].map(|()| seed()),
        ),
        (
            Source::CpuRng,
            "RDRAND",
            [(); entropy::HEALTH_SAMPLES].map(|()| rand()),
        ),
    ] {
        match entropy.add_checked(source, &samples) {
            Health::Absent | Health::Good => {}
            bad => say!("{name} failed its health check ({bad}): not counted"),
        }
    }
    entropy.add(Source::Counter, &cpu::rdtsc().to_le_bytes());

    // What must survive, what may be handed out: one answer from common::layout, with
    // mem= as an address limit (x86) and RAM past the identity map's 512 GiB clipped.
    let layout = layout::compose(
        &layout::Machine {
            ram: &ram,
            reserved: &avoid,
            no_map: &MemoryMap::new(),
            shim,
            handoff: bp_range,
            initrd: None,
            mapped_limit: paging::IDENTITY_LIMIT,
            mem_limit: MemLimit::Address,
        },
        &opts,
    )?;
    if let Some(note) = layout.clipped_note() {
        say!("{note}");
    }

    // SAFETY: the container (image.end..image.size) lies inside our own image, mapped.
    let container = unsafe { phys(image.base + image.end, image.size - image.end) };
    let inputs = boot::Inputs {
        ram,
        avoid: layout.avoid,
        usable: layout.usable,
        opts,
        container,
        arch: elf::Machine::X86_64,
        window: X86_64_WINDOW,
        loader_offset: 0,
        entropy,
        handoff: bp_pa,
        shim,
    };
    let entered = Entered {
        bp: &bp,
        bp_pa,
        cmdline,
        initrd: bp.initrd(),
        seeds: {
            let mut out = [(0, 0); bootparams::MAX_SETUP_DATA_NODES];
            for (slot, (seed, pa)) in out.iter_mut().zip(machine.rng_seeds()) {
                *slot = (pa, seed.len() as u64);
            }
            out
        },
        identity: mapped,
        code,
        sha256: engine,
    };
    match boot::payload_format(container)? {
        Format::LinuxX86BzImage => boot_linux(&mut pool, inputs, entered),
        _ => boot_elf(&mut pool, pml4, inputs, entered),
    }
}

/// What the loader handed over that the handoff still needs.
struct Entered<'a> {
    /// The loader's boot_params: Linux's are built from them.
    bp: &'a BootParams<'a>,
    bp_pa: u64,
    /// The command line as the loader gave it (no NUL).
    cmdline: &'a [u8],
    initrd: Option<Range>,
    /// (node PA, data length) of each SETUP_RNG_SEED node; (0, 0) unused.
    seeds: [(u64, u64); bootparams::MAX_SETUP_DATA_NODES],
    /// The end of the identity map, and the shim's own code in it.
    identity: u64,
    code: Range,
    /// The SHA-256 block function the boot hashes with.
    sha256: Engine,
}

impl Entered<'_> {
    /// The payload must not learn what chose its placement: every seed node is
    /// consumed as Linux's parse_setup_data consumes one, its data and `len` zeroed.
    fn consume_seeds(&self) {
        for &(node_pa, len) in self.seeds.iter().filter(|(pa, _)| *pa != 0) {
            let (len_field, data) = bootparams::consumed_fields(node_pa, len);
            for r in [data, len_field] {
                // SAFETY: the node's fields lie in a setup_data node in the identity
                // map; the walk's references to them are no longer used.
                unsafe { phys(r.start, r.len()) }.fill(0);
            }
        }
    }
}

fn boot_elf(
    pool: &mut Pool,
    pml4: &mut PageTable,
    inputs: boot::Inputs<'_>,
    entered: Entered<'_>,
) -> Result<Never, Fail> {
    let verbose = inputs.opts.verbose;
    // SAFETY: the one call this boot (the Linux path makes the other).
    let inflater = unsafe { shim_rt::inflate_state() };
    let mut platform = X86 {
        sha256: entered.sha256,
    };
    let loaded = boot::load(&mut platform, inputs, inflater)?;
    check_stack(verbose)?;

    for (va, pa, len, perm) in loaded.pages() {
        pool.map_pages(pml4, va, pa, len, perm)?;
    }
    entered.consume_seeds();

    // SAFETY: the payload's pages were added to the tables in use; reloading CR3 drops
    // any stale translation of its range.
    unsafe { cpu::load_cr3(paging::pa_of(pml4)) };
    // The last step before the jump.
    let (info_pa, total) = shim_rt::store_boot_info(loaded.info, cpu::rdtsc());
    if verbose {
        let hz = loaded.info.counter_hz;
        let entry = shim_rt::entry_ticks();
        say!(
            "timing total={} entry={}",
            Duration(total, hz),
            Duration(entry, hz)
        );
    }
    console::flush();
    // SAFETY: the payload is verified, loaded, relocated for its virtual base and
    // mapped executable there; the handoff is rdi = boot info, rsi = boot_params.
    unsafe { cpu::jump(loaded.entry, info_pa, entered.bp_pa) }
}

/// A SETUP_RNG_SEED node: the 16-byte header and the seed.
const SEED_NODE_LEN: usize = 16 + 64;

/// A bzImage: its kernel decoded and laid out by `boot::load_linux_x86`, handed fresh
/// boot_params (the loader's, with the kernel's setup header, our options gone from
/// the command line and a fresh seed), verified and relocated in place, and entered
/// at startup_64 as Linux's own EFI stub does.
fn boot_linux(
    pool: &mut Pool,
    inputs: boot::Inputs<'_>,
    entered: Entered<'_>,
) -> Result<Never, Fail> {
    let opts = inputs.opts;
    let mut platform = X86 {
        sha256: entered.sha256,
    };
    let mut line = [0u8; CMDLINE_MAX];
    let n = cmdline::without_shim_options(entered.cmdline, &mut line)
        .ok_or(Fail::CmdlineTooLong(entered.cmdline.len()))?;
    let cmd_room = (n + 1).next_multiple_of(16);
    let room = (ZERO_PAGE_SIZE + cmd_room + SEED_NODE_LEN) as u64;
    let mut loaded = boot::load_linux_x86(
        &mut platform,
        inputs,
        room,
        // SAFETY: the one call this boot (the ELF path makes the other).
        unsafe { shim_rt::inflate_state() },
    )?;
    let kernel_max = u64::from(loaded.bz.cmdline_max);
    if n as u64 > kernel_max {
        say!("the command line ({n} bytes) is longer than the kernel's {kernel_max}: Linux truncates it");
    }

    // boot_params, then the command line, then the seed node, in one page run.
    let params_pa = loaded.params_pa;
    let cmdline_pa = params_pa + ZERO_PAGE_SIZE as u64;
    let node_pa = cmdline_pa + cmd_room as u64;
    let seeds = loaded.seeds(&mut platform);
    let (zero_page, rest) = loaded.params.split_at_mut(ZERO_PAGE_SIZE);
    let (cmd_area, node_area) = rest.split_at_mut(cmd_room);
    cmd_area.fill(0);
    cmd_area[..n].copy_from_slice(&line[..n]);
    bootparams::write_rng_seed_node(node_area, entered.bp.setup_data(), &seeds.rng)?;
    drop(seeds);
    let zero_page = ZeroPage::mut_from_bytes(zero_page).map_err(|_| Fail::ParamsRoom)?;
    bootparams::build_linux_zero_page(
        zero_page,
        &bootparams::LinuxBootParams {
            loader: *entered.bp,
            kernel_setup: loaded.bz.setup,
            cmd_line_ptr: cmdline_pa,
            initrd: entered.initrd,
            kaslr: loaded.kaslr,
            setup_data: node_pa,
        },
    )?;
    entered.consume_seeds();
    check_stack(opts.verbose)?;

    // Linux's first instructions run from the identity map: the kernel's slot must be
    // executable there, and only what runs is (the shim's code until the jump).
    let root = pool.root()?;
    pool.identity(root, entered.identity, &[entered.code, loaded.slot])?;

    // Right before the jump: the kernel must be what the container's digest says,
    // then it is relocated for its virtual base.
    loaded.verify_and_relocate(&mut platform)?;
    if opts.verbose {
        let (entry, now, hz) = (shim_rt::entry_ticks(), cpu::rdtsc(), cpu::tsc_frequency());
        say!(
            "timing total={} entry={}; entering Linux at {:#x}, boot_params at {params_pa:#x}",
            Duration(now.wrapping_sub(entry), hz),
            Duration(entry, hz),
            loaded.entry_pa
        );
    }
    console::flush();
    // SAFETY: the new tables map all RAM as before, the kernel executable; our code
    // and stack are in them.
    unsafe { cpu::load_cr3(paging::pa_of(root)) };
    // SAFETY: the kernel is decoded, laid out, verified and relocated in its slot;
    // startup_64 takes rsi = boot_params, an identity map, interrupts off.
    unsafe { cpu::jump(loaded.entry_pa, 0, params_pa) }
}

/// Memory, console and SHA-256 for the shared boot sequence.
struct X86 {
    sha256: Engine,
}

impl Platform for X86 {
    fn memory(&mut self, range: Range) -> &'static mut [u8] {
        // SAFETY: the identity map covers all RAM, and the sequence asks only for free
        // ranges it chose, each once (boot::Platform).
        unsafe { phys(range.start, range.len()) }
    }

    fn say(&mut self, line: fmt::Arguments<'_>) {
        console::line(line);
    }

    fn ticks(&mut self) -> u64 {
        cpu::rdtsc()
    }

    fn sha256(&self) -> Engine {
        self.sha256
    }

    fn ticks_per_second(&self) -> u64 {
        cpu::tsc_frequency()
    }

    fn fresh_entropy(&mut self) -> [u64; 3] {
        let features = cpu::Features::read();
        [
            cpu::rdseed(&features).unwrap_or(0),
            cpu::rdrand().unwrap_or(0),
            cpu::rdtsc(),
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

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    say!("panic: {info}");
    console::flush();
    cpu::halt()
}
