//! Editing `/chosen` by rebuilding the device tree into a new buffer: what the shim
//! hands on to Linux (fresh seeds, the bootargs without the shim's own options).
//! The copy has the standard layout (header, reservations, structure, strings; DTSpec
//! 5.1), so it may grow freely; the source blob is only read.

use super::{
    be32, is_chosen, Event, Fdt, FdtError, FDT_BEGIN_NODE, FDT_END, FDT_END_NODE, FDT_PROP,
};
use super::{Visit, HEADER_SIZE, MAGIC};

/// One change to `/chosen`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit<'v> {
    /// Sets the property (inserting it if absent); later duplicates of it are dropped.
    Set(&'static str, &'v [u8]),
    /// Drops every copy of the property.
    Remove(&'static str),
}

impl Edit<'_> {
    fn name(&self) -> &'static str {
        match self {
            Edit::Set(name, _) | Edit::Remove(name) => name,
        }
    }
}

/// The version the copy declares (and the oldest it is compatible with).
const VERSION: u32 = 17;
const LAST_COMP_VERSION: u32 = 16;
/// Edits per rebuild; the shim makes three.
const MAX_EDITS: usize = 8;

/// An upper bound on the size of the rebuilt tree, to size its buffer. It saturates at
/// `usize::MAX`, which no buffer holds: [`rebuild`] then fails with `NoRoom`.
pub fn rebuilt_size(fdt: &Fdt<'_>, edits: &[Edit<'_>]) -> usize {
    let added = edits
        .iter()
        .map(|e| match e {
            // A property token, its value and its name (if the strings block lacks it).
            Edit::Set(name, value) => [12, align4(value.len()), name.len(), 1]
                .into_iter()
                .fold(0, usize::saturating_add),
            Edit::Remove(_) => 0,
        })
        .fold(0, usize::saturating_add);
    // A `/chosen` node of our own: its two tokens and its name, "chosen\0" padded to 8.
    let chosen = 4 + 8 + 4;
    // The header may shrink to 40 bytes and the reservations realign to 8.
    [fdt.bytes().len(), added, chosen, 8]
        .into_iter()
        .fold(0, usize::saturating_add)
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// Bytes written at a cursor, failing instead of overrunning.
struct Writer<'o> {
    out: &'o mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, b: &[u8]) -> Result<(), FdtError> {
        let end = self.at.checked_add(b.len()).ok_or(FdtError::NoRoom)?;
        self.out
            .get_mut(self.at..end)
            .ok_or(FdtError::NoRoom)?
            .copy_from_slice(b);
        self.at = end;
        Ok(())
    }

    fn u32(&mut self, v: u32) -> Result<(), FdtError> {
        self.bytes(&v.to_be_bytes())
    }

    fn pad4(&mut self) -> Result<(), FdtError> {
        while !self.at.is_multiple_of(4) {
            self.bytes(&[0])?;
        }
        Ok(())
    }

    fn prop(&mut self, nameoff: usize, value: &[u8]) -> Result<(), FdtError> {
        let (len, off) = (u32_of(value.len())?, u32_of(nameoff)?);
        self.u32(FDT_PROP)?;
        self.u32(len)?;
        self.u32(off)?;
        self.bytes(value)?;
        self.pad4()
    }

    /// Bytes written since `start`, an earlier cursor.
    fn since(&self, start: usize) -> Result<usize, FdtError> {
        self.at.checked_sub(start).ok_or(FdtError::NoRoom)
    }
}

fn u32_of(n: usize) -> Result<u32, FdtError> {
    u32::try_from(n).map_err(|_| FdtError::NoRoom)
}

/// Where each set name lies in the new strings block: found in the old one, or
/// appended after it. A removed name needs no string (no property refers to it).
struct Names {
    offsets: [usize; MAX_EDITS],
}

impl Names {
    fn new(strings: &[u8], edits: &[Edit<'_>]) -> Result<(Names, usize), FdtError> {
        let mut names = Names {
            offsets: [0; MAX_EDITS],
        };
        let mut appended = 0usize;
        for (i, edit) in edits.iter().enumerate() {
            let slot = names.offsets.get_mut(i).ok_or(FdtError::NoRoom)?;
            let Edit::Set(name, _) = edit else { continue };
            let name = name.as_bytes();
            *slot = match find_string(strings, name) {
                Some(at) => at,
                None => {
                    let at = strings.len().checked_add(appended);
                    appended = appended
                        .checked_add(name.len())
                        .and_then(|n| n.checked_add(1))
                        .ok_or(FdtError::NoRoom)?;
                    at.ok_or(FdtError::NoRoom)?
                }
            };
        }
        Ok((names, appended))
    }
}

/// The offset of `name` as a whole NUL-terminated string of the strings block.
fn find_string(strings: &[u8], name: &[u8]) -> Option<usize> {
    let mut at = 0usize;
    for s in strings.split(|&b| b == 0) {
        let end = at.checked_add(s.len())?;
        if s == name && end < strings.len() {
            return Some(at);
        }
        at = end.checked_add(1)?;
    }
    None
}

/// Copies `fdt` into `out` with `edits` applied to `/chosen` (created if absent), and
/// returns the new `totalsize`. NOPs are dropped; everything else is kept as it was.
pub fn rebuild(fdt: &Fdt<'_>, edits: &[Edit<'_>], out: &mut [u8]) -> Result<usize, FdtError> {
    let blob = fdt.bytes();
    let h = &fdt.header;
    let strings = blob.get(h.strings.clone()).ok_or(FdtError::Truncated)?;
    let (names, appended) = Names::new(strings, edits)?;
    let mut w = Writer { out, at: 0 };

    // Header, filled in at the end; then the reservations up to their terminator.
    w.bytes(&[0; HEADER_SIZE])?;
    let rsvmap = w.at;
    let mut rest = blob.get(h.rsvmap..).ok_or(FdtError::Truncated)?;
    loop {
        let (entry, tail) = rest.split_first_chunk::<16>().ok_or(FdtError::Truncated)?;
        w.bytes(entry)?;
        rest = tail;
        if entry.iter().all(|&b| b == 0) {
            break;
        }
    }

    // The structure block, as the checked walk sees it (NOPs are gone); depth 0 is
    // the root, so `/chosen` is a node of depth 1 and its properties come at depth 1.
    // `/chosen` is the first top-level `chosen` or `chosen@<unit>` (what libfdt finds);
    // the new properties go before its first subnode, where libfdt still sees them.
    let off_struct = w.at;
    let mut done = [false; MAX_EDITS];
    let mut in_chosen = false;
    let mut seen_chosen = false;
    fdt.walk(|depth, event| {
        match event {
            Event::Begin { name, .. } => {
                if depth == 1 {
                    in_chosen = is_chosen(name) && !seen_chosen;
                    seen_chosen |= in_chosen;
                } else if depth == 2 && in_chosen {
                    add_remaining(&mut w, edits, &names, &mut done)?;
                }
                w.u32(FDT_BEGIN_NODE)?;
                w.bytes(name)?;
                w.bytes(&[0])?;
                w.pad4()?;
            }
            Event::Prop {
                name,
                value,
                nameoff,
                ..
            } => {
                let edit = match in_chosen && depth == 1 {
                    true => edits.iter().position(|e| e.name().as_bytes() == name),
                    false => None,
                };
                match edit.map(|i| (i, edits.get(i))) {
                    None => w.prop(nameoff, value)?,
                    Some((i, Some(Edit::Set(_, new)))) => {
                        if let Some(d @ false) = done.get_mut(i) {
                            w.prop(names.offsets.get(i).copied().unwrap_or(0), new)?;
                            *d = true;
                        }
                    }
                    Some(_) => {}
                }
            }
            Event::End => {
                if in_chosen && depth == 1 {
                    add_remaining(&mut w, edits, &names, &mut done)?;
                    in_chosen = false;
                }
                if depth == 0 && !seen_chosen {
                    w.u32(FDT_BEGIN_NODE)?;
                    w.bytes(b"chosen\0")?;
                    w.pad4()?;
                    add_remaining(&mut w, edits, &names, &mut done)?;
                    w.u32(FDT_END_NODE)?;
                }
                w.u32(FDT_END_NODE)?;
            }
        }
        Ok(Visit::Enter)
    })?;
    w.u32(FDT_END)?;
    let size_struct = w.since(off_struct)?;

    // The strings block: the old one, then the names it lacked.
    let off_strings = w.at;
    w.bytes(strings)?;
    for (i, edit) in edits.iter().enumerate() {
        let offset = names.offsets.get(i).copied().unwrap_or(0);
        if let Edit::Set(name, _) = edit {
            if offset >= strings.len() && w.since(off_strings) == Ok(offset) {
                w.bytes(name.as_bytes())?;
                w.bytes(&[0])?;
            }
        }
    }
    let size_strings = w.since(off_strings)?;
    debug_assert_eq!(size_strings.checked_sub(strings.len()), Some(appended));
    let totalsize = w.at;

    let boot_cpuid = be32(blob, 28)?;
    // Over the zeros written first.
    let mut header = Writer { out: w.out, at: 0 };
    for v in [
        MAGIC,
        u32_of(totalsize)?,
        u32_of(off_struct)?,
        u32_of(off_strings)?,
        u32_of(rsvmap)?,
        VERSION,
        LAST_COMP_VERSION,
        boot_cpuid,
        u32_of(size_strings)?,
        u32_of(size_struct)?,
    ] {
        header.u32(v)?;
    }
    Ok(totalsize)
}

/// Writes the `Set` edits not yet written, at the end of `/chosen`'s properties.
fn add_remaining(
    w: &mut Writer<'_>,
    edits: &[Edit<'_>],
    names: &Names,
    done: &mut [bool; MAX_EDITS],
) -> Result<(), FdtError> {
    for (i, edit) in edits.iter().enumerate() {
        if let (Edit::Set(_, value), Some(d @ false)) = (edit, done.get_mut(i)) {
            w.prop(names.offsets.get(i).copied().unwrap_or(0), value)?;
            *d = true;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdt::tests::{dtb, Tree};
    use crate::fdt::Machine;

    fn rebuilt(blob: &[u8], edits: &[Edit<'_>]) -> Vec<u8> {
        let fdt = Fdt::new(blob).unwrap();
        let mut out = vec![0xaa; rebuilt_size(&fdt, edits)];
        let n = rebuild(&fdt, edits, &mut out).unwrap();
        out.truncate(n);
        out
    }

    /// Every node path with every property, as the `fdt` crate reads them.
    fn flatten(blob: &[u8]) -> Vec<(String, String, Vec<u8>)> {
        let fdt = ::fdt::Fdt::new(blob).unwrap();
        let mut all = Vec::new();
        for node in fdt.all_nodes() {
            for p in node.properties() {
                all.push((node.name.to_string(), p.name.to_string(), p.value.to_vec()));
            }
        }
        all.sort();
        all
    }

    fn chosen(blob: &[u8], name: &str) -> Option<Vec<u8>> {
        let fdt = ::fdt::Fdt::new(blob).unwrap();
        let node = fdt.find_node("/chosen")?;
        node.property(name).map(|p| p.value.to_vec())
    }

    const SEED: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

    #[test]
    fn replaces_seeds_and_bootargs_and_keeps_the_rest() {
        let blob = dtb("virt-1G-smp1.dtb");
        let rng = [0x5a; 64];
        let edits = [
            Edit::Set("kaslr-seed", &SEED),
            Edit::Set("rng-seed", &rng),
            Edit::Set("bootargs", b"console=ttyAMA0\0"),
        ];
        let out = rebuilt(&blob, &edits);
        assert_eq!(chosen(&out, "kaslr-seed").unwrap(), SEED);
        assert_eq!(chosen(&out, "rng-seed").unwrap(), rng);
        assert_eq!(chosen(&out, "bootargs").unwrap(), b"console=ttyAMA0\0");
        // The rng-seed grew from 32 to 64 bytes: the tree moved and grew.
        assert!(out.len() > Fdt::new(&blob).unwrap().bytes().len() - 64);
        let (mut before, mut after) = (flatten(&blob), flatten(&out));
        let edited = |(_, name, _): &(String, String, Vec<u8>)| {
            ["kaslr-seed", "rng-seed", "bootargs"].contains(&name.as_str())
        };
        before.retain(|p| !edited(p));
        after.retain(|p| !edited(p));
        assert_eq!(before, after);
        // Our own reader agrees, and the reservations came along.
        let m = Machine::read(&Fdt::new(&out).unwrap()).unwrap();
        assert_eq!(m.kaslr_seed.map(|s| s.0), Some(0x0102_0304_0506_0708));
        let orig = Machine::read(&Fdt::new(&blob).unwrap()).unwrap();
        assert_eq!(m.ram, orig.ram);
    }

    #[test]
    fn inserts_missing_properties_and_names() {
        // The synthetic tree has bootargs but neither name "rng-seed" nor "linux,foo".
        let blob = dtb("synthetic-reserved.dtb");
        let without = rebuilt(
            &blob,
            &[Edit::Remove("kaslr-seed"), Edit::Remove("rng-seed")],
        );
        assert_eq!(chosen(&without, "kaslr-seed"), None);
        assert_eq!(chosen(&without, "rng-seed"), None);
        let with = rebuilt(
            &without,
            &[
                Edit::Set("kaslr-seed", &SEED),
                Edit::Set("linux,foo", b"bar\0"),
            ],
        );
        assert_eq!(chosen(&with, "kaslr-seed").unwrap(), SEED);
        assert_eq!(chosen(&with, "linux,foo").unwrap(), b"bar\0");
        let m = Machine::read(&Fdt::new(&with).unwrap()).unwrap();
        assert_eq!(m.reserved.len(), 4, "memreserve and reserved-memory kept");
        assert_eq!(m.bootargs, b"console=ttyAMA0 shim.verbose");
    }

    /// Found by the fdt fuzz target: a `/chosen` with a subnode (the Raspberry Pi
    /// firmware adds `/chosen/bootloader`) lost every new property, and edits went to
    /// a later `chosen` rather than the `chosen@<unit>` libfdt finds first.
    #[test]
    fn new_properties_go_before_the_first_subnode_of_the_first_chosen() {
        let blob = Tree::with_ram()
            .begin("chosen")
            .prop("bootargs", b"console=ttyAMA0\0")
            .begin("bootloader")
            .prop("build", b"x\0")
            .end()
            .end()
            .end()
            .finish();
        let out = rebuilt(&blob, &[Edit::Set("kaslr-seed", &SEED)]);
        assert_eq!(chosen(&out, "kaslr-seed").unwrap(), SEED);
        assert_eq!(chosen(&out, "bootargs").unwrap(), b"console=ttyAMA0\0");
        let m = Machine::read(&Fdt::new(&out).unwrap()).unwrap();
        assert_eq!(m.kaslr_seed.map(|(v, _)| v), Some(u64::from_be_bytes(SEED)));
        let fdt = ::fdt::Fdt::new(&out).unwrap();
        let build = fdt
            .find_node("/chosen/bootloader")
            .unwrap()
            .property("build");
        assert_eq!(build.unwrap().value, b"x\0");

        let blob = Tree::with_ram()
            .begin("chosen@0")
            .prop("rng-seed", &[7; 4])
            .end()
            .begin("chosen")
            .prop("rng-seed", &[9; 4])
            .end()
            .end()
            .finish();
        let out = rebuilt(&blob, &[Edit::Set("rng-seed", &SEED)]);
        assert_eq!(chosen(&out, "rng-seed").unwrap(), SEED);
        let fdt = ::fdt::Fdt::new(&out).unwrap();
        let later = fdt
            .all_nodes()
            .filter(|n| n.name == "chosen")
            .last()
            .unwrap();
        assert_eq!(later.property("rng-seed").unwrap().value, [9; 4]);
    }

    #[test]
    fn creates_chosen_when_there_is_none() {
        // A tree whose only child is a memory node: rename /chosen away first.
        let mut blob = dtb("virt-1G-smp1.dtb");
        let at = blob.windows(7).position(|w| w == b"chosen\0").unwrap();
        blob[at] = b'x';
        assert!(::fdt::Fdt::new(&blob)
            .unwrap()
            .find_node("/chosen")
            .is_none());
        let out = rebuilt(&blob, &[Edit::Set("rng-seed", &SEED)]);
        assert_eq!(chosen(&out, "rng-seed").unwrap(), SEED);
        assert!(::fdt::Fdt::new(&out)
            .unwrap()
            .find_node("/xhosen")
            .is_some());
    }

    #[test]
    fn duplicates_are_dropped_and_nops_vanish() {
        let blob = dtb("virt-1G-smp1.dtb");
        let twice = rebuilt(&blob, &[Edit::Set("rng-seed", &SEED)]);
        let again = rebuilt(&twice, &[Edit::Set("rng-seed", &[9; 16])]);
        let fdt = ::fdt::Fdt::new(&again).unwrap();
        let n = fdt
            .find_node("/chosen")
            .unwrap()
            .properties()
            .filter(|p| p.name == "rng-seed")
            .count();
        assert_eq!(n, 1);
        // Rebuilding without edits is a fixed point once NOPs are gone.
        let once = rebuilt(&again, &[]);
        assert_eq!(rebuilt(&once, &[]), once);
    }

    /// Found by the fdt fuzz target: removing a property whose name the strings block
    /// lacks appended the name anyway, so the tree outgrew `rebuilt_size`.
    #[test]
    fn removing_an_absent_name_adds_no_string() {
        let blob = dtb("virt-1G-smp1.dtb");
        let fdt = Fdt::new(&blob).unwrap();
        let edits = [
            Edit::Remove("linux,initrd-start"),
            Edit::Remove("linux,initrd-end"),
            Edit::Remove("linux,elfcorehdr"),
        ];
        let mut out = vec![0; rebuilt_size(&fdt, &edits)];
        let n = rebuild(&fdt, &edits, &mut out).unwrap();
        let strings = |b: &[u8]| {
            let h = crate::fdt::Header::read(b).unwrap();
            b[h.strings].to_vec()
        };
        assert_eq!(strings(&out[..n]), strings(&blob));
        assert_eq!(rebuilt(&out[..n], &[]), rebuilt(&blob, &[]));
    }

    #[test]
    fn too_small_a_buffer_is_an_error() {
        let blob = dtb("virt-1G-smp1.dtb");
        let fdt = Fdt::new(&blob).unwrap();
        let edits = [Edit::Set("rng-seed", &[0; 64])];
        let need = rebuild(&fdt, &edits, &mut vec![0; 1 << 20]).unwrap();
        for len in [0, 39, 100, need - 1] {
            assert_eq!(
                rebuild(&fdt, &edits, &mut vec![0; len]),
                Err(FdtError::NoRoom),
                "{len}"
            );
        }
        assert!(need <= rebuilt_size(&fdt, &edits));
    }
}
