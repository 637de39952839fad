//! SHA-256 (FIPS 180-4) over whichever block function the platform offers: the arch
//! code's in the shims (the CPU's SHA-256 instructions where it has them, SIMD and the
//! general registers otherwise), sha2's portable code on the host. Padding and the
//! block loop are here, once; only the 64-byte block function differs, and every one
//! gives the same digests.

/// A SHA-256 block function: folds whole 64-byte blocks into the state.
pub type Compress = fn(&mut [u32; 8], &[[u8; 64]]);

/// A block function with the name `shim.verbose` gives it (`sha256=<name>`).
#[derive(Clone, Copy)]
pub struct Engine {
    /// `sha-ni`, `sse2`, `armv8-sha256`, `neon`, or `portable` (sha2's, for host use).
    pub name: &'static str,
    pub compress: Compress,
}

/// sha2's portable code: the host's (xtask, tests, benches) and the reference the
/// arch code's block functions are tested against.
pub const PORTABLE: Engine = Engine {
    name: "portable",
    compress: portable,
};

/// FIPS 180-4 5.3.3.
const H0: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// sha2's portable block function (its soft backend, unrolled: the build sets
/// `sha2_256_backend="soft"` for every target, see .cargo/config.toml).
pub fn portable(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    sha2::block_api::compress256(state, blocks);
}

/// An incremental SHA-256.
#[derive(Clone)]
pub struct Sha256 {
    state: [u32; 8],
    /// The partial block: its first `len % 64` bytes.
    buf: [u8; 64],
    /// Bytes taken in so far (modulo 2^64, as the padding counts them).
    len: u64,
    compress: Compress,
}

impl Sha256 {
    pub fn new(compress: Compress) -> Sha256 {
        Sha256 {
            state: H0,
            buf: [0; 64],
            len: 0,
            compress,
        }
    }

    /// The block function it hashes with.
    pub fn compress(&self) -> Compress {
        self.compress
    }

    pub fn update(&mut self, mut data: &[u8]) {
        let buffered = (self.len & 63) as usize;
        self.len = self.len.wrapping_add(data.len() as u64);
        if buffered > 0 {
            let free = self.buf.get_mut(buffered..).unwrap_or_default();
            let (head, rest) = data.split_at(data.len().min(free.len()));
            if let Some(dst) = free.get_mut(..head.len()) {
                dst.copy_from_slice(head);
            }
            if head.len() < free.len() {
                return;
            }
            data = rest;
            (self.compress)(&mut self.state, core::slice::from_ref(&self.buf));
        }
        let (blocks, rest) = data.as_chunks::<64>();
        (self.compress)(&mut self.state, blocks);
        if let Some(dst) = self.buf.get_mut(..rest.len()) {
            dst.copy_from_slice(rest);
        }
    }

    pub fn finalize(mut self) -> [u8; 32] {
        let bits = self.len.wrapping_mul(8);
        // 0x80, zeros to 56 mod 64, then the length in bits, big-endian.
        self.update(&[0x80]);
        let zeros = (56u64.wrapping_sub(self.len) & 63) as usize;
        self.update([0u8; 64].get(..zeros).unwrap_or_default());
        self.update(&bits.to_be_bytes());
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

/// The SHA-256 of `data` with `compress`.
pub fn sha256(compress: Compress, data: &[u8]) -> [u8; 32] {
    sha256_parts(compress, &[data])
}

/// The SHA-256 of `parts`, one after the other, with `compress`.
pub fn sha256_parts(compress: Compress, parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new(compress);
    parts.iter().for_each(|part| h.update(part));
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha2::Digest;

    #[test]
    fn fips_180_examples() {
        let hex = |d: [u8; 32]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(sha256(portable, b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(sha256(portable, b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(sha256(
                portable,
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    proptest! {
        /// Any data, fed in any pieces, hashes as sha2 hashes it whole.
        #[test]
        fn agrees_with_sha2(data in proptest::collection::vec(any::<u8>(), 0..600), cut in 0usize..600) {
            let mut h = Sha256::new(portable);
            let cut = cut.min(data.len());
            h.update(&data[..cut]);
            h.update(&data[cut..]);
            let want: [u8; 32] = sha2::Sha256::digest(&data).into();
            prop_assert_eq!(h.finalize(), want);
        }
    }
}
