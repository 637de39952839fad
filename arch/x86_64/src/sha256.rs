//! The SHA-256 block functions the x86 shim hashes with (shim-x86-sha256): the SHA
//! extensions where CPUID says the CPU has them, SSE2 otherwise, with SSE state enabled
//! before either is handed out.

use shim_common::digest::Engine;

use crate::cpu;

/// SHA-NI's block function, where the CPU has it.
pub fn instructions() -> Option<Engine> {
    if !shim_x86_sha256::has_sha_ni() {
        return None;
    }
    // Enabled here, where the instructions are chosen, so the one never comes without
    // the other.
    cpu::enable_sse();
    Some(Engine {
        name: "sha-ni",
        compress: with_sha_ni,
    })
}

/// The block function without the SHA extensions: SSE2, which every x86-64 CPU has.
pub fn software() -> Engine {
    cpu::enable_sse();
    Engine {
        name: "sse2",
        compress: with_sse2,
    }
}

fn with_sha_ni(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    // SAFETY: `instructions` hands this out only where CPUID says the CPU has the SHA
    // extensions, SSSE3 and SSE4.1, and after enabling SSE state.
    unsafe { shim_x86_sha256::ni_blocks(state, blocks) }
}

fn with_sse2(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    // SAFETY: `software` hands this out after enabling SSE state; x86-64 has SSE2.
    unsafe { shim_x86_sha256::sse2_blocks(state, blocks) }
}
