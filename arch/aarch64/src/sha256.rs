//! SHA-256 blocks with the ARMv8 Cryptographic Extension (SHA256H, SHA256H2, SHA256SU0,
//! SHA256SU1; ARM ARM C7.2), where ID_AA64ISAR0_EL1.SHA2 says the CPU has them. The
//! padding and the block loop are shim-common's (`digest`); this is the block function.

use core::arch::aarch64::{
    uint32x4_t, vaddq_u32, vld1q_u32, vld1q_u8, vreinterpretq_u32_u8, vrev32q_u8, vsha256h2q_u32,
    vsha256hq_u32, vsha256su0q_u32, vsha256su1q_u32, vst1q_u32,
};

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

fn with_instructions(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    // SAFETY: `compress` hands this out only where ID_AA64ISAR0_EL1.SHA2 says the
    // instructions exist; FP/SIMD is enabled (CPACR_EL1.FPEN) before any Rust runs.
    unsafe { blocks_sha2(state, blocks) }
}

/// FIPS 180-4 4.2.2: the round constants, four per quad of rounds.
const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// # Safety
/// The CPU implements FEAT_SHA256 and FP/SIMD is not trapped.
#[target_feature(enable = "sha2")]
unsafe fn blocks_sha2(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    let (abcd_in, efgh_in) = state.split_at_mut(4);
    // SAFETY: each load and store is of four u32 or sixteen u8 that lie inside the
    // array named; NEON loads need no alignment beyond the element's.
    unsafe {
        let mut abcd = vld1q_u32(abcd_in.as_ptr());
        let mut efgh = vld1q_u32(efgh_in.as_ptr());
        for block in blocks {
            let (abcd0, efgh0) = (abcd, efgh);
            let word =
                |i: usize| vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(block.as_ptr().add(16 * i))));
            let mut w: [uint32x4_t; 4] = [word(0), word(1), word(2), word(3)];
            for quad in 0..16 {
                let wk = vaddq_u32(w[quad % 4], vld1q_u32(K.as_ptr().add(4 * quad)));
                let prev = abcd;
                abcd = vsha256hq_u32(abcd, efgh, wk);
                efgh = vsha256h2q_u32(efgh, prev, wk);
                if quad < 12 {
                    // The message schedule for the quad four ahead.
                    let next = vsha256su0q_u32(w[quad % 4], w[(quad + 1) % 4]);
                    w[quad % 4] = vsha256su1q_u32(next, w[(quad + 2) % 4], w[(quad + 3) % 4]);
                }
            }
            abcd = vaddq_u32(abcd, abcd0);
            efgh = vaddq_u32(efgh, efgh0);
        }
        vst1q_u32(abcd_in.as_mut_ptr(), abcd);
        vst1q_u32(efgh_in.as_mut_ptr(), efgh);
    }
}
