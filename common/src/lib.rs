//! Every rule of the boot shim, as pure logic on byte slices and plain data.
//! Nothing here touches hardware or is gated on `target_arch`: the arm64 and x86_64
//! backends call into it, and `cargo test` exercises all of it on the host.
#![cfg_attr(not(test), no_std)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]
// No unsafe code outside the tests (whose fake machine is raw memory).
#![cfg_attr(not(test), forbid(unsafe_code))]
#![cfg_attr(test, deny(unsafe_code))]

#[cfg(any(test, feature = "alloc"))]
extern crate alloc;

pub mod arm64_linux;
pub mod boot;
pub mod bootinfo;
pub mod bootparams;
pub mod cmdline;
pub mod container;
pub mod digest;
pub mod elf;
pub mod entropy;
pub mod fdt;
pub mod image;
pub mod inflate;
pub mod layout;
pub mod lz4;
pub mod memmap;
pub mod plan;
pub mod slot;
pub mod stack;
pub mod x86_linux;
