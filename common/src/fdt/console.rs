//! The console the firmware names in `/chosen/stdout-path`: the node's `reg`
//! translated through every parent's `ranges` to a CPU address (DTSpec 2.3.8), and
//! the UART its `compatible` asks for. A console the shim cannot drive is `None`: a
//! quiet boot, never a hang.

use super::{cells, enter_if, is_chosen, Cells, Event, Fdt, FdtError, Visit, MAX_DEPTH};

/// The UARTs the shim can write to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uart {
    /// ARM PrimeCell PL011 (`arm,pl011`).
    Pl011,
    /// An 8250/16550 (`ns16550a`, `ns16550`, `snps,dw-apb-uart`, ...): registers
    /// `1 << reg_shift` bytes apart, accessed `reg_io_width` bytes wide. The BCM2835
    /// aux mini UART (`brcm,bcm2835-aux-uart`) is one with shift 2 and width 4.
    Ns16550 { reg_shift: u8, reg_io_width: u8 },
    /// The i.MX UART (`fsl,imx*-uart`).
    Imx,
}

/// Where and what the console is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Console {
    /// The CPU physical address of the register block.
    pub base: u64,
    pub uart: Uart,
}

/// The UART a `compatible` list asks for, if the shim has a driver for any entry.
fn uart_for(compatible: &[u8], reg_shift: u8, reg_io_width: u8) -> Option<Uart> {
    compatible.split(|&b| b == 0).find_map(|c| match c {
        b"arm,pl011" => Some(Uart::Pl011),
        b"brcm,bcm2835-aux-uart" => Some(Uart::Ns16550 {
            reg_shift: 2,
            reg_io_width: 4,
        }),
        b"ns16550a" | b"ns16550" | b"ns8250" | b"snps,dw-apb-uart" => Some(Uart::Ns16550 {
            reg_shift,
            reg_io_width,
        }),
        c if c.starts_with(b"fsl,imx") && c.ends_with(b"-uart") => Some(Uart::Imx),
        _ => None,
    })
}

/// The console `/chosen/stdout-path` names, if the shim can drive it.
pub fn stdout(fdt: &Fdt<'_>) -> Result<Option<Console>, FdtError> {
    let mut value: Option<&[u8]> = None;
    let (mut in_chosen, mut seen_chosen) = (false, false);
    fdt.walk(|depth, event| {
        match event {
            Event::Begin { name, .. } if depth == 1 => {
                in_chosen = is_chosen(name) && !seen_chosen;
                seen_chosen |= in_chosen;
                return Ok(enter_if(in_chosen));
            }
            // Nothing below a top-level node is read.
            Event::Begin { .. } => return Ok(enter_if(depth == 0)),
            Event::Prop {
                name: b"stdout-path",
                value: v,
                ..
            } if depth == 1 && in_chosen => {
                // The first copy, as libfdt's fdt_getprop finds it.
                value.get_or_insert(v);
            }
            _ => {}
        }
        Ok(Visit::Enter)
    })?;
    from_stdout_path(fdt, value.unwrap_or_default())
}

/// Resolves a `stdout-path` value: "serial0:115200n8" (an alias, with options after
/// ':') or "/pl011@9000000" (a path).
fn from_stdout_path(fdt: &Fdt<'_>, value: &[u8]) -> Result<Option<Console>, FdtError> {
    let name = value
        .split(|&b| b == 0 || b == b':')
        .next()
        .unwrap_or_default();
    match name.first() {
        None => Ok(None),
        Some(b'/') => find(fdt, name),
        Some(_) => match alias(fdt, name)? {
            Some(path) => find(fdt, path),
            None => Ok(None),
        },
    }
}

/// The path `/aliases/<name>` holds.
fn alias<'a>(fdt: &Fdt<'a>, name: &[u8]) -> Result<Option<&'a [u8]>, FdtError> {
    let mut found = None;
    let mut in_aliases = false;
    fdt.walk(|depth, event| {
        match event {
            Event::Begin { name: node, .. } if depth == 1 => {
                in_aliases = node == b"aliases";
                return Ok(enter_if(in_aliases));
            }
            Event::Begin { .. } => return Ok(enter_if(depth == 0)),
            Event::Prop {
                name: prop, value, ..
            } if depth == 1 && in_aliases && prop == name => {
                found = value.split(|&b| b == 0).next();
            }
            _ => {}
        }
        Ok(Visit::Enter)
    })?;
    Ok(found)
}

/// A path component names a node with or without its unit address.
fn node_matches(name: &[u8], component: &[u8]) -> bool {
    name == component
        || (name.len() > component.len()
            && name.starts_with(component)
            && name.get(component.len()) == Some(&b'@'))
}

/// One node on the path to the console.
#[derive(Clone, Copy, Default)]
struct Hop<'a> {
    /// The cells the node's own `reg` (and the parent side of its `ranges`) uses.
    cells: Cells,
    /// `ranges`: `None` if absent (addresses below do not reach the CPU), empty if
    /// the identity.
    ranges: Option<&'a [u8]>,
}

/// Finds the node at `path` and what drives it.
pub(super) fn find(fdt: &Fdt<'_>, path: &[u8]) -> Result<Option<Console>, FdtError> {
    let mut want: [&[u8]; MAX_DEPTH] = [&[]; MAX_DEPTH];
    let mut n_want = 0;
    for part in path.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
        *want.get_mut(n_want).ok_or(FdtError::TooDeep)? = part;
        n_want = n_want.checked_add(1).ok_or(FdtError::TooDeep)?;
    }
    if n_want == 0 {
        return Ok(None);
    }
    // How many leading path components the nodes currently open match.
    let mut matched = 0usize;
    let mut hops = [Hop::default(); MAX_DEPTH + 1];
    let (mut reg, mut compatible) = (None, &[][..]);
    let (mut reg_shift, mut reg_io_width) = (0u8, 1u8);
    fdt.walk(|depth, event| {
        let on_path = depth >= 1 && depth == matched;
        let target = n_want > 0 && depth == n_want && matched == n_want;
        match event {
            Event::Begin { name, cells } => {
                // Depth d (d >= 1) matches want[d - 1] when its parents matched.
                let parent = depth.checked_sub(1);
                let component = parent.and_then(|i| want.get(i));
                if parent == Some(matched) && component.is_some_and(|c| node_matches(name, c)) {
                    matched = depth;
                    if let Some(hop) = hops.get_mut(depth) {
                        *hop = Hop {
                            cells,
                            ranges: None,
                        };
                    }
                }
                // Only the root and the nodes on the path are read.
                return Ok(enter_if(depth == 0 || matched == depth));
            }
            Event::Prop {
                name: b"ranges",
                value,
                ..
            } if on_path => {
                if let Some(hop) = hops.get_mut(depth) {
                    hop.ranges = Some(value);
                }
            }
            Event::Prop { name, value, .. } if target => match name {
                b"reg" => reg = Some(value),
                b"compatible" => compatible = value,
                b"reg-shift" => reg_shift = small(value).unwrap_or(0),
                b"reg-io-width" => reg_io_width = small(value).unwrap_or(1),
                _ => {}
            },
            Event::Prop { .. } => {}
            Event::End => {
                if let Some(parent) = depth.checked_sub(1).filter(|_| matched >= depth) {
                    matched = parent;
                }
            }
        }
        Ok(Visit::Enter)
    })?;
    let Some(uart) = uart_for(compatible, reg_shift, reg_io_width) else {
        return Ok(None);
    };
    let target = hops.get(n_want).copied().unwrap_or_default();
    let Some((mut addr, _)) = reg.and_then(|r| cells(r, target.cells.address)) else {
        return Ok(None);
    };
    // Up the tree: each parent's `ranges` maps its children's addresses to its own.
    let Some(path) = hops.get(1..=n_want) else {
        return Ok(None);
    };
    for pair in path.windows(2).rev() {
        let [node, child] = pair else {
            return Ok(None);
        };
        match translate(addr, node.ranges, child.cells, node.cells.address) {
            Some(a) => addr = a,
            None => return Ok(None),
        }
    }
    Ok(Some(Console { base: addr, uart }))
}

/// A one-cell property that fits a byte (`reg-shift`, `reg-io-width`).
fn small(value: &[u8]) -> Option<u8> {
    cells(value, 1).and_then(|(n, _)| u8::try_from(n).ok())
}

/// Maps `addr` through one `ranges` value: entries of (child address, parent address,
/// size) in `child.address`, `parent_address` and `child.size` cells.
fn translate(addr: u64, ranges: Option<&[u8]>, child: Cells, parent_address: u32) -> Option<u64> {
    let mut rest = ranges?;
    if rest.is_empty() {
        return Some(addr);
    }
    while !rest.is_empty() {
        let (from, r) = cells(rest, child.address)?;
        let (to, r) = cells(r, parent_address)?;
        let (size, r) = cells(r, child.size)?;
        rest = r;
        if let Some(offset) = addr.checked_sub(from).filter(|&o| o < size) {
            return to.checked_add(offset);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdt::tests::dtb;
    use crate::fdt::Cells;

    fn console(blob: &[u8]) -> Option<Console> {
        stdout(&Fdt::new(blob).unwrap()).unwrap()
    }

    #[test]
    fn qemu_virt_is_a_pl011() {
        assert_eq!(
            console(&dtb("virt-1G-smp1.dtb")),
            Some(Console {
                base: 0x0900_0000,
                uart: Uart::Pl011
            })
        );
    }

    /// Debian's board DTBs (linux-image-*-arm64-unsigned), from the directory
    /// `SHIM_BOARD_DTBS` names; `cargo xtask test` downloads them and sets it.
    #[test]
    fn the_boards_own_device_trees() {
        let Some(dir) = std::env::var_os("SHIM_BOARD_DTBS") else {
            eprintln!("SHIM_BOARD_DTBS unset: board DTBs not checked (cargo xtask test sets it)");
            return;
        };
        let dir = std::path::PathBuf::from(dir);
        let ns16550 = Uart::Ns16550 {
            reg_shift: 2,
            reg_io_width: 4,
        };
        for (file, base, uart) in [
            // serial1:115200n8 -> /soc/serial@7e215040, bus 0x7e215040 -> CPU 0xfe215040.
            ("broadcom/bcm2711-rpi-4-b.dtb", 0xfe21_5040, ns16550),
            // serial2:1500000n8 -> /serial@ff1a0000, snps,dw-apb-uart, shift 2, width 4.
            ("rockchip/rk3399-rockpro64.dtb", 0xff1a_0000, ns16550),
            // A path through /soc@0/bus@30800000.
            ("freescale/imx8mp-evk.dtb", 0x3089_0000, Uart::Imx),
        ] {
            let path = dir.join(file);
            let blob = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(console(&blob), Some(Console { base, uart }), "{file}");
        }
    }

    #[test]
    fn compatibles() {
        let u = |c: &[u8]| uart_for(c, 2, 4);
        assert_eq!(u(b"arm,pl011\0arm,primecell\0"), Some(Uart::Pl011));
        assert_eq!(
            u(b"rockchip,rk3399-uart\0snps,dw-apb-uart\0"),
            Some(Uart::Ns16550 {
                reg_shift: 2,
                reg_io_width: 4
            })
        );
        assert_eq!(u(b"fsl,imx8mp-uart\0fsl,imx6q-uart\0"), Some(Uart::Imx));
        assert_eq!(
            u(b"brcm,bcm2835-aux-uart\0"),
            uart_for(b"brcm,bcm2835-aux-uart", 0, 1)
        );
        assert_eq!(u(b"vendor,unknown-uart\0"), None);
    }

    #[test]
    fn ranges_translate_bus_addresses() {
        let child = Cells {
            address: 1,
            size: 1,
        };
        // The RPi4's /soc: 0x7e000000 -> 0xfe000000 (parent address cells 2).
        let soc = [
            0x7e00_0000u32,
            0,
            0xfe00_0000,
            0x0180_0000,
            0x7c00_0000,
            0,
            0xfc00_0000,
            0x0200_0000,
        ]
        .iter()
        .flat_map(|c| c.to_be_bytes())
        .collect::<Vec<u8>>();
        assert_eq!(
            translate(0x7e21_5040, Some(&soc), child, 2),
            Some(0xfe21_5040)
        );
        assert_eq!(
            translate(0x7c00_0010, Some(&soc), child, 2),
            Some(0xfc00_0010)
        );
        assert_eq!(translate(0x1000, Some(&soc), child, 2), None);
        assert_eq!(translate(0x1000, Some(&[]), child, 2), Some(0x1000));
        assert_eq!(translate(0x1000, None, child, 2), None);
        assert_eq!(translate(0x7e21_5040, Some(&soc[..7]), child, 2), None);
    }
}
