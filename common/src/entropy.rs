//! Entropy: a SHA-256 mixer fed by every source the platform offers, which records
//! which sources were present and whether any was strong, and the deterministic
//! generator (SHA-256 in counter mode) drawn from it for placement and the payload seed.

use zeroize::Zeroize;

use crate::bootinfo::source;
use crate::digest::{self, Compress, Sha256};

/// Where a piece of entropy came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `/chosen/kaslr-seed`.
    KaslrSeed,
    /// `/chosen/rng-seed`.
    RngSeed,
    /// RNDR (arm64) or RDRAND (x86_64).
    CpuRng,
    /// RDSEED (x86_64).
    CpuSeed,
    /// A free-running counter: always there, never strong.
    Counter,
}

impl Source {
    /// Every source, in the order the console lists them.
    pub const ALL: [Source; 5] = [
        Source::KaslrSeed,
        Source::RngSeed,
        Source::CpuRng,
        Source::CpuSeed,
        Source::Counter,
    ];

    /// The [`crate::bootinfo::source`] bit for this source.
    pub const fn bit(self) -> u32 {
        match self {
            Source::KaslrSeed => source::KASLR_SEED,
            Source::RngSeed => source::RNG_SEED,
            Source::CpuRng => source::CPU_RNG,
            Source::CpuSeed => source::CPU_SEED,
            Source::Counter => source::COUNTER,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Source::KaslrSeed => "kaslr-seed",
            Source::RngSeed => "rng-seed",
            Source::CpuRng => "cpu-rng",
            Source::CpuSeed => "cpu-seed",
            Source::Counter => "counter",
        }
    }
}

/// Samples a CPU RNG gives for its health check, and how many consecutive pairs of
/// them must differ: Linux's `x86_init_rdrand` (SAMPLES 8, MIN_CHANGE 5), which
/// catches an RNG stuck on one value (all-ones, say) while reporting success.
pub const HEALTH_SAMPLES: usize = 8;
const MIN_CHANGE: usize = 5;

/// The verdict on a CPU RNG's samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// No sample: the CPU has no such instruction.
    Absent,
    /// Every read succeeded and enough consecutive values differ.
    Good,
    /// Some reads failed (and some succeeded).
    ReadFailed,
    /// Only `changes` of the consecutive pairs differ.
    Stuck { changes: usize },
}

impl core::fmt::Display for Health {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Health::Absent => f.write_str("absent"),
            Health::Good => f.write_str("good"),
            Health::ReadFailed => f.write_str("some reads failed"),
            Health::Stuck { changes } => write!(
                f,
                "only {changes} of {} consecutive samples differ (at least {MIN_CHANGE} must)",
                HEALTH_SAMPLES - 1
            ),
        }
    }
}

/// Judges a CPU RNG by `HEALTH_SAMPLES` reads (`None` = the read failed).
pub fn health(samples: &[Option<u64>; HEALTH_SAMPLES]) -> Health {
    if samples.iter().all(Option::is_none) {
        return Health::Absent;
    }
    if samples.iter().any(Option::is_none) {
        return Health::ReadFailed;
    }
    let changes = samples.windows(2).filter(|w| w.first() != w.get(1)).count();
    match changes >= MIN_CHANGE {
        true => Health::Good,
        false => Health::Stuck { changes },
    }
}

/// Bits of the sources that count as strong.
const STRONG: u32 = source::KASLR_SEED | source::RNG_SEED | source::CPU_RNG | source::CPU_SEED;

/// Accumulates entropy. Each input is hashed as `tag (u32 LE) || len (u64 LE) || bytes`,
/// so no two different sequences of inputs hash the same.
#[derive(Clone)]
pub struct Mixer {
    hash: Sha256,
    sources: u32,
}

impl Default for Mixer {
    fn default() -> Self {
        Self::new()
    }
}

impl Mixer {
    /// A mixer hashing with the portable block function.
    pub fn new() -> Self {
        Self::with(digest::PORTABLE.compress)
    }

    /// A mixer hashing with `compress` (the CPU's SHA-256 instructions, say), as is
    /// the generator [`finish`](Self::finish) makes: the same bytes, sooner.
    pub fn with(compress: Compress) -> Self {
        let mut hash = Sha256::new(compress);
        hash.update(b"shim entropy mixer v1\0");
        Mixer { hash, sources: 0 }
    }

    /// Mixes in `bytes` from `source`. Empty or all-zero input records nothing: a zero
    /// `kaslr-seed` means "no seed" (the bootloader clears it when it has none).
    pub fn add(&mut self, source: Source, bytes: &[u8]) {
        if bytes.iter().all(|&b| b == 0) {
            return;
        }
        self.hash.update(&source.bit().to_le_bytes());
        self.hash.update(&(bytes.len() as u64).to_le_bytes());
        self.hash.update(bytes);
        self.sources |= source.bit();
    }

    /// Mixes in a CPU RNG's samples if they pass [`health`]; returns the verdict, so
    /// the caller can say why a present source was not counted.
    pub fn add_checked(
        &mut self,
        source: Source,
        samples: &[Option<u64>; HEALTH_SAMPLES],
    ) -> Health {
        let verdict = health(samples);
        if verdict == Health::Good {
            for v in samples.iter().flatten() {
                self.add(source, &v.to_le_bytes());
            }
        }
        verdict
    }

    /// Bitmask of the sources that contributed (see [`Source::bit`]).
    pub fn sources(&self) -> u32 {
        self.sources
    }

    /// True when at least one strong source contributed.
    pub fn strong(&self) -> bool {
        self.sources & STRONG != 0
    }

    pub fn finish(self) -> Rng {
        let compress = self.hash.compress();
        Rng::with(self.hash.finalize(), compress)
    }
}

/// Deterministic generator: block `i` is `SHA-256(key || i as u64 LE)`, consumed in order.
/// Its key and buffered output are wiped (volatile writes) when it is dropped. No
/// `Debug`: printing it would print the key.
pub struct Rng {
    key: [u8; 32],
    counter: u64,
    block: [u8; 32],
    /// Bytes of `block` already handed out; 32 means "fetch the next block".
    used: usize,
    compress: Compress,
}

impl Rng {
    /// The generator keyed with `key`, hashing with the portable block function.
    pub fn from_key(key: [u8; 32]) -> Rng {
        Rng::with(key, digest::PORTABLE.compress)
    }

    /// [`Rng::from_key`], hashing with `compress`.
    pub fn with(key: [u8; 32], compress: Compress) -> Rng {
        Rng {
            key,
            counter: 0,
            block: [0; 32],
            used: 32,
            compress,
        }
    }

    fn refill(&mut self) {
        let mut h = Sha256::new(self.compress);
        h.update(&self.key);
        h.update(&self.counter.to_le_bytes());
        self.block = h.finalize();
        // 2^64 blocks are never drawn during boot.
        self.counter = self.counter.wrapping_add(1);
        self.used = 0;
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        let mut rest = out;
        while !rest.is_empty() {
            if self.used >= self.block.len() {
                self.refill();
            }
            let avail = self.block.get(self.used..).unwrap_or(&[]);
            let n = avail.len().min(rest.len());
            let (head, tail) = rest.split_at_mut(n);
            head.copy_from_slice(avail.get(..n).unwrap_or(&[]));
            // `n` is at most the block's unused bytes.
            self.used = self.used.saturating_add(n);
            rest = tail;
        }
    }

    /// Fills `out` for one consumer, named by `label` (the kernel's kaslr-seed, its
    /// rng-seed, ...): a new key is hashed from a domain tag, the label, the next 32
    /// bytes of this stream and `fresh` (CPU RNG or counter values read after the
    /// placement was drawn), and `out` is drawn from it. What a consumer learns from
    /// `out` says nothing of the other consumers' bytes, nor of the placement drawn
    /// earlier from this stream, nor of its key.
    pub fn derive(&mut self, label: &str, fresh: &[u8], out: &mut [u8]) {
        let mut next = [0u8; 32];
        self.fill(&mut next);
        let mut h = Sha256::new(self.compress);
        h.update(b"shim derived seed v1\0");
        h.update(&(label.len() as u64).to_le_bytes());
        h.update(label.as_bytes());
        h.update(&next);
        h.update(&(fresh.len() as u64).to_le_bytes());
        h.update(fresh);
        next.zeroize();
        Rng::with(h.finalize(), self.compress).fill(out);
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }

    /// Uniform in `[0, n)` with no modulo bias; `below(0)` is 0.
    ///
    /// Draws `x` until it is at least `2^64 mod n`: the accepted values then number a
    /// multiple of `n`, so `x % n` is uniform. A draw is rejected with probability
    /// below `n / 2^64`.
    pub fn below(&mut self, n: u64) -> u64 {
        let Some(n) = core::num::NonZeroU64::new(n) else {
            return 0;
        };
        // `2^64 mod n`, as `(2^64 - n) mod n`.
        let threshold = n.get().wrapping_neg() % n;
        loop {
            let x = self.next_u64();
            if x >= threshold {
                return x % n;
            }
        }
    }
}

#[cfg(test)]
impl Rng {
    /// Bytes handed out so far.
    fn consumed(&self) -> u64 {
        self.counter * 32 + self.used as u64 - 32
    }
}

impl Drop for Rng {
    fn drop(&mut self) {
        self.key.zeroize();
        self.block.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_strength() {
        let mut m = Mixer::new();
        m.add(Source::KaslrSeed, &[0; 8]);
        m.add(Source::RngSeed, &[]);
        assert_eq!(m.sources(), 0);
        m.add(Source::Counter, &42u64.to_le_bytes());
        assert!(!m.strong());
        m.add(Source::CpuRng, &[1]);
        assert_eq!(m.sources(), source::COUNTER | source::CPU_RNG);
        assert!(m.strong());
        // Every source but the counter is strong on its own.
        for s in Source::ALL {
            let mut m = Mixer::new();
            m.add(s, &[1; 8]);
            assert_eq!(m.strong(), s != Source::Counter, "{s:?}");
        }
        assert_eq!(Source::KaslrSeed.name(), "kaslr-seed");
    }

    #[test]
    fn domain_separation() {
        let mut a = Mixer::new();
        a.add(Source::RngSeed, &[1, 2]);
        let mut b = Mixer::new();
        b.add(Source::KaslrSeed, &[1, 2]);
        let mut c = Mixer::new();
        c.add(Source::RngSeed, &[1]);
        c.add(Source::RngSeed, &[2]);
        let (a, b, c) = (
            a.finish().next_u64(),
            b.finish().next_u64(),
            c.finish().next_u64(),
        );
        assert!(a != b && a != c && b != c);
    }

    #[test]
    fn counter_mode_blocks() {
        let key = [7u8; 32];
        let mut rng = Rng::from_key(key);
        let mut out = [0u8; 40];
        rng.fill(&mut out);
        // sha2's own SHA-256 as the oracle.
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(key);
        h.update(1u64.to_le_bytes());
        let block1: [u8; 32] = h.finalize().into();
        assert_eq!(out[32..], block1[..8]);
        // Byte-wise and word-wise draws see the same stream.
        let mut again = Rng::from_key(key);
        let words: Vec<u8> = (0..5)
            .flat_map(|_| again.next_u64().to_le_bytes())
            .collect();
        assert_eq!(words, out);
    }

    /// The block function a mixer is given hashes all it and its generator hash, and
    /// the bytes are the portable code's.
    #[test]
    fn the_block_function_given_is_the_one_used() {
        use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
        static BLOCKS: AtomicUsize = AtomicUsize::new(0);
        fn counting(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
            BLOCKS.fetch_add(blocks.len(), Relaxed);
            digest::portable(state, blocks);
        }
        let draw = |mut m: Mixer| {
            m.add(Source::CpuRng, &[5; 100]);
            let mut rng = m.finish();
            let mut seed = [0; 64];
            rng.derive("payload seed", &[1], &mut seed);
            (rng.next_u64(), seed)
        };
        assert_eq!(draw(Mixer::with(counting)), draw(Mixer::new()));
        // Mixer 3 blocks, the stream 2, the derived key 2 and its stream 2.
        assert_eq!(BLOCKS.load(Relaxed), 9);
    }

    fn chi_square(counts: &[u64], draws: u64) -> f64 {
        let e = draws as f64 / counts.len() as f64;
        counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum()
    }

    #[test]
    fn below_small_n_unbiased() {
        let mut rng = Rng::from_key([1; 32]);
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.below(1), 0);
        let mut counts = [0u64; 6];
        let draws = 60_000;
        for _ in 0..draws {
            counts[rng.below(6) as usize] += 1;
        }
        // 5 degrees of freedom: P(chi2 > 20.5) = 0.001.
        assert!(chi_square(&counts, draws) < 20.5, "{counts:?}");
    }

    #[test]
    fn a_stuck_cpu_rng_is_not_counted() {
        let good = [1, 2, 3, 4, 5, 6, 7, 8].map(Some);
        let mut m = Mixer::new();
        assert_eq!(m.add_checked(Source::CpuRng, &good), Health::Good);
        assert!(m.strong());
        // AMD's all-ones RDRAND, with the success flag set.
        let ones = [Some(u64::MAX); HEALTH_SAMPLES];
        let mut m = Mixer::new();
        assert_eq!(
            m.add_checked(Source::CpuRng, &ones),
            Health::Stuck { changes: 0 }
        );
        assert!(!m.strong() && m.sources() == 0);
        // A value repeated often enough, a failed read, and no instruction at all.
        let mut rep = good;
        rep[1] = rep[0];
        rep[3] = rep[2];
        rep[5] = rep[4];
        assert_eq!(health(&rep), Health::Stuck { changes: 4 });
        let mut failed = good;
        failed[7] = None;
        assert_eq!(health(&failed), Health::ReadFailed);
        assert_eq!(health(&[None; HEALTH_SAMPLES]), Health::Absent);
        assert!(Health::Stuck { changes: 2 }
            .to_string()
            .contains("only 2 of 7"));
    }

    #[test]
    fn derived_seeds_are_separated_by_label_and_fresh_input() {
        let draw = |label: &str, fresh: &[u8]| {
            let mut rng = Rng::from_key([7; 32]);
            let mut out = [0u8; 40];
            rng.derive(label, fresh, &mut out);
            (out, rng.consumed())
        };
        let (a, used) = draw("kaslr-seed", b"");
        assert_eq!(used, 32, "one block of the stream feeds the derivation");
        assert_ne!(a, draw("rng-seed", b"").0);
        assert_ne!(a, draw("kaslr-seed", &[1]).0);
        assert_eq!(a, draw("kaslr-seed", b"").0, "deterministic");
        // Neither the stream's own next bytes nor its key appear in the output.
        let mut plain = Rng::from_key([7; 32]);
        let mut next = [0u8; 40];
        plain.fill(&mut next);
        assert_ne!(a[..32], next[..32]);
        assert!(a.windows(8).all(|w| !next.windows(8).any(|n| n == w)));
    }

    #[test]
    fn below_rejects_to_avoid_bias() {
        // n = 3 * 2^62: plain `x % n` would give the lowest third twice the weight.
        let n = 3u64 << 62;
        let mut rng = Rng::from_key([2; 32]);
        let mut thirds = [0u64; 3];
        let mut rejected = 0;
        let draws = 30_000;
        for _ in 0..draws {
            let before = rng.consumed();
            let v = rng.below(n);
            assert!(v < n);
            thirds[(v / (1u64 << 62)) as usize] += 1;
            if rng.consumed() - before > 8 {
                rejected += 1;
            }
        }
        assert!(chi_square(&thirds, draws) < 13.8, "{thirds:?}"); // 2 dof, p = 0.001
                                                                  // 2^64 mod n = 2^62, so a quarter of the raw draws are rejected.
        assert!(
            rejected > draws / 8,
            "rejection path taken {rejected} times"
        );
    }
}
