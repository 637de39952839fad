//! Reading the guest console: splitting the byte stream into lines and parsing the
//! `shim: ` and `payload: ` lines that decide a boot's outcome. Pure; no QEMU here.

/// What one console line reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `payload: ok va=0x.. pa=0x.. ...`
    PayloadOk { va: u64, pa: u64, rest: String },
    /// `payload: FAIL <why>`
    PayloadFail(String),
    /// Any other `payload: ` line.
    Payload(String),
    /// `shim: placed pa=0x.. va=0x.. slots=N entropy=<bits> sources=<list>`
    ShimPlaced(Placed),
    /// `shim: payload digest mismatch ...`
    DigestMismatch(String),
    /// Any other `shim: ` line (progress or error; the text after the tag).
    Shim(String),
}

/// The shim's own report of where it put the payload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placed {
    pub pa: u64,
    pub va: u64,
    pub slots: Option<u64>,
    pub entropy: Option<String>,
    pub sources: Option<String>,
}

const SHIM: &str = "shim: ";
const PAYLOAD: &str = "payload: ";

/// Parses one console line (without its line ending). The tag may follow other
/// output on the same line; the leftmost tag wins.
pub fn parse_line(line: &str) -> Option<Event> {
    let shim = line.find(SHIM);
    let payload = line.find(PAYLOAD);
    match (shim, payload) {
        (Some(s), p) if p.is_none_or(|p| s < p) => Some(parse_shim(line[s + SHIM.len()..].trim())),
        (_, Some(p)) => Some(parse_payload(line[p + PAYLOAD.len()..].trim())),
        _ => None,
    }
}

fn parse_shim(text: &str) -> Event {
    if text.contains("payload digest mismatch") {
        return Event::DigestMismatch(text.to_string());
    }
    if let Some(fields) = text.strip_prefix("placed ") {
        if let (Some(pa), Some(va)) = (hex_field(fields, "pa"), hex_field(fields, "va")) {
            return Event::ShimPlaced(Placed {
                pa,
                va,
                slots: field(fields, "slots").and_then(|s| s.parse().ok()),
                entropy: field(fields, "entropy").map(String::from),
                sources: field(fields, "sources").map(String::from),
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
                va: 0xffff_ffc0_12a0_0000,
                slots: Some(431),
                entropy: Some("24".into()),
                sources: Some("rndr,counter".into()),
            }))
        );
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
}
