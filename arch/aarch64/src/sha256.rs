//! The SHA-256 block functions the arm64 shim hashes with: the ARMv8 Cryptographic
//! Extension's (SHA256H, SHA256H2, SHA256SU0, SHA256SU1; ARM ARM C7.2) in sha256.S where
//! ID_AA64ISAR0_EL1.SHA2 says the CPU has them, sha256_neon.S otherwise. The padding and
//! the block loop are shim-common's (`digest`).

use aarch64_cpu::registers::ID_AA64ISAR0_EL1;
use shim_common::digest::Engine;
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

/// The instructions' block function, where ID_AA64ISAR0_EL1.SHA2 says the CPU has them.
pub fn instructions() -> Option<Engine> {
    let isar0 = InMemoryRegister::<u64, ISAR0::Register>::new(ID_AA64ISAR0_EL1.get());
    match isar0.read(ISAR0::SHA2) {
        0 => None,
        _ => Some(Engine {
            name: "armv8-sha256",
            compress: with_instructions,
        }),
    }
}

/// The block function without them (sha256_neon.S): Advanced SIMD, which every arm64
/// CPU the shim runs on has (the Rust code is built with it too).
pub const SOFTWARE: Engine = Engine {
    name: "neon",
    compress: with_neon,
};

// `raw`: the file is assembly as it stands (LD1 register lists are in braces).
core::arch::global_asm!(include_str!("sha256.S"), options(raw));
core::arch::global_asm!(include_str!("sha256_neon.S"), options(raw));

extern "C" {
    /// sha256.S: folds `count` 64-byte blocks into `state`.
    fn shim_sha256_armv8_blocks(state: *mut [u32; 8], blocks: *const [u8; 64], count: usize);
    /// sha256_neon.S: the same, without the SHA-256 instructions.
    fn shim_sha256_neon_blocks(state: *mut [u32; 8], blocks: *const [u8; 64], count: usize);
}

fn with_instructions(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    // SAFETY: `instructions` hands this out only where ID_AA64ISAR0_EL1.SHA2 says the
    // instructions exist; FP/SIMD is enabled (CPACR_EL1.FPEN) before any Rust runs. The
    // function reads `blocks.len()` blocks from the slice, writes only `state`, and
    // keeps every register AAPCS64 asks a callee to keep.
    unsafe { shim_sha256_armv8_blocks(state, blocks.as_ptr(), blocks.len()) }
}

fn with_neon(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    // SAFETY: Advanced SIMD is part of every AArch64 CPU the shim runs on, and FP/SIMD
    // is enabled before any Rust runs. The function reads `blocks.len()` blocks from the
    // slice, writes only `state` and its own stack frame, and keeps every register
    // AAPCS64 asks a callee to keep.
    unsafe { shim_sha256_neon_blocks(state, blocks.as_ptr(), blocks.len()) }
}
