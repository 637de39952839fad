//! The SHA-256 block function the x86 shim verifies with: the SHA extensions
//! (shim-sha-ni) where CPUID says the CPU has them, with SSE state enabled first, and
//! shim-common's portable code otherwise.

use shim_common::digest::Engine;

use crate::cpu;

/// SHA-NI's block function, where the CPU has it.
pub fn instructions() -> Option<Engine> {
    if !shim_sha_ni::cpu_has() {
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

fn with_sha_ni(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    // SAFETY: `instructions` hands this out only where CPUID says the CPU has the SHA
    // extensions, SSSE3 and SSE4.1, and after enabling SSE state.
    unsafe { shim_sha_ni::blocks(state, blocks) }
}
