//! SHA-256 (FIPS 180-4) over whichever block function the platform offers: the arch
//! code's in the shims (the CPU's SHA-256 instructions where it has them, SIMD and the
//! general registers otherwise), sha2's portable code on the host. Padding and the
//! block loop are here, once; only the 64-byte block function differs, and every one
//! gives the same digests. Runs of zero blocks the packer recorded ([`ZeroRun`]) are
//! checked for zeros and stepped over, not hashed: the digest stays the whole message's.

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

    /// Takes in `data`, stepping over it if `run` describes it here: at a block
    /// boundary, the chaining value `run.before`, `data` all zeros and `run.len` long.
    /// Otherwise hashes it. Says whether it stepped over it.
    fn update_run(&mut self, data: &[u8], run: &ZeroRun) -> bool {
        let fits = self.len == run.start
            && run.start.is_multiple_of(64)
            && data.len() as u64 == run.len
            && run.len.is_multiple_of(64)
            && self.state == run.before;
        if fits && all_zero(data) {
            self.state = run.after;
            self.len = self.len.wrapping_add(run.len);
            true
        } else {
            self.update(data);
            false
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

/// A run of whole zero blocks in a message, with SHA-256's chaining value before and
/// after it, as the packer computed them. A hint: [`sha256_skipping`] steps over the
/// run only where the message has it (block-aligned, all zeros) and the chaining value
/// it reached is `before`; it then takes `after`, and the digest is the message's own
/// whenever `after` is right. A wrong `after` gives a wrong digest, never a wrong
/// match: the prefix is bound by `before`, the run by the zero check, the rest by the
/// final comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZeroRun {
    /// The run's first byte in the message: a multiple of 64.
    pub start: u64,
    /// Its length: a positive multiple of 64.
    pub len: u64,
    pub before: [u32; 8],
    pub after: [u32; 8],
}

/// Whether every byte of `data` is zero: 64 bytes a step, eight words OR-ed (written
/// out: at opt-level s a loop over the eight took twice the instructions).
pub fn all_zero(data: &[u8]) -> bool {
    let (blocks, rest) = data.as_chunks::<64>();
    let zero = |b: &[u8; 64]| {
        let w: [u64; 8] = zerocopy::transmute!(*b);
        (w[0] | w[1] | w[2] | w[3]) | (w[4] | w[5] | w[6] | w[7]) == 0
    };
    blocks.iter().all(zero) && rest.iter().all(|&b| b == 0)
}

/// The SHA-256 of `data` with `compress`.
pub fn sha256(compress: Compress, data: &[u8]) -> [u8; 32] {
    sha256_skipping(compress, &[data], []).0
}

/// The SHA-256 of `parts`, one after the other, stepping over the zero runs `runs`
/// names (in message order; a run that is out of order, crosses a part's end or does
/// not hold is hashed as it is), and how many bytes were read as zeros, not hashed.
pub fn sha256_skipping(
    compress: Compress,
    parts: &[&[u8]],
    runs: impl IntoIterator<Item = ZeroRun>,
) -> ([u8; 32], u64) {
    let mut h = Sha256::new(compress);
    let mut skipped = 0u64;
    let mut runs = runs.into_iter().peekable();
    for part in parts {
        let mut rest = *part;
        let end = h.len.wrapping_add(rest.len() as u64);
        while let Some(run) = runs.next_if(|r| r.start < end) {
            let at = run.start.checked_sub(h.len).map(usize::try_from);
            let Some((head, tail)) = at.and_then(|at| rest.split_at_checked(at.ok()?)) else {
                continue; // out of order: ignored
            };
            h.update(head);
            // A run past the part's end takes the rest of it, and is then hashed.
            let len = usize::try_from(run.len).map_or(tail.len(), |n| n.min(tail.len()));
            let (zeros, after) = tail.split_at_checked(len).unwrap_or((tail, &[]));
            if h.update_run(zeros, &run) {
                skipped = skipped.wrapping_add(run.len);
            }
            rest = after;
        }
        h.update(rest);
    }
    (h.finalize(), skipped)
}

/// A message's SHA-256 and its zero runs: what a container records.
#[cfg(any(test, feature = "alloc"))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hashed {
    pub digest: [u8; 32],
    pub runs: alloc::vec::Vec<ZeroRun>,
}

/// The SHA-256 of `parts`, one after the other, and the message's runs of at least
/// `min_len` zero bytes at block boundaries, each within one part (the shim hashes
/// parts that lie apart in memory): what the packer records.
#[cfg(any(test, feature = "alloc"))]
pub fn sha256_with_runs(parts: &[&[u8]], min_len: u64) -> Hashed {
    let mut runs = alloc::vec::Vec::new();
    let mut h = Sha256::new(portable);
    for part in parts {
        // Up to the message's next block boundary, then whole blocks, then the rest.
        let head = (h.len.wrapping_neg() & 63) as usize;
        let (first, body) = part.split_at_checked(head).unwrap_or((part, &[]));
        h.update(first);
        let (blocks, tail) = body.as_chunks::<64>();
        for group in blocks.chunk_by(|a, b| all_zero(a) == all_zero(b)) {
            let bytes = group.as_flattened();
            let zero = group.first().is_some_and(|b| all_zero(b));
            let (start, before) = (h.len, h.state);
            h.update(bytes);
            if zero && bytes.len() as u64 >= min_len.max(64) {
                let (len, after) = (bytes.len() as u64, h.state);
                runs.push(ZeroRun {
                    start,
                    len,
                    before,
                    after,
                });
            }
        }
        h.update(tail);
    }
    Hashed {
        digest: h.finalize(),
        runs,
    }
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

    /// 10 KiB of data, 8 KiB of zeros from byte 4096 (a run), 100 bytes, 256 zeros
    /// (too short for a run), 30 bytes.
    fn with_zeros() -> Vec<u8> {
        let mut m: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8 + 1).collect();
        m.extend([0; 8192]);
        m.extend((0..100u8).map(|i| i | 1));
        m.extend([0; 256]);
        m.extend([7; 30]);
        m
    }

    #[test]
    fn runs_are_stepped_over_and_the_digest_is_the_message_s() {
        let m = with_zeros();
        let want: [u8; 32] = sha2::Sha256::digest(&m).into();
        let Hashed { digest, runs } = sha256_with_runs(&[&m], 4096);
        assert_eq!(digest, want);
        assert_eq!(runs.len(), 1);
        assert_eq!((runs[0].start, runs[0].len), (4096, 8192));
        // Hashed over the run with a block function that counts blocks.
        static BLOCKS: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
        fn counting(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
            BLOCKS.fetch_add(blocks.len(), core::sync::atomic::Ordering::Relaxed);
            portable(state, blocks);
        }
        let skipped = sha256_skipping(counting, &[&m[..12400], &m[12400..]], runs.clone());
        assert_eq!(skipped, (want, 8192));
        let hashed = BLOCKS.swap(0, core::sync::atomic::Ordering::Relaxed);
        assert_eq!(hashed, (m.len() - 8192) / 64 + 1, "the run was hashed");
        // Split where the packer split it: the same.
        let Hashed {
            digest,
            runs: runs2,
        } = sha256_with_runs(&[&m[..6000], &m[6000..]], 1024);
        assert_eq!(digest, want);
        assert_eq!(
            runs2.iter().map(|r| (r.start, r.len)).collect::<Vec<_>>(),
            [(4096, 1856), (6016, 6272)],
            "each within its part, at block boundaries"
        );
        assert_eq!(
            sha256_skipping(portable, &[&m[..6000], &m[6000..]], runs2),
            (want, 1856 + 6272)
        );
    }

    #[test]
    fn a_run_that_does_not_hold_is_hashed() {
        let m = with_zeros();
        let want: [u8; 32] = sha2::Sha256::digest(&m).into();
        let runs = sha256_with_runs(&[&m], 4096).runs;
        let run = runs[0];
        // Hints that do not match the message are hashed through: same digest.
        for bad in [
            ZeroRun { start: 4160, ..run },
            ZeroRun { len: 8256, ..run },
            ZeroRun { len: 100, ..run },
            ZeroRun {
                before: [0; 8],
                ..run
            },
        ] {
            assert_eq!(
                sha256_skipping(portable, &[&m], [bad]),
                (want, 0),
                "{bad:?}"
            );
        }
        // Across two parts, out of order, or twice: hashed too.
        assert_eq!(
            sha256_skipping(portable, &[&m[..8000], &m[8000..]], runs.clone()),
            (want, 0)
        );
        assert_eq!(sha256_skipping(portable, &[&m], [run, run]), (want, 8192));
        // A changed byte in the run, before it, or after it changes the digest.
        for at in [0, 4095, 4096, 8000, 12287, 12288, m.len() - 1] {
            let mut c = m.clone();
            c[at] ^= 0x40;
            assert_ne!(
                sha256_skipping(portable, &[&c], runs.clone()).0,
                want,
                "byte {at}"
            );
        }
        // A wrong `after` gives a wrong digest.
        let wrong = ZeroRun {
            after: [1; 8],
            ..run
        };
        assert_ne!(sha256_skipping(portable, &[&m], [wrong]).0, want);
    }

    #[test]
    fn all_zero_reads_every_byte() {
        let mut z = vec![0u8; 300];
        assert!(all_zero(&z) && all_zero(&[]));
        for at in [0, 7, 63, 64, 255, 256, 299] {
            z[at] = 0x80;
            assert!(!all_zero(&z), "byte {at}");
            z[at] = 0;
        }
    }

    proptest! {
        /// Any data with zeros in it, in any parts, with the runs the packer finds:
        /// the digest is sha2's.
        #[test]
        fn runs_agree_with_sha2(
            pieces in proptest::collection::vec((any::<u8>(), 0usize..300), 0..8),
            cut in 0usize..3000,
            min in 0u64..300,
        ) {
            let m: Vec<u8> = pieces.iter().flat_map(|&(b, n)| core::iter::repeat_n(b & 3, n)).collect();
            let want: [u8; 32] = sha2::Sha256::digest(&m).into();
            let cut = cut.min(m.len());
            let parts: [&[u8]; 2] = [&m[..cut], &m[cut..]];
            let Hashed { digest, runs } = sha256_with_runs(&parts, min);
            prop_assert_eq!(digest, want);
            let zeros: u64 = runs.iter().map(|r| r.len).sum();
            prop_assert_eq!(sha256_skipping(portable, &parts, runs), (want, zeros));
        }

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
