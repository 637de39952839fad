//! `bootparams`: any bytes as an x86 zero page followed by more memory. The input is
//! physical memory from [`BASE`]: the zero page there, and whatever `cmd_line_ptr`,
//! `setup_data` and SETUP_INDIRECT point at when it lies inside the input. Nothing
//! panics; the fields read agree with the bytes; the RAM from e820 and E820_EXT is
//! exactly "in a RAM entry and in no other entry" at every point; every setup_data
//! node, the zero page and the initrd are avoided; the command line is what lies at
//! `cmd_line_ptr` up to its NUL.

use shim_common::bootparams::{self, BootParams, BootParamsError};
use shim_common::memmap::{MemoryMap, Range};

/// The physical address of the input's first byte (the zero page).
pub const BASE: u64 = 0x1000;

/// `read(pa, len)` over the input: exactly `len` bytes or `None`.
pub fn reader<'m>(mem: &'m [u8]) -> impl FnMut(u64, u64) -> Option<&'m [u8]> + 'm {
    move |pa, len| {
        let start = usize::try_from(pa.checked_sub(BASE)?).ok()?;
        mem.get(start..start.checked_add(usize::try_from(len).ok()?)?)
    }
}

/// `read(pa, len)` that returns fewer bytes where the input ends (as the x86 shim reads
/// the command line up to the end of what it has mapped).
pub fn reader_short<'m>(mem: &'m [u8]) -> impl FnMut(u64, u64) -> Option<&'m [u8]> + 'm {
    move |pa, len| {
        let start = usize::try_from(pa.checked_sub(BASE)?).ok()?;
        let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
        mem.get(start..end.min(mem.len()))
    }
}

fn le(data: &[u8], at: usize, n: usize) -> u64 {
    let mut b = [0u8; 8];
    b[..n].copy_from_slice(&data[at..at + n]);
    u64::from_le_bytes(b)
}

pub fn run(data: &[u8]) {
    let bp = match BootParams::new(data) {
        Ok(bp) => bp,
        Err(BootParamsError::Truncated { len }) => {
            assert!(len < bootparams::ZERO_PAGE_SIZE);
            return;
        }
        Err(BootParamsError::BadHeaderMagic(m)) => {
            assert_ne!(m, bootparams::HDRS_MAGIC);
            return;
        }
        Err(e) => panic!("BootParams::new: {e:?}"),
    };
    check_fields(data, &bp);
    let table = check_e820(data, &bp);
    check_machine(data, &bp, table);
    check_command_line(data, &bp);
}

/// The pointers and sizes, from their bytes (the sentinel zeroes the ext_* halves).
fn check_fields(data: &[u8], bp: &BootParams<'_>) {
    let ext = |at: usize| {
        if data[0x1ef] != 0 {
            0
        } else {
            le(data, at, 4) << 32
        }
    };
    let start = le(data, 0x218, 4) | ext(0xc0);
    let size = le(data, 0x21c, 4) | ext(0xc4);
    let initrd = (size != 0).then(|| Range {
        start,
        end: start.saturating_add(size),
    });
    assert_eq!(bp.initrd(), initrd);
    assert_eq!(bp.cmd_line_ptr(), le(data, 0x228, 4) | ext(0xc8));
    assert_eq!(bp.setup_data(), le(data, 0x250, 8));
    let version = le(data, 0x206, 2);
    let max = if version >= 0x206 {
        le(data, 0x238, 4)
    } else {
        255
    };
    assert_eq!(u64::from(bp.header().cmdline_max()), max);
}

/// The zero page's e820 table as the bytes hold it, or `None` if its count is too
/// large.
fn check_e820(data: &[u8], bp: &BootParams<'_>) -> Option<Vec<(u64, u64, u32)>> {
    let count = usize::from(data[0x1e8]);
    let table: Vec<(u64, u64, u32)> = (0..count.min(128))
        .map(|i| {
            let at = 0x2d0 + 20 * i;
            (
                le(data, at, 8),
                le(data, at + 8, 8),
                le(data, at + 16, 4) as u32,
            )
        })
        .collect();
    match bp.e820() {
        Ok(entries) => {
            assert!(count <= 128);
            assert!(entries.eq(table.iter().copied()), "e820 entries");
        }
        Err(e) => {
            assert!(count > 128, "{e:?}");
            return None;
        }
    }
    let mut ram = MemoryMap::new();
    let result = bootparams::ram_from_e820(table.iter().copied(), &mut ram);
    check_ram(&table, result.map(|dropped| (ram, dropped)));
    Some(table)
}

/// `ram_from_e820`'s rule at every elementary interval: RAM where a RAM entry is and
/// no other entry is; with bytes dropped (more pieces than the map holds), a full map
/// and never RAM where the rule says not.
fn check_ram(entries: &[(u64, u64, u32)], ram: Result<(MemoryMap, u64), BootParamsError>) {
    let overflow = entries
        .iter()
        .position(|&(a, s, _)| a.checked_add(s).is_none());
    let (ram, dropped) = match (ram, overflow) {
        (Ok(got), None) => got,
        (Err(BootParamsError::E820Overflow { index, .. }), Some(i)) => {
            assert_eq!(index, i);
            return;
        }
        (r, o) => panic!("ram_from_e820: {r:?} with overflowing entry {o:?}"),
    };
    let ranges: Vec<(Range, bool)> = entries
        .iter()
        .map(|&(a, s, t)| {
            (
                Range {
                    start: a,
                    end: a + s,
                },
                t == bootparams::E820_TYPE_RAM,
            )
        })
        .collect();
    let mut points: Vec<u64> = ranges.iter().flat_map(|(r, _)| [r.start, r.end]).collect();
    points.push(0);
    points.sort_unstable();
    points.dedup();
    let within = |r: &Range, p: u64| r.start <= p && p < r.end;
    for p in points {
        let want = ranges.iter().any(|(r, is_ram)| *is_ram && within(r, p))
            && !ranges.iter().any(|(r, is_ram)| !is_ram && within(r, p));
        let has = ram.iter().any(|r| within(&r, p));
        match dropped {
            0 => assert_eq!(has, want, "e820 RAM at {p:#x}"),
            _ => assert!(
                !has || want,
                "e820 RAM at {p:#x} where an entry reserves it"
            ),
        }
    }
    if dropped > 0 {
        assert_eq!(
            ram.len(),
            shim_common::memmap::MAX_RANGES,
            "dropped with room left"
        );
    }
}

/// `bootparams::Machine::read` over the input as memory.
fn check_machine(data: &[u8], bp: &BootParams<'_>, table: Option<Vec<(u64, u64, u32)>>) {
    let nodes: Vec<_> = bootparams::walk_setup_data(bp.setup_data(), reader(data)).collect();
    assert!(nodes.len() <= bootparams::MAX_SETUP_DATA_NODES + 1);
    for (i, node) in nodes.iter().enumerate() {
        if node.is_err() {
            assert_eq!(i, nodes.len() - 1, "the walk went on after an error");
        }
    }
    let m = bootparams::Machine::read(BASE, bp, reader(data));
    let Ok(m) = m else { return };
    let Some(mut entries) = table else {
        panic!("Machine::read succeeded with a bad e820 count");
    };
    let mut avoid = m.avoid.iter();
    assert_eq!(
        avoid.next(),
        Some((Range::from_base_size(BASE, 4096).unwrap(), "boot_params"))
    );
    if let Some(initrd) = bp.initrd().filter(|r| !r.is_empty()) {
        assert_eq!(avoid.next(), Some((initrd, "initrd")));
    }
    let mut seeds = Vec::new();
    for node in nodes {
        let node = node.expect("Machine::read succeeded past a bad setup_data node");
        assert_eq!(avoid.next(), Some((node.range(), "setup_data")));
        if let Some(target) = node.indirect().expect("a bad indirect node was accepted") {
            assert_eq!(avoid.next(), Some((target, "setup_data indirect")));
        }
        match node.typ {
            bootparams::SETUP_E820_EXT => {
                let ext = bootparams::e820_ext(node.data).expect("a bad E820_EXT was accepted");
                entries.extend(ext);
            }
            bootparams::SETUP_RNG_SEED => seeds.push((node.data, node.pa)),
            _ => {}
        }
    }
    assert_eq!(
        avoid.next(),
        None,
        "more avoided than boot_params, initrd, setup_data"
    );
    assert!(
        m.rng_seeds().eq(seeds.iter().copied()),
        "every SETUP_RNG_SEED node"
    );
    check_ram(&entries, Ok((m.ram, m.ram_dropped)));
}

/// The command line lies at `cmd_line_ptr`, ends at its NUL, within `cmdline_size`.
fn check_command_line(data: &[u8], bp: &BootParams<'_>) {
    let ptr = bp.cmd_line_ptr();
    match bootparams::command_line(bp, reader_short(data)) {
        Ok(None) => assert_eq!(ptr, 0),
        Ok(Some((line, range))) => {
            assert_eq!(range.start, ptr);
            assert_eq!(range.len(), line.len() as u64 + 1);
            assert!(!line.contains(&0));
            assert!(line.len() as u64 <= u64::from(bp.header().cmdline_max()));
            let at = usize::try_from(ptr - BASE).unwrap();
            assert_eq!(&data[at..at + line.len()], line);
            assert_eq!(data[at + line.len()], 0);
        }
        Err(_) => {}
    }
}
