//! Criterion benchmarks of the shim's boot-time work beside other implementations of
//! the same step, on the same input in the same run: inflating Debian's arm64 Image,
//! hashing it, applying a million relocations, choosing a slot among 1,000 regions.
//! `cargo xtask bench` runs them and prints each group as ratios of the shim's path.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shim_bench::{
    fragmented_map, image_and_container, relocation_image, Table, INFLATE, REGIONS, RELOCATE,
    RELOCATIONS, SHA256, SLOT, SLOT_REQUEST,
};
use shim_common::container::{self, Compression, Format, Inflater};
use shim_common::digest::{self, Compress};
use shim_common::elf::{Elf, Machine};
use shim_common::entropy::Rng;
use shim_common::slot;

fn inflate(c: &mut Criterion, image: &[u8], packed: &[u8]) {
    let payload = container::parse(packed).expect("the container xtask's packing makes");
    // The deflate data inside the zlib stream (RFC 1950: a 2-byte header, no preset
    // dictionary, the Adler-32 last). The shim does not check the Adler-32 (the SHA-256
    // covers it), so neither do the others: all do the same work. The shim inflates with
    // sirocco; zlib-rs (its own allocator), miniz_oxide and libdeflate are the others.
    let raw = &payload.packed[2..payload.packed.len() - 4];
    let mut out = vec![0u8; image.len()];
    let mut inflater = Inflater::new();
    let zlib_rs = |out: &mut [u8]| {
        let raw_deflate = zlib_rs::InflateConfig { window_bits: -15 };
        let (done, code) = zlib_rs::decompress_slice(out, raw, raw_deflate);
        assert_eq!(code, zlib_rs::ReturnCode::Ok);
        done.len()
    };
    let mut miniz = Box::<miniz_oxide::inflate::core::DecompressorOxide>::default();
    let mut miniz_oxide = |out: &mut [u8]| {
        use miniz_oxide::inflate::core::{decompress, inflate_flags};
        miniz.init();
        let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
        decompress(&mut miniz, raw, out, 0, flags).2
    };
    let mut deflater = libdeflater::Decompressor::new();
    // The same Image in the shim's LZ4 container (`--compress lz4`).
    let lz4 = container::pack(Format::LinuxArm64Image, Compression::Lz4, image);
    let lz4 = container::parse(&lz4).expect("the LZ4 container");
    // The same Image as `zstd -19` makes it, for zstd-zero (its history buffer the
    // output, so the frame is decoded in place, as the shim would) and libzstd.
    let zst = zstd::bulk::compress(image, 19).expect("zstd compresses the Image");
    let mut zstd_zero = ZstdZero::new();
    let mut libzstd = zstd::bulk::Decompressor::new().expect("a libzstd context");
    // Every decoder gives the Image back before any is timed.
    for n in [
        container::unpack(&payload, &mut out, &mut inflater).ok(),
        Some(zlib_rs(&mut out)),
        Some(miniz_oxide(&mut out)),
        deflater.deflate_decompress(raw, &mut out).ok(),
        container::unpack(&lz4, &mut out, &mut inflater).ok(),
        Some(zstd_zero.decode(&zst, &mut out)),
        libzstd.decompress_to_buffer(&zst, &mut out).ok(),
    ] {
        assert_eq!(n, Some(image.len()));
        assert!(out == image);
    }

    let mut group = c.benchmark_group(INFLATE.name);
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Bytes(image.len() as u64));
    let [shim, zlib_name, miniz_name, libdeflate, shim_lz4, zero_name, libzstd_name, memcpy] =
        INFLATE.members
    else {
        unreachable!()
    };
    clean_simd_state();
    group.bench_function(*shim, |b| {
        b.iter(|| container::unpack(black_box(&payload), &mut out, &mut inflater))
    });
    clean_simd_state();
    group.bench_function(*zlib_name, |b| b.iter(|| zlib_rs(black_box(&mut out))));
    clean_simd_state();
    group.bench_function(*miniz_name, |b| b.iter(|| miniz_oxide(black_box(&mut out))));
    clean_simd_state();
    group.bench_function(*libdeflate, |b| {
        b.iter(|| deflater.deflate_decompress(black_box(raw), &mut out))
    });
    clean_simd_state();
    group.bench_function(*shim_lz4, |b| {
        b.iter(|| container::unpack(black_box(&lz4), &mut out, &mut inflater))
    });
    clean_simd_state();
    group.bench_function(*zero_name, |b| {
        b.iter(|| zstd_zero.decode(black_box(&zst), &mut out))
    });
    clean_simd_state();
    group.bench_function(*libzstd_name, |b| {
        b.iter(|| libzstd.decompress_to_buffer(black_box(&zst), &mut out))
    });
    clean_simd_state();
    group.bench_function(*memcpy, |b| {
        b.iter(|| out.copy_from_slice(black_box(image)))
    });
    group.finish();
}

/// zstd-zero's caller-owned tables and scratch, kept across runs as the shim would.
struct ZstdZero {
    block: Vec<u8>,
    literals: Vec<u8>,
    fse_scratch: Vec<i16>,
    fse: Vec<zstd_zero::FseEntry>,
    huffman: Vec<zstd_zero::HuffmanEntry>,
}

impl ZstdZero {
    fn new() -> Self {
        ZstdZero {
            block: vec![0; zstd_zero::MAX_BLOCK_SIZE],
            literals: vec![0; zstd_zero::MAX_BLOCK_SIZE],
            fse_scratch: vec![0; zstd_zero::FSE_SCRATCH_LEN],
            fse: vec![zstd_zero::FseEntry::default(); zstd_zero::FSE_ENTRIES],
            huffman: vec![zstd_zero::HuffmanEntry::default(); zstd_zero::HUFFMAN_ENTRIES],
        }
    }

    /// Decodes the one frame in `input` with `out` as its history, so the bytes land in
    /// `out` from its start; returns how many.
    fn decode(&mut self, input: &[u8], out: &mut [u8]) -> usize {
        use zstd_zero::{DecodeStep, Decoder, DecoderBuffers};
        let out_start = out.as_ptr() as usize;
        let mut decoder = Decoder::new(DecoderBuffers {
            history: out,
            block: &mut self.block,
            literals: &mut self.literals,
            fse_scratch: &mut self.fse_scratch,
            fse: &mut self.fse,
            huffman: &mut self.huffman,
        })
        .expect("buffers of the documented sizes");
        let (mut used, mut written) = (0, 0);
        loop {
            let step = decoder.decode(&input[used..]).expect("the frame zstd made");
            used += step.consumed();
            match step {
                DecodeStep::Output { bytes, .. } => {
                    // In place: each piece follows the last in the history buffer.
                    assert_eq!(bytes.as_ptr() as usize, out_start + written);
                    written += bytes.len();
                }
                DecodeStep::FrameFinished { .. } => return written,
                DecodeStep::NeedInput { .. } => assert!(used < input.len(), "a cut frame"),
                DecodeStep::FrameStarted { .. } => {}
            }
        }
    }
}

/// The SHA-NI block function, where this host has it.
#[cfg(target_arch = "x86_64")]
fn sha_ni() -> Option<Compress> {
    fn blocks(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
        // SAFETY: handed out below only where CPUID says so; the OS enables SSE.
        unsafe { shim_x86_sha256::ni_blocks(state, blocks) }
    }
    shim_x86_sha256::has_sha_ni().then_some(blocks as Compress)
}

/// The x86 shim's block function without the SHA extensions.
#[cfg(target_arch = "x86_64")]
fn sse2() -> Option<Compress> {
    fn blocks(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
        // SAFETY: x86-64 has SSE2, and the OS enables SSE.
        unsafe { shim_x86_sha256::sse2_blocks(state, blocks) }
    }
    Some(blocks as Compress)
}

#[cfg(not(target_arch = "x86_64"))]
fn sha_ni() -> Option<Compress> {
    None
}

#[cfg(not(target_arch = "x86_64"))]
fn sse2() -> Option<Compress> {
    None
}

/// Clears the upper halves of the YMM/ZMM registers (VZEROUPPER) where the CPU has
/// AVX; called before each benchmark. AVX code that ran before in this process (the
/// other inflaters when their output is checked, libc) may leave them dirty, and then
/// legacy-SSE instructions wait on a false dependency: both SHA-NI paths ran 40%
/// slower on this project's machine. The shim never runs AVX code, so its code always
/// runs from clean state; each benchmark starts so too.
fn clean_simd_state() {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx") {
        #[target_feature(enable = "avx")]
        fn zeroupper() {
            std::arch::x86_64::_mm256_zeroupper()
        }
        // SAFETY: the CPU has AVX (detected above).
        unsafe { zeroupper() }
    }
}

fn sha256(c: &mut Criterion, image: &[u8]) {
    use sha2_ni::Digest;
    let want = digest::sha256(digest::portable, image);
    let sha2 = |data: &[u8]| -> [u8; 32] { sha2_ni::Sha256::digest(data).into() };
    assert_eq!(sha2(image), want);

    let mut group = c.benchmark_group(SHA256.name);
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Bytes(image.len() as u64));
    let [portable, sse2_name, ni, sha2_ni] = SHA256.members else {
        unreachable!()
    };
    clean_simd_state();
    group.bench_function(*portable, |b| {
        b.iter(|| digest::sha256(digest::portable, black_box(image)))
    });
    for (name, compress) in [(sse2_name, sse2()), (ni, sha_ni())] {
        match compress {
            Some(compress) => {
                assert_eq!(digest::sha256(compress, image), want);
                clean_simd_state();
                group.bench_function(*name, |b| {
                    b.iter(|| digest::sha256(compress, black_box(image)))
                });
            }
            None => eprintln!("not on this CPU: no {name} figure"),
        }
    }
    clean_simd_state();
    group.bench_function(*sha2_ni, |b| b.iter(|| sha2(black_box(image))));
    group.finish();
}

fn relocate(c: &mut Criterion) {
    let files = [Table::Rela, Table::Relr].map(|t| relocation_image(t, RELOCATIONS));
    let elfs = files
        .each_ref()
        .map(|f| Elf::parse(f, Machine::X86_64).expect("the bench's own ELF"));
    let base = 0xffff_ffff_8000_0000;
    let mut image = vec![0u8; elfs[0].span().max(elfs[1].span()) as usize];
    let touched = vec![0x5au8; 8 * RELOCATIONS];
    let mut copy = vec![0u8; touched.len()];
    // What RELA reads and writes: a 24-byte entry and the 8-byte word it names.
    let with_table = vec![0x5au8; (24 + 8) * RELOCATIONS];
    let mut copy_all = vec![0u8; with_table.len()];

    let mut group = c.benchmark_group(RELOCATE.name);
    group
        .sample_size(20)
        .throughput(Throughput::Elements(RELOCATIONS as u64));
    let [rela, relr, memcpy, memcpy_all] = RELOCATE.members else {
        unreachable!()
    };
    for (name, elf, file) in [(*rela, &elfs[0], &files[0]), (*relr, &elfs[1], &files[1])] {
        elf.load(file, &mut image).expect("the image fits");
        let stats = elf.relocate(&mut image, base).expect("relocates");
        assert_eq!(stats.rela + stats.relr, RELOCATIONS);
        clean_simd_state();
        group.bench_function(name, |b| {
            b.iter(|| elf.relocate(&mut image, black_box(base)))
        });
    }
    clean_simd_state();
    group.bench_function(*memcpy, |b| {
        b.iter(|| copy.copy_from_slice(black_box(&touched)))
    });
    clean_simd_state();
    group.bench_function(*memcpy_all, |b| {
        b.iter(|| copy_all.copy_from_slice(black_box(&with_table)))
    });
    group.finish();
}

fn slot_choice(c: &mut Criterion) {
    let map = fragmented_map::<1024>(REGIONS);
    let mut rng = Rng::from_key([7; 32]);
    let mut group = c.benchmark_group(SLOT.name);
    let [choose, count] = SLOT.members else {
        unreachable!()
    };
    clean_simd_state();
    group.bench_function(*choose, |b| {
        b.iter(|| slot::choose(black_box(&map), &SLOT_REQUEST, &mut rng))
    });
    clean_simd_state();
    group.bench_function(*count, |b| {
        b.iter(|| slot::count(black_box(&map), &SLOT_REQUEST))
    });
    group.finish();
}

fn boot(c: &mut Criterion) {
    let (image, packed) = image_and_container();
    inflate(c, &image, &packed);
    sha256(c, &image);
    relocate(c);
    slot_choice(c);
}

criterion_group!(benches, boot);
criterion_main!(benches);
