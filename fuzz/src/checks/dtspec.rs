//! A second, independent reading of a flattened device tree (DTSpec v0.4, chapter 5):
//! every node by path and every property, in order. The fuzz targets compare trees
//! through it rather than through the reader under test.

const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;

/// What a tree holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flat {
    /// Every node's path ("/" for the root), in tree order.
    pub nodes: Vec<String>,
    /// (node index in `nodes`, property name, value), in tree order.
    pub props: Vec<(usize, String, Vec<u8>)>,
    /// The top-level nodes named `chosen` or `chosen@<unit>`, by index in `nodes`.
    /// The first is `/chosen` to libfdt (`fdt_path_offset(fdt, "/chosen")`).
    pub chosen: Vec<usize>,
    /// Every node lists its properties before its subnodes, as DTSpec 5.4.2 lays a
    /// node out. libfdt (Linux's early `fdt_getprop`) and the `fdt` crate see only
    /// the properties before the first subnode.
    pub props_first: bool,
    /// The structure block holds FDT_NOP tokens.
    pub nops: bool,
    /// The root node's name is empty, as DTSpec 5.4.1 has it (libfdt and the shim
    /// do not check; the `fdt` crate finds no node under a named root).
    pub root_unnamed: bool,
    /// The memory reservation block up to its (0, 0) terminator.
    pub memreserve: Vec<(u64, u64)>,
    pub boot_cpuid: u32,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// A NUL-terminated UTF-8 string at the front of `b`, and its length with the NUL.
fn cstr(b: &[u8]) -> Option<(String, usize)> {
    let len = b.iter().position(|&c| c == 0)?;
    Some((String::from_utf8(b[..len].to_vec()).ok()?, len + 1))
}

/// Reads `blob`; `None` if it is not a tree this reading understands.
pub fn read(blob: &[u8]) -> Option<Flat> {
    if be32(blob, 0)? != 0xd00d_feed {
        return None;
    }
    let field = |i: usize| be32(blob, 4 * i).map(|v| v as usize);
    let total = field(1)?;
    let blob = blob.get(..total)?;
    let (off_struct, off_strings, off_rsvmap) = (field(2)?, field(3)?, field(4)?);
    let (size_strings, size_struct) = (field(8)?, field(9)?);
    let structs = blob.get(off_struct..off_struct.checked_add(size_struct)?)?;
    let strings = blob.get(off_strings..off_strings.checked_add(size_strings)?)?;
    let mut flat = Flat {
        props_first: true,
        boot_cpuid: be32(blob, 28)?,
        ..Flat::default()
    };

    let mut at = off_rsvmap;
    loop {
        let (addr, size) = (be64(blob, at)?, be64(blob, at + 8)?);
        if (addr, size) == (0, 0) {
            break;
        }
        flat.memreserve.push((addr, size));
        at += 16;
    }

    // The open nodes' paths and indices, and whether each has had a subnode yet.
    let mut open: Vec<(String, usize, bool)> = Vec::new();
    let mut at = 0usize;
    let mut done_root = false;
    loop {
        let token = be32(structs, at)?;
        at += 4;
        match token {
            BEGIN_NODE => {
                if done_root && open.is_empty() {
                    return None;
                }
                let (name, len) = cstr(structs.get(at..)?)?;
                at = (at + len + 3) & !3;
                if open.len() == 1 && name.split('@').next() == Some("chosen") {
                    flat.chosen.push(flat.nodes.len());
                }
                let path = match open.last_mut() {
                    None => {
                        flat.root_unnamed = name.is_empty();
                        "/".to_string()
                    }
                    Some((parent, _, had_child)) => {
                        *had_child = true;
                        match parent.as_str() {
                            "/" => format!("/{name}"),
                            p => format!("{p}/{name}"),
                        }
                    }
                };
                open.push((path.clone(), flat.nodes.len(), false));
                flat.nodes.push(path);
            }
            END_NODE => {
                open.pop()?;
                done_root = true;
            }
            PROP => {
                let (_, node, had_child) = open.last()?;
                let len = be32(structs, at)? as usize;
                let nameoff = be32(structs, at + 4)? as usize;
                let value = structs.get(at + 8..(at + 8).checked_add(len)?)?;
                let (name, _) = cstr(strings.get(nameoff..)?)?;
                if *had_child {
                    flat.props_first = false;
                }
                flat.props.push((*node, name, value.to_vec()));
                at = (at + 8 + len + 3) & !3;
            }
            NOP => flat.nops = true,
            END if open.is_empty() && done_root => return Some(flat),
            _ => return None,
        }
    }
}

impl Flat {
    /// The values of property `name` of node `node` (an index in `nodes`), in order.
    pub fn values<'s>(&'s self, node: usize, name: &'s str) -> impl Iterator<Item = &'s [u8]> {
        self.props
            .iter()
            .filter(move |(i, n, _)| *i == node && n == name)
            .map(|(_, _, v)| v.as_slice())
    }
}
