//! One module per fuzz target; each `run(data)` never fails quietly: it returns on
//! input the parsers refuse and panics (assert!) when an invariant breaks.
//! Only `std`, `shim_common` and the `fdt` crate are used, so `common`'s own tests can
//! include this directory with `#[path]` and replay regression inputs.

pub mod arm64_image;
pub mod bootparams;
pub mod bytes;
pub mod cmdline;
pub mod container;
pub mod dtspec;
pub mod elf;
pub mod place;
pub mod tree;
pub mod x86_bzimage;
pub mod x86_vmlinux;

/// A target's checks.
pub type Check = fn(&[u8]);

/// Every target by name, as `cargo fuzz run <name>` and `common/tests/data/fuzz/<name>/`
/// call them.
pub const TARGETS: &[(&str, Check)] = &[
    ("fdt", tree::run),
    ("place", place::run),
    ("elf", elf::run),
    ("container", container::run),
    ("bootparams", bootparams::run),
    ("cmdline", cmdline::run),
    ("arm64_image", arm64_image::run),
    ("x86_bzimage", x86_bzimage::run),
    ("x86_vmlinux", x86_vmlinux::run),
];

/// Runs the checks of the target called `name`; `false` if there is none.
pub fn run(name: &str, data: &[u8]) -> bool {
    match TARGETS.iter().find(|(n, _)| *n == name) {
        Some((_, check)) => {
            check(data);
            true
        }
        None => false,
    }
}
