//! The kernel command line options the shim reads (`kaslr`, `nokaslr`, `mem=`,
//! `memmap=`, `shim.*`), split into tokens as Linux's `next_arg()` does: whitespace
//! separates, double quotes protect spaces, `--` ends the options, NUL ends the line.

use core::fmt;

use crate::memmap::Range;

/// At most this many `memmap=` entries are honoured. x86 Linux's KASLR honours 4
/// (`MAX_MEMMAP_REGIONS`) and turns physical randomization off beyond; the shim
/// honours 16 and still randomizes, and turns it off only beyond 16.
pub const MAX_MEMMAP: usize = 16;

/// One `memmap=` entry, as x86 Linux's KASLR reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemmapEntry {
    pub kind: MemmapKind,
    /// 0 for [`MemmapKind::Limit`].
    pub start: u64,
    /// For [`MemmapKind::Limit`], the limit itself.
    pub size: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemmapKind {
    /// `nn#ss`, `nn$ss`, `nn!ss`: `[ss, ss + nn)` must be avoided.
    Avoid,
    /// `nn@ss`: declares usable memory; KASLR ignores it.
    Ignore,
    /// Bare `nn`: "memmap=nn\[KMG\] has the same behaviour as mem=nn\[KMG\]".
    Limit,
}

/// What the shim takes from the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `nokaslr` (the last of `kaslr` / `nokaslr` wins).
    pub nokaslr: bool,
    /// `mem=nn[KMGT]`: ignore memory at or above this address (the last one wins).
    pub mem_limit: Option<u64>,
    /// `shim.verbose`: print the placement.
    pub verbose: bool,
    /// `shim.offset=nn`: acts as a loader-passed image offset.
    pub image_offset: Option<u64>,
    /// `shim.weak=fixed`: with no strong entropy source (only the counter), do not
    /// randomize at all; `shim.weak=random` (the default) randomizes anyway and says
    /// the placement is weak.
    pub weak_fixed: bool,
    /// `shim.sha256=portable`: hash without the CPU's SHA-256 instructions even where
    /// it has them, as a CPU without them does (the Raspberry Pi 4's), to test or time
    /// that path; `shim.sha256=auto` (the default) uses the instructions.
    pub sha256_portable: bool,
    /// `memmap=` entries in command line order (comma-separated ones included); the
    /// first `memmap_count` are `Some`. Stricter than x86 Linux, which counts only the
    /// avoided regions towards its limit of 4: here every entry counts.
    pub memmap: [Option<MemmapEntry>; MAX_MEMMAP],
    pub memmap_count: usize,
    /// More than [`MAX_MEMMAP`] entries: the rest could not be kept, so the placement
    /// must not be drawn (degraded as Linux degrades beyond its 4).
    pub memmap_overflow: bool,
}

impl Options {
    /// The `memmap=` entries in order.
    pub fn memmaps(&self) -> impl Iterator<Item = MemmapEntry> + '_ {
        self.memmap.iter().flatten().copied()
    }

    /// The ranges `memmap=` asks to avoid (`nn#ss`, `nn$ss`, `nn!ss`).
    pub fn memmap_avoid(&self) -> impl Iterator<Item = Range> + '_ {
        self.memmaps()
            .filter(|e| e.kind == MemmapKind::Avoid)
            // Parsing has checked that `start + size` fits.
            .filter_map(|e| Range::from_base_size(e.start, e.size).ok())
    }

    /// The lowest of `mem=` and any bare `memmap=nn` limit.
    pub fn memory_limit(&self) -> Option<u64> {
        let limits = self
            .memmaps()
            .filter(|e| e.kind == MemmapKind::Limit)
            .map(|e| e.size);
        limits.chain(self.mem_limit).min()
    }
}

/// An option name copied from the command line, for error messages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Name {
    bytes: [u8; 32],
    len: usize,
    /// The name was longer than `bytes`; the message shows `...`.
    truncated: bool,
}

impl Name {
    fn new(name: &[u8]) -> Name {
        let mut bytes = [0; 32];
        let len = name.len().min(bytes.len());
        for (d, s) in bytes.iter_mut().zip(name) {
            *d = *s;
        }
        Name {
            bytes,
            len,
            truncated: name.len() > len,
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.bytes.iter().take(self.len) {
            if b.is_ascii_graphic() {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        if self.truncated {
            f.write_str("...")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdlineError {
    /// The value of an option the shim reads is malformed (bad number, overflow, ...).
    BadValue { option: &'static str },
    /// The option needs `=value`.
    MissingValue { option: &'static str },
    /// A flag was given a value.
    UnexpectedValue { option: &'static str },
    /// A `shim.*` option the shim does not know (typos must not go unnoticed).
    UnknownShimOption(Name),
}

impl fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdlineError::BadValue { option } => {
                write!(f, "malformed value for {option}=")
            }
            CmdlineError::MissingValue { option } => write!(f, "{option} needs a value"),
            CmdlineError::UnexpectedValue { option } => {
                write!(f, "{option} takes no value")
            }
            CmdlineError::UnknownShimOption(name) => write!(f, "unknown option {name}"),
        }
    }
}

/// Linux `isspace()` on the command line: space, \t, \n, \v, \f, \r.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Splits off the next `param[=value]` token, as Linux `next_arg()` does: a quote
/// toggles quoting (whitespace inside quotes does not end the token); the name is up
/// to the first `=`; surrounding quotes are dropped from a value or a quoted token.
/// Returns `(param, value, rest)`; `rest` has leading whitespace removed.
fn next_arg(args: &[u8]) -> (&[u8], Option<&[u8]>, &[u8]) {
    let (quoted, args) = match args.split_first() {
        Some((b'"', tail)) => (true, tail),
        _ => (false, args),
    };
    let mut in_quote = quoted;
    let mut equals = None;
    let mut end = args.len();
    for (i, &b) in args.iter().enumerate() {
        if is_space(b) && !in_quote {
            end = i;
            break;
        }
        if equals.is_none() && b == b'=' {
            equals = Some(i);
        }
        if b == b'"' {
            in_quote = !in_quote;
        }
    }
    let (token, rest) = args.split_at_checked(end).unwrap_or((args, &[]));
    let rest = trim_start(rest);
    match equals {
        None => {
            let param = match token.split_last() {
                Some((b'"', head)) if quoted => head,
                _ => token,
            };
            (param, None, rest)
        }
        Some(eq) => {
            let (param, value) = token.split_at_checked(eq).unwrap_or((token, &[]));
            let value = value.get(1..).unwrap_or(&[]);
            let value = match value.split_first() {
                Some((b'"', v)) => v.strip_suffix(b"\"").unwrap_or(v),
                _ if quoted => value.strip_suffix(b"\"").unwrap_or(value),
                _ => value,
            };
            (param, Some(value), rest)
        }
    }
}

/// The length of the next token as written (an opening quote included): up to the
/// first whitespace outside quotes, where `next_arg` ends it. Whitespace inside an
/// unterminated quote belongs to the token.
fn token_len(args: &[u8]) -> usize {
    let mut in_quote = false;
    args.iter()
        .position(|&b| {
            if b == b'"' {
                in_quote = !in_quote;
            }
            is_space(b) && !in_quote
        })
        .unwrap_or(args.len())
}

fn trim_start(s: &[u8]) -> &[u8] {
    let skip = s.iter().take_while(|&&b| is_space(b)).count();
    s.get(skip..).unwrap_or(&[])
}

/// Parses a number as Linux `memparse()` does but stricter: decimal or `0x` hex (a
/// leading `0` before more digits would be octal in Linux and is refused here),
/// optionally followed by one of `K M G T` (either case, powers of 1024). Overflow is
/// `None`. Returns the value and the bytes after it.
pub fn parse_size(s: &[u8]) -> Option<(u64, &[u8])> {
    let (radix, digits) = match s {
        [b'0', b'x' | b'X', rest @ ..] => (16, rest),
        [b'0', b'0'..=b'9', ..] => return None,
        _ => (10, s),
    };
    let n = digits
        .iter()
        .take_while(|b| (**b as char).is_digit(radix))
        .count();
    if n == 0 {
        return None;
    }
    let mut value: u64 = 0;
    for &b in digits.get(..n)? {
        let d = u64::from((b as char).to_digit(radix)?);
        value = value.checked_mul(u64::from(radix))?.checked_add(d)?;
    }
    let rest = digits.get(n..)?;
    let shift = match rest.first() {
        Some(b'k' | b'K') => 10,
        Some(b'm' | b'M') => 20,
        Some(b'g' | b'G') => 30,
        Some(b't' | b'T') => 40,
        _ => return Some((value, rest)),
    };
    let scaled = value.checked_mul(1u64 << shift)?;
    Some((scaled, rest.get(1..)?))
}

/// A whole value that must be exactly one size.
fn size_value(value: Option<&[u8]>, option: &'static str) -> Result<u64, CmdlineError> {
    let value = value.ok_or(CmdlineError::MissingValue { option })?;
    match parse_size(value) {
        Some((n, [])) => Ok(n),
        _ => Err(CmdlineError::BadValue { option }),
    }
}

/// A two-way option: `Ok(true)` for `yes`, `Ok(false)` for `no`, an error for any
/// other value or none.
fn choice(
    value: Option<&[u8]>,
    option: &'static str,
    yes: &[u8],
    no: &[u8],
) -> Result<bool, CmdlineError> {
    match value {
        Some(v) if v == yes => Ok(true),
        Some(v) if v == no => Ok(false),
        Some(_) => Err(CmdlineError::BadValue { option }),
        None => Err(CmdlineError::MissingValue { option }),
    }
}

fn flag(value: Option<&[u8]>, option: &'static str) -> Result<(), CmdlineError> {
    match value {
        None => Ok(()),
        Some(_) => Err(CmdlineError::UnexpectedValue { option }),
    }
}

/// One comma-separated `memmap=` entry, after x86 `parse_memmap()`: `nn#ss`, `nn$ss`,
/// `nn!ss` avoid `[ss, ss + nn)`; `nn@ss` is usable memory (ignored); bare `nn` is a
/// limit. `exactmap` gives `None`. Any other form is an error. (Linux reads an avoided
/// region starting at 0 as a limit; here it stays an avoided region, the safer reading.)
fn memmap_entry(s: &[u8]) -> Result<Option<MemmapEntry>, CmdlineError> {
    const BAD: CmdlineError = CmdlineError::BadValue { option: "memmap" };
    if s == b"exactmap" {
        return Ok(None);
    }
    let (size, rest) = parse_size(s).ok_or(BAD)?;
    let (kind, start) = match rest.split_first() {
        None => (MemmapKind::Limit, 0),
        // `nn%ss-old+new` changes the type of [ss, ss + nn): avoided, to be safe.
        Some((b'#' | b'$' | b'!' | b'@' | b'%', tail)) => {
            let tail = match rest.first() {
                Some(b'%') => tail.split(|&b| b == b'-').next().unwrap_or_default(),
                _ => tail,
            };
            let start = match parse_size(tail) {
                Some((start, [])) => start,
                _ => return Err(BAD),
            };
            let kind = if rest.first() == Some(&b'@') {
                MemmapKind::Ignore
            } else {
                MemmapKind::Avoid
            };
            (kind, start)
        }
        Some(_) => return Err(BAD),
    };
    if kind == MemmapKind::Avoid && start.checked_add(size).is_none() {
        return Err(BAD);
    }
    Ok(Some(MemmapEntry { kind, start, size }))
}

/// Reads the options the shim cares about. Tokens it does not read are skipped
/// whatever bytes they hold; a malformed value of an option it reads is an error.
pub fn parse(cmdline: &[u8]) -> Result<Options, CmdlineError> {
    let end = cmdline
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(cmdline.len());
    let mut args = trim_start(cmdline.get(..end).unwrap_or(&[]));
    let mut opts = Options::default();
    while !args.is_empty() {
        let (param, value, rest) = next_arg(args);
        args = rest;
        match param {
            b"--" if value.is_none() => break,
            b"kaslr" => {
                flag(value, "kaslr")?;
                opts.nokaslr = false;
            }
            b"nokaslr" => {
                flag(value, "nokaslr")?;
                opts.nokaslr = true;
            }
            // x86 `mem=nopentium` is not a limit.
            b"mem" if value == Some(b"nopentium") => {}
            b"mem" => {
                let limit = size_value(value, "mem")?;
                if limit == 0 {
                    return Err(CmdlineError::BadValue { option: "mem" });
                }
                opts.mem_limit = Some(limit);
            }
            b"memmap" => {
                let value = value.ok_or(CmdlineError::MissingValue { option: "memmap" })?;
                for part in value.split(|&b| b == b',') {
                    let Some(entry) = memmap_entry(part)? else {
                        continue;
                    };
                    let next = opts.memmap_count.checked_add(1);
                    match (opts.memmap.get_mut(opts.memmap_count), next) {
                        (Some(slot), Some(n)) => {
                            *slot = Some(entry);
                            opts.memmap_count = n;
                        }
                        _ => opts.memmap_overflow = true,
                    }
                }
            }
            b"shim.verbose" => {
                flag(value, "shim.verbose")?;
                opts.verbose = true;
            }
            b"shim.offset" => opts.image_offset = Some(size_value(value, "shim.offset")?),
            b"shim.weak" => opts.weak_fixed = choice(value, "shim.weak", b"fixed", b"random")?,
            b"shim.sha256" => {
                opts.sha256_portable = choice(value, "shim.sha256", b"portable", b"auto")?
            }
            p if p.starts_with(b"shim.") => {
                return Err(CmdlineError::UnknownShimOption(Name::new(p)))
            }
            _ => {}
        }
    }
    Ok(opts)
}

/// The command line the next stage sees: every token as written, in order, except
/// the shim's own `shim.*` options (before a `--`; what follows `--` belongs to init
/// and is kept whole). Tokens are rejoined with one space. Writes into `out`, which
/// needs at most `cmdline.len()` bytes, and returns the length (no NUL).
pub fn without_shim_options(cmdline: &[u8], out: &mut [u8]) -> Option<usize> {
    let end = cmdline
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(cmdline.len());
    let mut args = trim_start(cmdline.get(..end).unwrap_or(&[]));
    let mut len = 0usize;
    let mut put = |bytes: &[u8]| -> Option<()> {
        let sep = usize::from(len > 0);
        let new_len = len.checked_add(sep)?.checked_add(bytes.len())?;
        let dest = out.get_mut(len..new_len)?;
        if let Some((first, rest)) = dest.split_first_mut() {
            match sep {
                1 => {
                    *first = b' ';
                    rest.copy_from_slice(bytes);
                }
                _ => dest.copy_from_slice(bytes),
            }
        }
        len = new_len;
        Some(())
    };
    while !args.is_empty() {
        let (param, value, rest) = next_arg(args);
        let token = args.get(..token_len(args)).unwrap_or_default();
        if param == b"--" && value.is_none() {
            put(args)?;
            break;
        }
        if !param.starts_with(b"shim.") {
            put(token)?;
        }
        args = rest;
    }
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stripped(line: &str) -> String {
        let mut out = vec![0; line.len()];
        let n = without_shim_options(line.as_bytes(), &mut out).unwrap();
        String::from_utf8(out[..n].to_vec()).unwrap()
    }

    #[test]
    fn shim_options_are_removed_for_the_next_stage() {
        assert_eq!(
            stripped("console=ttyAMA0 shim.verbose  nokaslr shim.offset=0x200000 quiet"),
            "console=ttyAMA0 nokaslr quiet"
        );
        assert_eq!(stripped("shim.verbose"), "");
        assert_eq!(stripped(""), "");
        assert_eq!(
            stripped("a=\"x shim.verbose y\" \"shim.verbose\" b"),
            "a=\"x shim.verbose y\" b"
        );
        assert_eq!(
            stripped("root=/dev/vda -- shim.verbose  init  args"),
            "root=/dev/vda -- shim.verbose  init  args"
        );
        let mut small = [0u8; 3];
        assert_eq!(without_shim_options(b"abcd", &mut small), None);
    }

    /// Found by the cmdline fuzz target: the whitespace ending an unterminated quote
    /// is part of its token (Linux `next_arg()`), but stripping trimmed it, so
    /// `"mem\t` (ignored) came out as `"mem`, which is `mem` with no value.
    #[test]
    fn an_unterminated_quote_keeps_its_whitespace() {
        assert!(parse(b"\"mem\t\t\t\t").is_ok());
        assert_eq!(stripped("\"mem\t\t\t\t"), "\"mem\t\t\t\t");
        assert_eq!(stripped("a \"b c  "), "a \"b c  ");
        assert_eq!(stripped("a  b  "), "a b");
        assert_eq!(token_len(b"\"q r\" s"), 5);
    }

    proptest! {
        #[test]
        fn stripping_keeps_every_other_option(line in "[a-z=. \"-]{0,60}") {
            let mut out = vec![0; line.len()];
            let n = without_shim_options(line.as_bytes(), &mut out).unwrap();
            let again = parse(&out[..n]);
            // What the shim would read of the result has no shim options left.
            if let Ok(opts) = again {
                prop_assert!(!opts.verbose && opts.image_offset.is_none());
            }
            if let (Ok(a), Ok(b)) = (parse(line.as_bytes()), again) {
                prop_assert_eq!(a.nokaslr, b.nokaslr);
                prop_assert_eq!(a.mem_limit, b.mem_limit);
            }
        }
    }

    #[test]
    fn tokens() {
        assert_eq!(next_arg(b"a=b c"), (&b"a"[..], Some(&b"b"[..]), &b"c"[..]));
        assert_eq!(
            next_arg(b"x=\"1 2\"  y"),
            (&b"x"[..], Some(&b"1 2"[..]), &b"y"[..])
        );
        assert_eq!(next_arg(b"\"q r\" s"), (&b"q r"[..], None, &b"s"[..]));
        assert_eq!(
            next_arg(b"\"k=v w\""),
            (&b"k"[..], Some(&b"v w"[..]), &b""[..])
        );
        assert_eq!(next_arg(b"flag"), (&b"flag"[..], None, &b""[..]));
        assert_eq!(next_arg(b"e="), (&b"e"[..], Some(&b""[..]), &b""[..]));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size(b"0"), Some((0, &b""[..])));
        assert_eq!(parse_size(b"512M"), Some((512 << 20, &b""[..])));
        assert_eq!(parse_size(b"0x8000k@"), Some((0x8000 << 10, &b"@"[..])));
        assert_eq!(parse_size(b"16t"), Some((16 << 40, &b""[..])));
        assert_eq!(
            parse_size(b"0xffffffffffffffff"),
            Some((u64::MAX, &b""[..]))
        );
        assert_eq!(parse_size(b"0x10000000000000000"), None);
        assert_eq!(parse_size(b"18446744073709551616"), None);
        assert_eq!(parse_size(b"0x1000000T"), None);
        assert_eq!(parse_size(b"010"), None, "octal in Linux");
        assert_eq!(parse_size(b"0x"), None);
        assert_eq!(parse_size(b"G"), None);
    }

    #[test]
    fn options() {
        let o = parse(
            b"console=ttyS0 nokaslr mem=2G shim.verbose root=/dev/\xff kaslr shim.offset=0x200000",
        )
        .unwrap();
        assert!(!o.nokaslr && o.verbose);
        assert_eq!(o.mem_limit, Some(2 << 30));
        assert_eq!(o.image_offset, Some(0x20_0000));
        assert!(parse(b"shim.weak=fixed").unwrap().weak_fixed);
        assert!(
            !parse(b"shim.weak=fixed shim.weak=random")
                .unwrap()
                .weak_fixed
        );
        assert!(parse(b"shim.weak=maybe").is_err() && parse(b"shim.weak").is_err());
        assert!(parse(b"shim.sha256=portable").unwrap().sha256_portable);
        assert!(
            !parse(b"shim.sha256=portable shim.sha256=auto")
                .unwrap()
                .sha256_portable
        );
        assert!(!parse(b"").unwrap().sha256_portable);
        assert!(parse(b"shim.sha256=sha-ni").is_err() && parse(b"shim.sha256").is_err());
        assert!(parse(b"kaslr nokaslr").unwrap().nokaslr);
        assert_eq!(
            parse(b"mem=\"1G\" -- nokaslr shim.bogus")
                .unwrap()
                .mem_limit,
            Some(1 << 30)
        );
        assert!(parse(b"nokaslr\0shim.bogus").unwrap().nokaslr);
        assert_eq!(parse(b"").unwrap(), Options::default());
        assert_eq!(parse(b"mem=nopentium").unwrap().mem_limit, None);
        assert_eq!(
            parse(b"foo=\"unterminated mem=1x").unwrap(),
            Options::default()
        );
    }

    #[test]
    fn memmap() {
        let o = parse(b"memmap=64K$0x1000000,1G memmap=exactmap memmap=16M@0x4000000").unwrap();
        assert_eq!(o.memmap_count, 3);
        let v: Vec<_> = o.memmaps().collect();
        assert_eq!(
            v,
            [
                MemmapEntry {
                    kind: MemmapKind::Avoid,
                    start: 0x100_0000,
                    size: 64 << 10
                },
                MemmapEntry {
                    kind: MemmapKind::Limit,
                    start: 0,
                    size: 1 << 30
                },
                MemmapEntry {
                    kind: MemmapKind::Ignore,
                    start: 0x400_0000,
                    size: 16 << 20
                },
            ]
        );
        assert_eq!(parse(b"memmap=1M!2M,1M#3M").unwrap().memmap_count, 2);
        // Beyond 16 entries: kept up to 16, and the placement is not drawn.
        let many = parse(b"memmap=1,2,3,4,5,6,7,8 memmap=9,10,11,12,13,14,15,16").unwrap();
        assert!(!many.memmap_overflow && many.memmap_count == 16);
        let more = parse(b"memmap=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17").unwrap();
        assert!(more.memmap_overflow && more.memmap_count == 16);
        // memmap=nn%ss-old+new: the range is avoided.
        let pct = parse(b"memmap=4G%0x100000000-1+12").unwrap();
        assert_eq!(
            pct.memmaps().next(),
            Some(MemmapEntry {
                kind: MemmapKind::Avoid,
                start: 1 << 32,
                size: 4 << 30
            })
        );
    }

    #[test]
    fn errors() {
        let bad = |o| Err(CmdlineError::BadValue { option: o });
        assert_eq!(parse(b"mem=12Q"), bad("mem"));
        assert_eq!(parse(b"mem=0"), bad("mem"));
        assert_eq!(parse(b"mem=99999999999T"), bad("mem"));
        assert_eq!(
            parse(b"mem"),
            Err(CmdlineError::MissingValue { option: "mem" })
        );
        assert_eq!(
            parse(b"nokaslr=1"),
            Err(CmdlineError::UnexpectedValue { option: "nokaslr" })
        );
        assert_eq!(parse(b"shim.offset=zz"), bad("shim.offset"));
        assert_eq!(parse(b"memmap=1M^2M"), bad("memmap"));
        assert_eq!(parse(b"memmap=1M$"), bad("memmap"));
        assert_eq!(parse(b"memmap=0xffffffffffffffff$1"), bad("memmap"));
        assert_eq!(parse(b"memmap="), bad("memmap"));
        let e = parse(b"shim.verbsoe").unwrap_err();
        assert_eq!(e.to_string(), "unknown option shim.verbsoe");
        let e = parse(b"shim.\xff=1").unwrap_err();
        assert_eq!(e.to_string(), "unknown option shim.\\xff");
        let long = [b"shim.".as_slice(), &[b'a'; 40]].concat();
        assert!(parse(&long).unwrap_err().to_string().ends_with("aaa..."));
        assert_eq!(
            bad("mem").unwrap_err().to_string(),
            "malformed value for mem="
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn random_option_soup(words in proptest::collection::vec(
            prop::sample::select(vec!["mem=", "memmap=", "\"", "=", " ", "1G", "0x", "$", "@", ",", "kaslr",
                                      "nokaslr", "shim.offset=", "shim.verbose", "--", "\t", "K"]), 0..30)) {
            let _ = parse(words.concat().as_bytes());
        }
    }
}
