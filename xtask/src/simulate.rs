//! `cargo xtask simulate`: the shim's placement rule run on a real machine's memory
//! map, read from a device tree (`common::fdt::Machine`) or an e820 table
//! (`common::bootparams::ram_from_e820`), with the same map under Linux's own rules
//! (linux_models.rs) beside it, a histogram of draws through `common::slot::choose`,
//! and optionally the whole picture as a standalone SVG.

use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::Args;
use shim_common::arm64_linux::Layout;
use shim_common::bootparams::{ram_from_e820, E820_TYPE_RAM};
use shim_common::cmdline::{self, Options};
use shim_common::entropy::Rng;
use shim_common::fdt::{Fdt, Machine};
use shim_common::image::{Arm64Image, ImageSize, PageSize};
use shim_common::layout::{self, MemLimit};
use shim_common::memmap::{Avoid, MemoryMap, Range};
use shim_common::plan::{VirtWindow, ARM64_WINDOW, SLOT_ALIGN, X86_64_WINDOW};
use shim_common::slot::{self, Request};

use crate::deps::human_size;
use crate::linux_models::{self as lm, Outcomes, GIB, MIB};

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// A device tree blob (arm64): RAM, reserved memory, /memreserve/ and the initrd
    /// come from it, the command line from /chosen/bootargs.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "e820",
        conflicts_with = "e820"
    )]
    pub dtb: Option<PathBuf>,
    /// An e820 map (x86): lines `START END TYPE` or `START-END TYPE` (hex, END
    /// inclusive as Linux prints it, TYPE a number or usable/reserved/...), or Linux's
    /// own `BIOS-e820: [mem 0x...-0x...] usable` lines; `#` starts a comment.
    #[arg(long, value_name = "FILE")]
    pub e820: Option<PathBuf>,
    /// How many slots to draw with common::slot::choose for the histogram.
    #[arg(long, default_value_t = 10_000)]
    pub draws: u64,
    /// Write the map, the slot regions, the rules and the histogram as an SVG here.
    #[arg(long, value_name = "OUT")]
    pub svg: Option<PathBuf>,
    /// Bytes the payload needs, as memparse reads them (0x1ab0000, 27M)
    /// [default: 0x1ab0000, the image_size of Debian's arm64 Image].
    #[arg(long, value_name = "BYTES")]
    pub size: Option<String>,
    /// The command line the shim sees (mem=, memmap=, nokaslr) [default: the device
    /// tree's bootargs, or none].
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub cmdline: Option<String>,
    /// A range the loader used, kept free of the payload, as START-END (END inclusive)
    /// or START+SIZE; may be given more than once (the shim image, the FDT's copy).
    #[arg(long, value_name = "RANGE")]
    pub avoid: Vec<String>,
    /// x86, Linux's rule: where the loader put the kernel (its floor is min(this,
    /// 512 MiB) and [1 MiB, this + size) is avoided).
    #[arg(long, value_name = "ADDR", default_value = "0x1000000")]
    pub load: String,
}

/// Debian 12's arm64 Image: image_size 0x1ab0000.
pub const DEFAULT_SIZE: u64 = 0x1ab_0000;

pub fn run(args: &SimulateArgs) -> Result<()> {
    let size = match &args.size {
        Some(s) => parse_number(s).with_context(|| format!("--size {s}"))?,
        None => DEFAULT_SIZE,
    };
    ensure!(size > 0, "--size must not be 0");
    let load = parse_number(&args.load).with_context(|| format!("--load {}", args.load))?;
    let mut extra = Vec::new();
    for a in &args.avoid {
        extra.push(parse_range(a).with_context(|| format!("--avoid {a}"))?);
    }
    let (input, sim) = match (&args.dtb, &args.e820) {
        (Some(path), _) => {
            let blob = read(path)?;
            (
                path.clone(),
                Sim::from_dtb(&blob, args.cmdline.as_deref(), &extra, size)?,
            )
        }
        (None, Some(path)) => {
            let text = String::from_utf8(read(path)?).context("the e820 file is not text")?;
            let entries = parse_e820(&text)?;
            (
                path.clone(),
                Sim::from_e820(&entries, args.cmdline.as_deref(), &extra, size, load)?,
            )
        }
        (None, None) => bail!("give --dtb FILE or --e820 FILE"),
    };
    let mut rng = Rng::from_key(os_random()?);
    let hist = sim.histogram(args.draws, 20, &mut rng)?;
    print!("{}", sim.text(&hist));
    for (rule, ok, n) in sim.linux_draws(args.draws, &mut rng) {
        println!("model check: {ok} of {n} draws by the {rule} model lie wholly in free memory");
    }
    if let Some(out) = &args.svg {
        let name = input.file_name().map(|n| n.to_string_lossy().into_owned());
        fs::write(out, sim.svg(name.as_deref().unwrap_or("map"), &hist))
            .with_context(|| format!("writing {}", out.display()))?;
        println!("svg: {}", out.display());
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// 32 bytes from the operating system's random source, the Rng's key.
fn os_random() -> Result<[u8; 32]> {
    let mut key = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .context("reading /dev/urandom")?;
    Ok(key)
}

/// A number as Linux memparse reads it (decimal or 0x hex, K/M/G/T suffix).
pub fn parse_number(s: &str) -> Result<u64> {
    match cmdline::parse_size(s.trim().as_bytes()) {
        Some((n, [])) => Ok(n),
        _ => bail!("not a number: {s:?} (decimal or 0x hex, optional K/M/G/T)"),
    }
}

/// `START-END` (END inclusive) or `START+SIZE`.
pub fn parse_range(s: &str) -> Result<Range> {
    if let Some((a, b)) = s.split_once('+') {
        let (start, size) = (parse_number(a)?, parse_number(b)?);
        return Range::from_base_size(start, size).map_err(|e| anyhow!("{e}"));
    }
    let (a, b) = s
        .split_once('-')
        .with_context(|| format!("{s:?} is neither START-END nor START+SIZE"))?;
    let (start, last) = (parse_number(a)?, parse_number(b)?);
    ensure!(last >= start, "{s:?} ends before it starts");
    Ok(Range {
        start,
        end: last.checked_add(1).context("the range ends past 2^64")?,
    })
}

/// An e820 entry as `(addr, size, type)`, what common::bootparams reads.
pub type E820 = (u64, u64, u32);

/// e820 type names as Linux's `e820_print_type` prints them.
fn e820_type(name: &str) -> Option<u32> {
    let name = name.trim();
    Some(match name {
        "usable" => 1,
        "reserved" => 2,
        "ACPI data" => 3,
        "ACPI NVS" => 4,
        "unusable" => 5,
        "soft reserved" => 0xefff_ffff,
        _ => {
            let num = name
                .strip_prefix("persistent (type ")
                .or_else(|| name.strip_prefix("type "))
                .map(|n| n.trim_end_matches(')'))
                .unwrap_or(name);
            return num.parse().ok();
        }
    })
}

fn hex(s: &str) -> Option<u64> {
    let s = s.trim();
    u64::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()
}

/// Reads an e820 table: Linux's `BIOS-e820: [mem 0xSTART-0xEND] TYPE` lines (any
/// prefix, such as dmesg's timestamp, is skipped), or plain `START END TYPE` /
/// `START-END TYPE` lines in hex with END inclusive. Blank lines and `#` comments are
/// skipped; any other line is an error naming its number.
pub fn parse_e820(text: &str) -> Result<Vec<E820>> {
    let mut entries = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let entry = if let Some(at) = line.find("[mem ") {
            let rest = &line[at + 5..];
            let (range, typ) = rest
                .split_once(']')
                .context("no `]`")
                .with_context(|| format!("e820 line {}: {raw}", n + 1))?;
            let (a, b) = range
                .split_once('-')
                .with_context(|| format!("e820 line {}: {raw}", n + 1))?;
            (hex(a), hex(b), e820_type(typ))
        } else {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [range, typ @ ..] if range.contains('-') && !typ.is_empty() => {
                    let (a, b) = range.split_once('-').unwrap_or_default();
                    (hex(a), hex(b), e820_type(&typ.join(" ")))
                }
                [a, b, typ @ ..] if !typ.is_empty() => (hex(a), hex(b), e820_type(&typ.join(" "))),
                _ => (None, None, None),
            }
        };
        match entry {
            (Some(start), Some(last), Some(typ)) if last >= start => {
                let size = (last - start).checked_add(1).context("an entry ends past 2^64")?;
                entries.push((start, size, typ));
            }
            _ => bail!(
                "e820 line {}: {raw:?} is not `START-END TYPE`, `START END TYPE` or a BIOS-e820 line",
                n + 1
            ),
        }
    }
    ensure!(!entries.is_empty(), "the e820 file has no entries");
    Ok(entries)
}

/// One rule's figures.
#[derive(Debug)]
pub struct Rule {
    pub name: &'static str,
    pub what: String,
    pub outcomes: Outcomes,
}

/// The simulated machine: the shim's inputs and what its rule and Linux's make of them.
pub struct Sim {
    pub arch: &'static str,
    pub ram: MemoryMap,
    /// The avoid list, labelled.
    pub avoid: Vec<(Range, String)>,
    pub free: MemoryMap,
    pub req: Request,
    pub size: u64,
    pub opts: Options,
    pub window: VirtWindow,
    /// The shim's slot count (1 with nokaslr).
    pub slots: u64,
    pub rules: Vec<Rule>,
    /// Each free range's slot region: `[first slot, last slot + size)`.
    pub slot_regions: Vec<Range>,
    /// The arm64 EFI stub's conventional memory (the free ranges), or none.
    pub efi_descs: Vec<Range>,
    /// x86 kaslr.c's slot areas, or none.
    pub x86_areas: Vec<lm::SlotArea>,
}

fn parse_opts(cmdline: &[u8]) -> Result<Options> {
    cmdline::parse(cmdline).map_err(|e| anyhow!("command line: {e}"))
}

impl Sim {
    /// From a device tree: what arch/aarch64 reads, and the Linux Image rule
    /// (arm64_linux::Layout) for a kernel of `size` bytes.
    pub fn from_dtb(blob: &[u8], cmdline: Option<&str>, extra: &[Range], size: u64) -> Result<Sim> {
        let fdt = Fdt::new(blob).map_err(|e| anyhow!("device tree: {e}"))?;
        let m = Machine::read(&fdt).map_err(|e| anyhow!("device tree: {e}"))?;
        let opts = parse_opts(cmdline.map_or(m.bootargs, str::as_bytes))?;
        let mut avoid: Vec<(Range, String)> =
            m.reserved.iter().map(|(r, l)| (r, l.to_string())).collect();
        if let Some(initrd) = m.initrd {
            avoid.push((initrd, "initrd".into()));
        }
        avoid.extend(extra.iter().map(|&r| (r, "--avoid".to_string())));
        let dram_base = m.ram.first().map_or(0, |r| r.start) & !(SLOT_ALIGN - 1);
        let image = Arm64Image {
            text_offset: 0,
            image_size: ImageSize::Known(size),
            page_size: PageSize::K4,
            phys_anywhere: true,
            flags: 0xa,
        };
        let req = Layout::new(&image, size)
            .request(dram_base, m.initrd)
            .context("the size overflows")?;
        let mut sim = Sim::new("arm64", m.ram, avoid, req, size, opts, ARM64_WINDOW)?;
        let descs: Vec<Range> = sim.free.iter().collect();
        let efi: u64 = lm::efi_slots(&descs, size).iter().sum();
        sim.efi_descs = descs;
        sim.rules.push(Rule {
            name: "Linux arm64 EFI stub",
            what: "efi_random_alloc: 64 KiB-aligned slots per free descriptor, 32-bit seed, (n * seed) >> 32".into(),
            outcomes: Outcomes::seed32(efi),
        });
        let booti = lm::booti_address(dram_base, dram_base, 0, true);
        sim.rules.push(Rule {
            name: "U-Boot booti",
            what: format!(
                "one address: where the Image was loaded, 2 MiB-aligned (e.g. {booti:#x})"
            ),
            outcomes: Outcomes::uniform(1),
        });
        Ok(sim)
    }

    /// From an e820 table: what arch/x86_64 reads (RAM, the first MiB avoided) and the
    /// shim's ELF rule; Linux's kaslr.c with the kernel loaded at `load`.
    pub fn from_e820(
        entries: &[E820],
        cmdline: Option<&str>,
        extra: &[Range],
        size: u64,
        load: u64,
    ) -> Result<Sim> {
        let mut ram = MemoryMap::new();
        ram_from_e820(entries.iter().copied(), &mut ram).map_err(|e| anyhow!("e820: {e}"))?;
        ensure!(!ram.is_empty(), "the e820 table has no usable RAM");
        let opts = parse_opts(cmdline.unwrap_or_default().as_bytes())?;
        let mut avoid = vec![(Range { start: 0, end: MIB }, "first MiB".to_string())];
        avoid.extend(extra.iter().map(|&r| (r, "--avoid".to_string())));
        let dram_base = ram.first().map_or(0, |r| r.start) & !(SLOT_ALIGN - 1);
        let req = Request {
            size,
            align: SLOT_ALIGN,
            min_addr: dram_base,
            max_end: dram_base.saturating_add(X86_64_WINDOW.max_offset),
        };
        let mut sim = Sim::new("x86_64", ram, avoid, req, size, opts, X86_64_WINDOW)?;

        let ram_entries: Vec<Range> = entries
            .iter()
            .filter(|e| e.2 == E820_TYPE_RAM)
            .filter_map(|&(a, s, _)| Range::from_base_size(a, s).ok())
            .collect();
        let mut avoid: Vec<Range> = sim.avoid.iter().map(|(r, _)| *r).collect();
        avoid.push(Range {
            start: MIB,
            end: load.saturating_add(size),
        });
        avoid.extend(sim.opts.memmap_avoid());
        let minimum = (load.min(512 * MIB) + lm::PHYSICAL_ALIGN - 1) & !(lm::PHYSICAL_ALIGN - 1);
        let limit = sim
            .opts
            .memory_limit()
            .unwrap_or(lm::MAXMEM)
            .min(lm::MAXMEM);
        let areas = lm::x86_slot_areas(&ram_entries, &avoid, minimum, size, limit);
        let phys: u64 = areas.iter().map(|a| a.num).sum();
        sim.x86_areas = areas.clone();
        sim.rules.push(Rule {
            name: "Linux x86 kaslr.c (physical)",
            what: format!(
                "{} slot areas (at most {}), floor {minimum:#x}, random % {phys}",
                areas.len(),
                lm::MAX_SLOT_AREA
            ),
            outcomes: Outcomes::modulo(phys, 64),
        });
        let virt = lm::x86_virt_slots(size);
        sim.rules.push(Rule {
            name: "Linux x86 kaslr.c (virtual)",
            what: format!("2 MiB slots in [16 MiB, 1 GiB): random % {virt}"),
            outcomes: Outcomes::modulo(virt, 64),
        });
        Ok(sim)
    }

    fn new(
        arch: &'static str,
        ram: MemoryMap,
        avoid: Vec<(Range, String)>,
        req: Request,
        size: u64,
        opts: Options,
        window: VirtWindow,
    ) -> Result<Sim> {
        let mut list = Avoid::new();
        for (r, _) in &avoid {
            list.push(*r, "avoid").map_err(|e| anyhow!("{e}"))?;
        }
        // The shim's own composition (common::layout), with what the loader used given
        // as `--avoid` and mem= read as the architecture reads it.
        let mem_limit = match arch {
            "x86_64" => MemLimit::Address,
            _ => MemLimit::Amount,
        };
        let machine = layout::Machine {
            ram: &ram,
            reserved: &list,
            no_map: &MemoryMap::new(),
            shim: Range::EMPTY,
            handoff: Range::EMPTY,
            initrd: None,
            mapped_limit: 512 << 30,
            mem_limit,
        };
        let free = layout::compose(&machine, &opts)
            .map_err(|e| anyhow!("{e}"))?
            .usable;
        let count = slot::count(&free, &req).map_err(|e| anyhow!("{e}"))?;
        let slots = if opts.nokaslr { count.min(1) } else { count };
        let slot_regions = free
            .iter()
            .filter_map(|r| {
                let mut one = MemoryMap::new();
                one.insert(r).ok()?;
                let n = slot::count(&one, &req).ok().filter(|&n| n > 0)?;
                let first = slot::nth(&one, &req, 0)?;
                let last = slot::nth(&one, &req, n - 1)?;
                Some(Range {
                    start: first,
                    end: last + req.size,
                })
            })
            .collect();
        let rules = vec![Rule {
            name: "shim",
            what: if opts.nokaslr {
                "nokaslr: the lowest slot".into()
            } else {
                "2 MiB slots over all free RAM, uniform (rejection sampling)".into()
            },
            outcomes: Outcomes::uniform(slots),
        }];
        Ok(Sim {
            arch,
            ram,
            avoid,
            free,
            req,
            size,
            opts,
            window,
            slots,
            rules,
            slot_regions,
            efi_descs: Vec::new(),
            x86_areas: Vec::new(),
        })
    }

    /// Draws with the Linux models themselves (a 32-bit seed for the EFI stub, a 64-bit
    /// value for kaslr.c) and checks that each lands wholly in free memory: the model
    /// against the map. Returns (rule, draws that fit, draws).
    pub fn linux_draws(&self, draws: u64, rng: &mut Rng) -> Vec<(&'static str, u64, u64)> {
        let fits = |addr: Option<u64>, size: u64| {
            addr.and_then(|a| Range::from_base_size(a, size).ok())
                .is_some_and(|r| self.free.contains_range(&r))
        };
        let mut out = Vec::new();
        if !self.efi_descs.is_empty() {
            let size = self.size.next_multiple_of(lm::EFI_ALLOC_ALIGN);
            let ok = (0..draws)
                .filter(|_| {
                    fits(
                        lm::efi_pick(&self.efi_descs, self.size, rng.next_u64() as u32),
                        size,
                    )
                })
                .count() as u64;
            out.push(("Linux arm64 EFI stub", ok, draws));
        }
        if !self.x86_areas.is_empty() {
            let ok = (0..draws)
                .filter(|_| fits(lm::x86_pick(&self.x86_areas, rng.next_u64()), self.size))
                .count() as u64;
            out.push(("Linux x86 kaslr.c (physical)", ok, draws));
        }
        out
    }

    /// `draws` slots from common::slot::choose, counted in `bins` equal runs of slot
    /// indices.
    pub fn histogram(&self, draws: u64, bins: usize, rng: &mut Rng) -> Result<Vec<u64>> {
        if self.slots == 0 {
            return Ok(Vec::new());
        }
        let bins = bins.min(self.slots as usize).max(1);
        let mut hist = vec![0u64; bins];
        for _ in 0..draws {
            let c = slot::choose(&self.free, &self.req, rng).map_err(|e| anyhow!("{e}"))?;
            let index = self.index_of(c.addr).context("a drawn slot has no index")?;
            let bin = (u128::from(index) * bins as u128 / u128::from(c.slots)) as usize;
            hist[bin] += 1;
        }
        Ok(hist)
    }

    /// The index of slot `addr` in address order (slot::nth's inverse).
    fn index_of(&self, addr: u64) -> Option<u64> {
        let n = slot::count(&self.free, &self.req).ok()?;
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match slot::nth(&self.free, &self.req, mid)? {
                a if a < addr => lo = mid + 1,
                a if a > addr => hi = mid,
                _ => return Some(mid),
            }
        }
        None
    }

    /// The report, as printed.
    pub fn text(&self, hist: &[u64]) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "machine: {} (the {} shim's rule)", self.arch, self.arch);
        for r in self.ram.iter() {
            let _ = writeln!(s, "ram    {r} {}", human_size(r.len()));
        }
        for (r, label) in &self.avoid {
            let _ = writeln!(s, "avoid  {r} {label}");
        }
        for r in self.free.iter() {
            let _ = writeln!(s, "free   {r} {}", human_size(r.len()));
        }
        let _ = writeln!(
            s,
            "payload: {:#x} bytes ({}), slots {} aligned, in [{:#x}, {:#x})",
            self.size,
            human_size(self.size),
            human_size(self.req.align),
            self.req.min_addr,
            self.req.max_end
        );
        let _ = writeln!(
            s,
            "shim: {} slots, physical bits {:.2} ({} as the shim prints, floor), virtual bits {} (2 MiB steps below 2^{} x 2 MiB from {:#x}{})",
            self.slots,
            lm::log2(self.slots),
            if self.slots > 0 { self.slots.ilog2() } else { 0 },
            self.window.disp_bits,
            self.window.disp_bits,
            self.window.base,
            if self.arch == "arm64" {
                "; ELF payloads: a Linux Image draws its own from the kaslr-seed the shim writes"
            } else {
                ""
            }
        );
        let _ = writeln!(s, "rules:");
        for rule in &self.rules {
            let _ = writeln!(s, "  {}", rule_line(rule));
        }
        if !hist.is_empty() {
            let draws: u64 = hist.iter().sum();
            let expect = draws as f64 / hist.len() as f64;
            let chi2: f64 = hist
                .iter()
                .map(|&h| (h as f64 - expect).powi(2) / expect)
                .sum();
            let _ = writeln!(
                s,
                "histogram: {draws} draws of common::slot::choose in {} bins of slot indices, {:.1} expected each, chi-square {chi2:.1} ({} degrees of freedom)",
                hist.len(),
                expect,
                hist.len() - 1
            );
            let max = hist.iter().copied().max().unwrap_or(1).max(1);
            let per = self.slots as f64 / hist.len() as f64;
            for (i, &h) in hist.iter().enumerate() {
                let first = (i as f64 * per) as u64;
                let bar = "#".repeat((h * 50 / max) as usize);
                let _ = writeln!(s, "  slot {first:>8}+ {h:>7} {bar}");
            }
        }
        s
    }

    /// The picture: the map to scale (RAM, avoided and reserved ranges, free memory,
    /// where slots start and end), the rules, the histogram.
    pub fn svg(&self, title: &str, hist: &[u64]) -> String {
        svg(self, title, hist)
    }
}

/// One rule as a line: slots, bits, and the bias of its draw.
pub fn rule_line(rule: &Rule) -> String {
    format!("{}  - {}", rule_figures(rule), rule.what)
}

/// A rule's name and figures, without the description.
pub fn rule_figures(rule: &Rule) -> String {
    let o = &rule.outcomes;
    let mut line = format!(
        "{:<30} {:>12} slots  {:>6.2} bits",
        rule.name,
        o.slots,
        o.bits()
    );
    if o.reachable < o.slots {
        let _ = write!(line, "  (only {} reachable)", o.reachable);
    }
    if o.bias_excess > 0.0 {
        let _ = write!(
            line,
            "  bias max/min 1 + {:.1e}  min-entropy {:.2}",
            o.bias_excess, o.min_entropy
        );
    } else {
        line.push_str("  uniform");
    }
    line
}

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn svg(sim: &Sim, title: &str, hist: &[u64]) -> String {
    const W: f64 = 1000.0;
    const LEFT: f64 = 110.0;
    const RIGHT: f64 = 20.0;
    let lo = sim.ram.first().map_or(0, |r| r.start);
    let hi = sim.ram.last().map_or(1, |r| r.end).max(lo + 1);
    let span = (hi - lo) as f64;
    let x = |a: u64| LEFT + (a.clamp(lo, hi) - lo) as f64 / span * (W - LEFT - RIGHT);
    let mut s = String::new();
    let rows = 4.0;
    let hist_top = 90.0 + rows * 30.0 + 50.0 + sim.rules.len() as f64 * 32.0 + 20.0;
    let height = hist_top + 200.0;
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="monospace" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="20" font-size="15">{}: {} payload of {} ({:#x} bytes)</text>"#,
        esc(title),
        sim.arch,
        human_size(sim.size),
        sim.size
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="40">physical address {lo:#x} .. {hi:#x}, to scale</text>"#
    );
    let bar = |s: &mut String, row: usize, label: &str, ranges: &[(Range, &str)]| {
        let y = 60.0 + row as f64 * 30.0;
        let _ = writeln!(s, r#"<text x="10" y="{}">{}</text>"#, y + 14.0, esc(label));
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{y}" width="{}" height="20" fill="none" stroke="#ccc"/>"##,
            W - LEFT - RIGHT
        );
        for (r, color) in ranges {
            let (x0, x1) = (x(r.start), x(r.end));
            let _ = writeln!(
                s,
                r##"<rect x="{x0:.2}" y="{y}" width="{:.2}" height="20" fill="{color}"><title>{} {}</title></rect>"##,
                (x1 - x0).max(0.8),
                esc(label),
                r
            );
        }
    };
    let ram: Vec<(Range, &str)> = sim.ram.iter().map(|r| (r, "#6c6")).collect();
    bar(&mut s, 0, "RAM", &ram);
    let avoid: Vec<(Range, &str)> = sim
        .avoid
        .iter()
        .map(|(r, l)| {
            let reserved = l.contains("reserve");
            (*r, if reserved { "#f90" } else { "#d33" })
        })
        .collect();
    bar(&mut s, 1, "avoided", &avoid);
    let free: Vec<(Range, &str)> = sim.free.iter().map(|r| (r, "#9cf")).collect();
    bar(&mut s, 2, "free", &free);
    let slots: Vec<(Range, &str)> = sim.slot_regions.iter().map(|&r| (r, "#36c")).collect();
    bar(&mut s, 3, "slots", &slots);
    // GiB ticks.
    let axis_y = 60.0 + rows * 30.0;
    let step = ((hi - lo) / 8).max(GIB).next_multiple_of(GIB);
    let mut tick = lo.next_multiple_of(GIB);
    while tick <= hi {
        let tx = x(tick);
        let _ = writeln!(
            s,
            r##"<line x1="{tx:.2}" y1="55" x2="{tx:.2}" y2="{axis_y}" stroke="#999" stroke-dasharray="2,3"/><text x="{tx:.2}" y="{}" text-anchor="middle">{} GiB</text>"##,
            axis_y + 14.0,
            tick / GIB
        );
        tick += step;
    }
    let _ = writeln!(
        s,
        r##"<text x="10" y="{}">legend: <tspan fill="#6c6">RAM</tspan>  <tspan fill="#d33">avoided</tspan>  <tspan fill="#f90">reserved</tspan>  <tspan fill="#39c">free</tspan>  <tspan fill="#36c">slot span (first slot .. last slot + size)</tspan></text>"##,
        axis_y + 34.0
    );
    let mut y = axis_y + 60.0;
    for rule in &sim.rules {
        let _ = writeln!(
            s,
            r#"<text x="10" y="{y}" xml:space="preserve">{}</text>"#,
            esc(&rule_figures(rule))
        );
        let _ = writeln!(
            s,
            r##"<text x="30" y="{}" font-size="10" fill="#555">{}</text>"##,
            y + 13.0,
            esc(&rule.what)
        );
        y += 32.0;
    }
    if !hist.is_empty() {
        let draws: u64 = hist.iter().sum();
        let max = hist.iter().copied().max().unwrap_or(1).max(1) as f64;
        let top = hist_top + 20.0;
        let _ = writeln!(
            s,
            r#"<text x="10" y="{}">histogram: {draws} draws of common::slot::choose, {} bins of slot indices (dashed: expected)</text>"#,
            hist_top + 10.0,
            hist.len()
        );
        let bw = (W - LEFT - RIGHT) / hist.len() as f64;
        for (i, &h) in hist.iter().enumerate() {
            let bh = h as f64 / max * 150.0;
            let _ = writeln!(
                s,
                r##"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{bh:.2}" fill="#36c"><title>bin {i}: {h}</title></rect>"##,
                LEFT + i as f64 * bw + 1.0,
                top + 150.0 - bh,
                (bw - 2.0).max(0.5)
            );
        }
        let ey = top + 150.0 - draws as f64 / hist.len() as f64 / max * 150.0;
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{ey:.2}" x2="{}" y2="{ey:.2}" stroke="#d33" stroke-dasharray="4,3"/>"##,
            W - RIGHT
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace_root;

    fn dtb(name: &str) -> Vec<u8> {
        fs::read(workspace_root().join("tests/data/dtb").join(name)).unwrap()
    }

    fn rule<'a>(sim: &'a Sim, name: &str) -> &'a Rule {
        sim.rules.iter().find(|r| r.name.starts_with(name)).unwrap()
    }

    #[test]
    fn e820_formats() {
        let linux = "[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable\n\
                     [    0.000000] BIOS-e820: [mem 0x000000000009fc00-0x000000000009ffff] reserved\n\
                     BIOS-e820: [mem 0x00000000fed1c000-0x00000000fed1ffff] ACPI NVS\n\
                     BIOS-e820: [mem 0x0000000100000000-0x00000001ffffffff] persistent (type 12)\n";
        assert_eq!(
            parse_e820(linux).unwrap(),
            [
                (0, 0x9_fc00, 1),
                (0x9_fc00, 0x400, 2),
                (0xfed1_c000, 0x4000, 4),
                (0x1_0000_0000, 0x1_0000_0000, 12)
            ]
        );
        let plain = "# start end type\n0 9fbff 1\n0x100000-0x7ffdefff usable  # low RAM\n100000000 1ffffffff ACPI data\n";
        assert_eq!(
            parse_e820(plain).unwrap(),
            [
                (0, 0x9_fc00, 1),
                (0x10_0000, 0x7fed_f000, 1),
                (0x1_0000_0000, 0x1_0000_0000, 3)
            ]
        );
        for bad in ["0 100", "zz-100 1", "100-0 1", "0-100 weird", ""] {
            assert!(parse_e820(bad).is_err(), "{bad:?}");
        }
        assert!(parse_e820("x\n0 1 1")
            .unwrap_err()
            .to_string()
            .contains("line 1"));
    }

    #[test]
    fn numbers_and_ranges() {
        assert_eq!(parse_number("0x1ab0000").unwrap(), 0x1ab_0000);
        assert_eq!(parse_number("27M").unwrap(), 27 * MIB);
        assert!(parse_number("12q").is_err());
        assert_eq!(
            parse_range("0x40000000-0x401fffff").unwrap(),
            Range {
                start: 0x4000_0000,
                end: 0x4020_0000
            }
        );
        assert_eq!(
            parse_range("0x40000000+2M").unwrap(),
            Range {
                start: 0x4000_0000,
                end: 0x4020_0000
            }
        );
        assert!(parse_range("5-4").is_err() && parse_range("5").is_err());
    }

    /// QEMU virt with 1 GiB: RAM [0x40000000, 0x80000000), nothing reserved in the
    /// tree; the Debian kernel's 0x1ab0000 bytes fit at 499 2 MiB bases.
    #[test]
    fn virt_1g() {
        let sim = Sim::from_dtb(&dtb("virt-1G-smp1.dtb"), Some(""), &[], DEFAULT_SIZE).unwrap();
        assert_eq!(sim.free.total(), GIB);
        assert_eq!(sim.slots, (GIB - 0x1c0_0000) / (2 * MIB) + 1);
        let efi = rule(&sim, "Linux arm64 EFI");
        assert_eq!(efi.outcomes.slots, (GIB - 0x1ab_0000) / (64 * 1024) + 1);
        assert!(efi.outcomes.bias > 1.0);
        assert_eq!(rule(&sim, "U-Boot").outcomes.slots, 1);
        let mut rng = Rng::from_key([3; 32]);
        assert_eq!(
            sim.linux_draws(300, &mut rng),
            [("Linux arm64 EFI stub", 300, 300)]
        );
        // The loader's own ranges and nokaslr.
        let shim = parse_range("0x40200000+0xc9000").unwrap();
        let fewer = Sim::from_dtb(
            &dtb("virt-1G-smp1.dtb"),
            Some("nokaslr"),
            &[shim],
            DEFAULT_SIZE,
        )
        .unwrap();
        assert_eq!(fewer.slots, 1);
        assert_eq!(fewer.rules[0].outcomes.slots, 1);
        let mem = Sim::from_dtb(
            &dtb("virt-1G-smp1.dtb"),
            // An amount of memory on arm64: the first 512 MiB of RAM.
            Some("mem=512M"),
            &[],
            DEFAULT_SIZE,
        )
        .unwrap();
        assert_eq!(mem.free.total(), 512 * MIB);
    }

    #[test]
    fn reserved_memory_and_initrd_are_avoided() {
        let sim = Sim::from_dtb(&dtb("synthetic-reserved.dtb"), None, &[], 2 * MIB).unwrap();
        assert!(sim.avoid.iter().any(|(_, l)| l == "initrd"));
        assert!(sim.avoid.iter().any(|(_, l)| l == "reserved-memory"));
        for (r, _) in &sim.avoid {
            assert!(sim.free.iter().all(|f| !f.overlaps(r)));
        }
    }

    #[test]
    fn q35_6g_e820() {
        let text =
            fs::read_to_string(workspace_root().join("tests/data/e820/q35-6G.dmesg")).unwrap();
        let entries = parse_e820(&text).unwrap();
        let sim = Sim::from_e820(&entries, None, &[], DEFAULT_SIZE, 16 * MIB).unwrap();
        assert_eq!(sim.ram.total(), 0x9_fc00 + 0x7fed_f000 + 4 * GIB);
        let phys = rule(&sim, "Linux x86 kaslr.c (physical)");
        assert!(
            phys.outcomes.slots < sim.slots,
            "{} vs {}",
            phys.outcomes.slots,
            sim.slots
        );
        assert_eq!(
            rule(&sim, "Linux x86 kaslr.c (virtual)").outcomes.slots,
            491
        );
        let mut rng = Rng::from_key([7; 32]);
        let hist = sim.histogram(2000, 20, &mut rng).unwrap();
        assert_eq!(hist.iter().sum::<u64>(), 2000);
        assert!(hist.iter().all(|&h| h > 40), "{hist:?}");
        assert_eq!(
            sim.linux_draws(500, &mut rng),
            [("Linux x86 kaslr.c (physical)", 500, 500)]
        );
        let svg = sim.svg("q35", &hist);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("Linux x86 kaslr.c (physical)"));
        let text = sim.text(&hist);
        assert!(text.contains("avoid  [0x0, 0x100000) first MiB"), "{text}");
    }

    #[test]
    fn rule_lines() {
        let line = rule_line(&Rule {
            name: "x",
            what: "y".into(),
            outcomes: Outcomes::seed32(3),
        });
        assert!(
            line.contains("3 slots") && line.contains("bias max/min 1 + 7.0e-10"),
            "{line}"
        );
        assert!(rule_line(&Rule {
            name: "s",
            what: "u".into(),
            outcomes: Outcomes::uniform(8)
        })
        .contains("3.00 bits  uniform"));
        assert_eq!(esc("a<b&c>"), "a&lt;b&amp;c&gt;");
    }
}
