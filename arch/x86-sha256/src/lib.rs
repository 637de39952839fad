//! SHA-256 blocks for the x86 shim, the block functions it plugs into shim-common's
//! `digest` (padding and the block loop stay there): with the Intel SHA extensions where
//! CPUID says the CPU has them (sha256_ni.S), and with SSE2, which every x86-64 CPU has,
//! otherwise (sha256_sse2.S). Assembly, so that it builds for the shim's soft-float
//! target and for the host alike, where both are tested against the portable code.
//!
//! Why not intrinsics: `x86_64-unknown-none` is soft-float, LLVM has no XMM register
//! class there, and `#[target_feature(enable = "sha,sse4.1,ssse3")]` code using
//! `core::arch` intrinsics stops rustc with "LLVM ERROR: Do not know how to split the
//! result of this operator" (rustc 1.95). sha2's own SHA-NI backend is that code, and
//! on `target_os = "none"` its CPU detection (cpufeatures) answers "no" at compile time.
#![cfg_attr(not(test), no_std)]
#![cfg(target_arch = "x86_64")]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

use core::arch::x86_64::{__cpuid, __cpuid_count};

core::arch::global_asm!(include_str!("sha256_ni.S"), options(att_syntax));
core::arch::global_asm!(include_str!("sha256_sse2.S"), options(att_syntax));

extern "sysv64" {
    /// sha256_ni.S: folds `count` 64-byte blocks into `state`.
    fn shim_sha256_ni_blocks(state: *mut [u32; 8], blocks: *const [u8; 64], count: usize);
    /// sha256_sse2.S: the same, without the SHA extensions.
    fn shim_sha256_sse2_blocks(state: *mut [u32; 8], blocks: *const [u8; 64], count: usize);
}

/// Whether CPUID says the CPU has what sha256_ni.S executes: SHA (CPUID.(EAX=07H,ECX=0):
/// EBX[29]), SSSE3 (CPUID.01H:ECX[9]), SSE4.1 (CPUID.01H:ECX[19]) and SSE2
/// (CPUID.01H:EDX[26]).
pub fn has_sha_ni() -> bool {
    let bit = |word: u32, n: u32| word & (1 << n) != 0;
    // CPUID.0H:EAX is the highest basic leaf.
    if __cpuid(0).eax < 7 {
        return false;
    }
    let one = __cpuid(1);
    let seven = __cpuid_count(7, 0);
    bit(seven.ebx, 29) && bit(one.ecx, 9) && bit(one.ecx, 19) && bit(one.edx, 26)
}

/// Folds whole 64-byte blocks into the SHA-256 state with the SHA extensions, as
/// `shim_common::digest::Compress`.
///
/// # Safety
/// [`has_sha_ni`] is true, and SSE is enabled: CR4.OSFXSR set, CR0.EM and CR0.TS clear
/// (an operating system has done it on the host; the shim does it before it hashes).
pub unsafe fn ni_blocks(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    // SAFETY: the instructions exist and are enabled (the caller's promise); the
    // function reads `blocks.len()` blocks from the slice and writes only `state`, and
    // it preserves every register the System V ABI asks it to.
    unsafe { shim_sha256_ni_blocks(state, blocks.as_ptr(), blocks.len()) }
}

/// [`ni_blocks`] with SSE2 and the general registers: for every x86-64 CPU.
///
/// # Safety
/// SSE is enabled, as for [`ni_blocks`].
pub unsafe fn sse2_blocks(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    // SAFETY: SSE2 is part of x86-64 and SSE is enabled (the caller's promise); the
    // function reads `blocks.len()` blocks from the slice, writes only `state` and its
    // own stack frame, and preserves every register the System V ABI asks it to.
    unsafe { shim_sha256_sse2_blocks(state, blocks.as_ptr(), blocks.len()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use shim_common::digest::{self, Sha256};

    /// The block functions this host can run, by name: SSE2 always, SHA-NI where
    /// the CPU has it.
    fn engines() -> Vec<(&'static str, digest::Compress)> {
        fn sse2(state: &mut [u32; 8], b: &[[u8; 64]]) {
            // SAFETY: every x86-64 CPU has SSE2, and the host OS enables SSE.
            unsafe { sse2_blocks(state, b) }
        }
        fn ni(state: &mut [u32; 8], b: &[[u8; 64]]) {
            // SAFETY: only handed out below where CPUID says so; the host OS enables SSE.
            unsafe { ni_blocks(state, b) }
        }
        let mut engines = vec![("sse2", sse2 as digest::Compress)];
        if has_sha_ni() && std::is_x86_feature_detected!("sha") {
            engines.push(("sha-ni", ni));
        } else {
            eprintln!("this CPU has no SHA extensions: the SHA-NI tests check nothing");
        }
        engines
    }

    #[test]
    fn detection_agrees_with_std() {
        assert_eq!(
            has_sha_ni(),
            std::is_x86_feature_detected!("sha")
                && std::is_x86_feature_detected!("sse4.1")
                && std::is_x86_feature_detected!("ssse3")
        );
    }

    #[test]
    fn fips_180_examples() {
        let hex = |d: [u8; 32]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        for (name, compress) in engines() {
            for (msg, want) in [
                (
                    &b"abc"[..],
                    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                ),
                (
                    b"",
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                ),
                (
                    b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
                ),
            ] {
                assert_eq!(hex(digest::sha256(compress, msg)), want, "{name}");
            }
        }
    }

    #[test]
    fn no_blocks_leave_the_state() {
        for (name, compress) in engines() {
            let mut state = [1, 2, 3, 4, 5, 6, 7, 8];
            compress(&mut state, &[]);
            assert_eq!(state, [1, 2, 3, 4, 5, 6, 7, 8], "{name}");
        }
    }

    proptest! {
        /// Any state and any run of blocks: the same state as the portable code.
        #[test]
        fn blocks_agree_with_portable(
            state in any::<[u32; 8]>(),
            data in proptest::collection::vec(any::<u8>(), 0..64 * 9),
        ) {
            let (blocks, _) = data.as_chunks::<64>();
            let mut portable = state;
            digest::portable(&mut portable, blocks);
            for (name, compress) in engines() {
                let mut ours = state;
                compress(&mut ours, blocks);
                prop_assert_eq!(ours, portable, "{}", name);
            }
        }

        /// Whole messages, fed in two pieces at any offset (so through unaligned
        /// blocks): the digest the portable code gives.
        #[test]
        fn digests_agree_with_portable(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            cut in 0usize..2000,
        ) {
            let cut = cut.min(data.len());
            let want = digest::sha256(digest::portable, &data);
            for (name, compress) in engines() {
                let mut h = Sha256::new(compress);
                h.update(&data[..cut]);
                h.update(&data[cut..]);
                prop_assert_eq!(h.finalize(), want, "{}", name);
            }
        }
    }
}
