//! Reading the guest console: splitting the byte stream into lines and parsing the
//! `shim: ` and `payload: ` lines that decide a boot's outcome, the `linux-test: `
//! lines of the Linux test initramfs (linux.rs) and the few kernel log lines the Linux
//! cases check. Pure; no QEMU here.

/// What one console line reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `payload: ok va=0x.. pa=0x.. ...`
    PayloadOk { va: u64, pa: u64, rest: String },
    /// `payload: FAIL <why>`
    PayloadFail(String),
    /// `payload: ... parking`: the payload cannot power the machine off (no /psci in
    /// the device tree) and waits forever instead.
    PayloadParked(String),
    /// Any other `payload: ` line.
    Payload(String),
    /// `shim: placed pa=0x.. va=0x.. slots=N entropy=<bits> sources=<list>`
    ShimPlaced(Placed),
    /// `shim: payload digest mismatch ...`
    DigestMismatch(String),
    /// Any other `shim: ` line (progress or error; the text after the tag).
    Shim(String),
    /// A `linux-test: ` line from the Linux test initramfs's /init.
    LinuxTest(LinuxTest),
    /// A kernel log line the Linux cases look for.
    Kernel(Kernel),
}

/// The shim's own report of where it put the payload. An ELF payload's line has
/// `va=`; a Linux Image's has `size=` (its image_size) and no `va=`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placed {
    pub pa: u64,
    pub va: Option<u64>,
    pub size: Option<u64>,
    pub slots: Option<u64>,
    pub entropy: Option<String>,
    pub sources: Option<String>,
    /// `(Linux's decompressor)`: the shim placed a bzImage it does not decode, and
    /// Linux's decompressor places the kernel itself.
    pub own_decompressor: bool,
}

impl Placed {
    /// `pa=0x.. va=0x..` or `pa=0x.. size=0x..`, for messages.
    pub fn brief(&self) -> String {
        let mut text = format!("pa={:#x}", self.pa);
        if let Some(va) = self.va {
            text.push_str(&format!(" va={va:#x}"));
        }
        if let Some(size) = self.size {
            text.push_str(&format!(" size={size:#x}"));
        }
        text
    }
}

/// What the Linux test initramfs's /init reports (linux.rs writes it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinuxTest {
    /// `linux-test: cmdline <contents of /proc/cmdline>`
    Cmdline(String),
    /// `linux-test: iomem <one line of /proc/iomem>`, parsed.
    Iomem(Iomem),
    /// `linux-test: sha256 <hex>` of its /data.bin.
    Sha256(String),
    /// `linux-test: text <hex>`: `_stext` in /proc/kallsyms, the kernel's virtual text
    /// (init runs as root, so the address is not hidden).
    Text(u64),
    /// `linux-test: done`: everything was printed; it powers off next.
    Done,
    /// Any other `linux-test: ` line.
    Other(String),
}

/// One /proc/iomem line: `  40210000-40f5ffff : Kernel code`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iomem {
    pub start: u64,
    /// Inclusive, as /proc/iomem prints it.
    pub end: u64,
    pub name: String,
}

/// Kernel log lines (init/main.c, arch/arm64/kernel/kaslr.c, smp.c, kernel/panic.c).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// `Booting Linux on physical CPU ...`: a kernel runs.
    Booting,
    /// `KASLR enabled` (true) or `KASLR disabled ...` (false).
    Kaslr(bool),
    /// `CPU: All CPU(s) started at EL<n>`.
    StartedAt(u8),
    /// `Kernel panic - not syncing: ...` (the text from `Kernel panic`).
    Panic(String),
}

const SHIM: &str = "shim: ";
const PAYLOAD: &str = "payload: ";
const LINUX_TEST: &str = "linux-test: ";
const KERNEL_PANIC: &str = "Kernel panic - not syncing";
const STARTED_AT: &str = "CPU: All CPU(s) started at EL";

/// Parses one console line (without its line ending). The tag may follow other
/// output on the same line; the leftmost tag wins. A line with no tag may be one of
/// the kernel log lines in [`Kernel`].
pub fn parse_line(line: &str) -> Option<Event> {
    let tags = [SHIM, PAYLOAD, LINUX_TEST];
    let leftmost = tags
        .iter()
        .filter_map(|tag| line.find(tag).map(|at| (at, *tag)))
        .min_by_key(|(at, _)| *at);
    match leftmost {
        Some((at, SHIM)) => Some(parse_shim(line[at + SHIM.len()..].trim())),
        Some((at, PAYLOAD)) => Some(parse_payload(line[at + PAYLOAD.len()..].trim())),
        Some((at, _)) => Some(Event::LinuxTest(parse_linux_test(
            line[at + LINUX_TEST.len()..].trim_end(),
        ))),
        None => parse_kernel(line).map(Event::Kernel),
    }
}

fn parse_linux_test(text: &str) -> LinuxTest {
    let (word, rest) = text.split_once(' ').unwrap_or((text, ""));
    match word {
        "cmdline" => LinuxTest::Cmdline(rest.trim().to_string()),
        "sha256" => LinuxTest::Sha256(rest.trim().to_string()),
        "text" => match u64::from_str_radix(rest.trim(), 16) {
            Ok(va) => LinuxTest::Text(va),
            Err(_) => LinuxTest::Other(text.to_string()),
        },
        "done" if rest.trim().is_empty() => LinuxTest::Done,
        "iomem" => match parse_iomem(rest) {
            Some(iomem) => LinuxTest::Iomem(iomem),
            None => LinuxTest::Other(text.to_string()),
        },
        _ => LinuxTest::Other(text.to_string()),
    }
}

/// `<start>-<end> : <name>`, indented by nesting depth.
pub fn parse_iomem(line: &str) -> Option<Iomem> {
    let (range, name) = line.trim().split_once(" : ")?;
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    (start <= end).then(|| Iomem {
        start,
        end,
        name: name.trim().to_string(),
    })
}

fn parse_kernel(line: &str) -> Option<Kernel> {
    if let Some(at) = line.find(KERNEL_PANIC) {
        return Some(Kernel::Panic(line[at..].trim_end().to_string()));
    }
    if line.contains("Booting Linux on physical CPU") {
        return Some(Kernel::Booting);
    }
    // x86 (arch/x86/mm/kaslr.c): printed only when KASLR_FLAG lets the kernel
    // randomize its memory regions.
    if line.contains("KASLR enabled") || line.contains("Memory KASLR using") {
        return Some(Kernel::Kaslr(true));
    }
    if line.contains("KASLR disabled") {
        return Some(Kernel::Kaslr(false));
    }
    let at = line.find(STARTED_AT)?;
    let digit = line[at + STARTED_AT.len()..].chars().next()?.to_digit(10)?;
    Some(Kernel::StartedAt(digit as u8))
}

fn parse_shim(text: &str) -> Event {
    if text.contains("payload digest mismatch") {
        return Event::DigestMismatch(text.to_string());
    }
    if let Some(fields) = text.strip_prefix("placed ") {
        if let Some(pa) = hex_field(fields, "pa") {
            return Event::ShimPlaced(Placed {
                pa,
                va: hex_field(fields, "va"),
                size: hex_field(fields, "size"),
                slots: field(fields, "slots").and_then(|s| s.parse().ok()),
                entropy: field(fields, "entropy").map(String::from),
                sources: field(fields, "sources").map(String::from),
                own_decompressor: fields.ends_with("(Linux's decompressor)"),
            });
        }
    }
    Event::Shim(text.to_string())
}

fn parse_payload(text: &str) -> Event {
    if let Some(fields) = text.strip_prefix("ok ") {
        if let (Some(va), Some(pa)) = (hex_field(fields, "va"), hex_field(fields, "pa")) {
            let rest = fields
                .split_whitespace()
                .filter(|kv| !kv.starts_with("va=") && !kv.starts_with("pa="))
                .collect::<Vec<_>>()
                .join(" ");
            return Event::PayloadOk { va, pa, rest };
        }
    }
    if let Some(why) = text.strip_prefix("FAIL") {
        return Event::PayloadFail(why.trim().to_string());
    }
    if text.ends_with(": parking") {
        return Event::PayloadParked(text.to_string());
    }
    Event::Payload(text.to_string())
}

/// The value of `key=value` among whitespace-separated fields.
fn field<'a>(fields: &'a str, key: &str) -> Option<&'a str> {
    fields.split_whitespace().find_map(|kv| {
        kv.split_once('=')
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
    })
}

fn hex_field(fields: &str, key: &str) -> Option<u64> {
    let value = field(fields, key)?;
    let digits = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))?;
    u64::from_str_radix(&digits.replace('_', ""), 16).ok()
}

/// The console so far: complete lines are handed out once; the unfinished last line
/// is kept for prompt matching.
#[derive(Default)]
pub struct Console {
    partial: Vec<u8>,
    /// Bytes received in total: a position in the stream.
    received: usize,
}

impl Console {
    /// Adds output; returns the lines it completed (line endings and `\r` removed).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.received += bytes.len();
        let mut lines = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                lines.push(clean(&self.partial));
                self.partial.clear();
            } else {
                self.partial.push(b);
            }
        }
        lines
    }

    /// The unfinished last line, cleaned like a complete one.
    pub fn partial(&self) -> String {
        clean(&self.partial)
    }

    /// How many bytes have arrived so far.
    pub fn received(&self) -> usize {
        self.received
    }

    /// The unfinished last line, if any, as a line (at end of stream).
    pub fn finish(&mut self) -> Option<String> {
        let rest = (!self.partial.is_empty()).then(|| clean(&self.partial));
        self.partial.clear();
        rest
    }
}

/// Text of a line: lossy UTF-8 without carriage returns, backspace edits applied.
fn clean(raw: &[u8]) -> String {
    let mut out = String::new();
    for c in String::from_utf8_lossy(raw).chars() {
        match c {
            '\r' => {}
            '\u{8}' => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_ok() {
        let line = "payload: ok va=0xffff800012345000 pa=0x4a200000 ptrs=17 sources=0x14 bits=22";
        assert_eq!(
            parse_line(line),
            Some(Event::PayloadOk {
                va: 0xffff_8000_1234_5000,
                pa: 0x4a20_0000,
                rest: "ptrs=17 sources=0x14 bits=22".into()
            })
        );
    }

    #[test]
    fn payload_fail_and_others() {
        assert_eq!(
            parse_line("payload: FAIL relocation at 0x10 not applied"),
            Some(Event::PayloadFail("relocation at 0x10 not applied".into()))
        );
        assert_eq!(
            parse_line("payload: hello"),
            Some(Event::Payload("hello".into()))
        );
        // tests/payload's power_off without PSCI.
        assert_eq!(
            parse_line("payload: no /psci in the device tree: parking\r"),
            Some(Event::PayloadParked(
                "no /psci in the device tree: parking".into()
            ))
        );
        assert_eq!(
            parse_line("payload: parking lot"),
            Some(Event::Payload("parking lot".into()))
        );
        // An `ok` line without addresses is not a pass.
        assert_eq!(parse_line("payload: ok"), Some(Event::Payload("ok".into())));
        assert_eq!(
            parse_line("payload: ok va=zz pa=0x1"),
            Some(Event::Payload("ok va=zz pa=0x1".into()))
        );
    }

    #[test]
    fn shim_placed() {
        let line = "shim: placed pa=0x7e600000 va=0xffffffc012a00000 slots=431 entropy=24 sources=rndr,counter";
        assert_eq!(
            parse_line(line),
            Some(Event::ShimPlaced(Placed {
                pa: 0x7e60_0000,
                va: Some(0xffff_ffc0_12a0_0000),
                size: None,
                slots: Some(431),
                entropy: Some("24".into()),
                sources: Some("rndr,counter".into()),
                own_decompressor: false,
            }))
        );
        let own = "shim: placed pa=0x31800000 size=0x3800000 phys_slots=987 sources=counter (Linux's decompressor)";
        match parse_line(own) {
            Some(Event::ShimPlaced(p)) => assert!(p.own_decompressor && p.size == Some(0x380_0000)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn shim_errors_and_mismatch() {
        assert_eq!(
            parse_line("shim: payload digest mismatch, halting"),
            Some(Event::DigestMismatch(
                "payload digest mismatch, halting".into()
            ))
        );
        assert_eq!(
            parse_line("shim: no memory node"),
            Some(Event::Shim("no memory node".into()))
        );
        // `placed` with missing addresses is just a shim line.
        assert_eq!(
            parse_line("shim: placed somewhere"),
            Some(Event::Shim("placed somewhere".into()))
        );
    }

    #[test]
    fn tags_anywhere_leftmost_wins() {
        assert_eq!(
            parse_line("\u{1b}[0mshim: payload: bad elf"),
            Some(Event::Shim("payload: bad elf".into()))
        );
        assert_eq!(
            parse_line("=> payload: FAIL x"),
            Some(Event::PayloadFail("x".into()))
        );
        assert_eq!(parse_line("Hit any key to stop autoboot:  2"), None);
        assert_eq!(parse_line(""), None);
    }

    #[test]
    fn console_splits_lines_and_keeps_partial() {
        let mut c = Console::default();
        assert!(c.push(b"U-Boot\r").is_empty());
        assert_eq!(
            c.push(b"\nHit any key:  2 \x08\x08\x08 0 \r\n=> "),
            ["U-Boot", "Hit any key:  0 "]
        );
        assert_eq!(c.partial(), "=> ");
        assert_eq!(c.received(), 35);
        assert_eq!(
            c.push(b"version\r\nU-Boot 2023\r\n"),
            ["=> version", "U-Boot 2023"]
        );
        assert_eq!(c.partial(), "");
        c.push(b"tail");
        assert_eq!(c.finish(), Some("tail".into()));
        assert_eq!(c.finish(), None);
    }

    #[test]
    fn shim_placed_linux_has_size_and_no_va() {
        let line = "shim: placed pa=0x5c600000 size=0x1ab0000 slots=482 entropy=8 sources=kaslr-seed,rng-seed,cpu-rng,counter";
        let Some(Event::ShimPlaced(p)) = parse_line(line) else {
            panic!("{:?}", parse_line(line))
        };
        assert_eq!((p.pa, p.va, p.size), (0x5c60_0000, None, Some(0x1ab_0000)));
        assert_eq!(p.slots, Some(482));
        assert_eq!(p.brief(), "pa=0x5c600000 size=0x1ab0000");
    }

    #[test]
    fn linux_test_lines() {
        let ev = |l: &str| match parse_line(l) {
            Some(Event::LinuxTest(t)) => t,
            other => panic!("{l}: {other:?}"),
        };
        assert_eq!(
            ev("linux-test: cmdline console=ttyAMA0 panic=-1 "),
            LinuxTest::Cmdline("console=ttyAMA0 panic=-1".into())
        );
        assert_eq!(
            ev("linux-test: iomem   40210000-40f5ffff : Kernel code"),
            LinuxTest::Iomem(Iomem {
                start: 0x4021_0000,
                end: 0x40f5_ffff,
                name: "Kernel code".into()
            })
        );
        assert_eq!(
            ev("linux-test: iomem 09000000-09000fff : pl011@9000000"),
            LinuxTest::Iomem(Iomem {
                start: 0x900_0000,
                end: 0x900_0fff,
                name: "pl011@9000000".into()
            })
        );
        assert_eq!(
            ev("linux-test: iomem garbage"),
            LinuxTest::Other("iomem garbage".into())
        );
        assert_eq!(
            ev("linux-test: sha256 ab12 "),
            LinuxTest::Sha256("ab12".into())
        );
        assert_eq!(ev("\u{1b}[0mlinux-test: done\r"), LinuxTest::Done);
        assert_eq!(ev("linux-test: done?"), LinuxTest::Other("done?".into()));
        // A kernel message in the middle of the line: the tag still counts.
        assert_eq!(
            ev("[    1.0] random: crng init done linux-test: done"),
            LinuxTest::Done
        );
    }

    #[test]
    fn kernel_lines() {
        let k = |l: &str| parse_line(l);
        assert_eq!(
            k("[    0.000000] KASLR enabled"),
            Some(Event::Kernel(Kernel::Kaslr(true)))
        );
        assert_eq!(
            k("[    0.000000] KASLR disabled due to lack of seed"),
            Some(Event::Kernel(Kernel::Kaslr(false)))
        );
        assert_eq!(
            k("[    0.101] CPU: All CPU(s) started at EL2"),
            Some(Event::Kernel(Kernel::StartedAt(2)))
        );
        assert_eq!(
            k("[    0.101] CPU: All CPU(s) started at EL1"),
            Some(Event::Kernel(Kernel::StartedAt(1)))
        );
        assert_eq!(
            k("[    2.5] Kernel panic - not syncing: Attempted to kill init!"),
            Some(Event::Kernel(Kernel::Panic(
                "Kernel panic - not syncing: Attempted to kill init!".into()
            )))
        );
        assert_eq!(
            k("[    0.0] Booting Linux on physical CPU 0x0"),
            Some(Event::Kernel(Kernel::Booting))
        );
        assert_eq!(k("[    0.0] Linux version 6.1.0"), None);
    }
}
