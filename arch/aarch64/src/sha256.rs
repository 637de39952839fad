//! SHA-256 blocks with the ARMv8 Cryptographic Extension (SHA256H, SHA256H2, SHA256SU0,
//! SHA256SU1; ARM ARM C7.2), where ID_AA64ISAR0_EL1.SHA2 says the CPU has them. The
//! padding and the block loop are shim-common's (`digest`); this is the block function,
//! in sha256.S.

use aarch64_cpu::registers::ID_AA64ISAR0_EL1;
use shim_common::digest::{self, Engine};
use tock_registers::interfaces::Readable;
use tock_registers::register_bitfields;
use tock_registers::registers::InMemoryRegister;

register_bitfields! {u64,
    /// The ID_AA64ISAR0_EL1 field aarch64-cpu does not name.
    ISAR0 [
        /// 0b0001: SHA256H, SHA256H2, SHA256SU0, SHA256SU1 implemented.
        SHA2 OFFSET(12) NUMBITS(4) []
    ]
}

/// The block function to hash with: the instructions where the CPU has them.
pub fn engine() -> Engine {
    let isar0 = InMemoryRegister::<u64, ISAR0::Register>::new(ID_AA64ISAR0_EL1.get());
    match isar0.read(ISAR0::SHA2) {
        0 => digest::PORTABLE,
        _ => Engine {
            name: "armv8-sha256",
            compress: with_instructions,
        },
    }
}

// `raw`: the file is assembly as it stands (LD1 register lists are in braces).
core::arch::global_asm!(include_str!("sha256.S"), options(raw));

extern "C" {
    /// sha256.S: folds `count` 64-byte blocks into `state`.
    fn shim_sha256_armv8_blocks(state: *mut [u32; 8], blocks: *const [u8; 64], count: usize);
}

fn with_instructions(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    // SAFETY: `engine` hands this out only where ID_AA64ISAR0_EL1.SHA2 says the
    // instructions exist; FP/SIMD is enabled (CPACR_EL1.FPEN) before any Rust runs. The
    // function reads `blocks.len()` blocks from the slice, writes only `state`, and
    // keeps every register AAPCS64 asks a callee to keep.
    unsafe { shim_sha256_armv8_blocks(state, blocks.as_ptr(), blocks.len()) }
}
