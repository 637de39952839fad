//! `container`: any bytes as a payload container. Parsing, unpacking and verifying
//! never panic; the parsed fields are the header's bytes; `unpack` writes only the
//! first `unpacked_size` bytes of a larger buffer and returns exactly that many, and
//! `unpack_body` the same bytes after the kept prefix, which `verify_body` agrees on;
//! `unpack_prefix` gives the same first bytes (for LZ4, the first block, in a buffer of
//! `first_block_len`); with the header's digest replaced by
//! the digest of what it unpacked to (and its zero runs out of the way), the container
//! verifies and unpacks the same; a verified payload has the header's digest, whatever
//! its zero runs say; a zlib stream the shim unpacks, miniz_oxide inflates to the
//! same bytes; and any bytes as one LZ4 block decode as lz4_flex decodes them.

use shim_common::container::{self, Compression, ContainerError, Inflater};
use shim_common::digest;

const GUARD: usize = 64;
const GUARD_BYTE: u8 = 0xa5;
/// Larger payloads are checked only against a small buffer (memory per run).
const MAX_UNPACKED: u64 = 1 << 20;
const PREFIX: usize = 64;

pub fn run(data: &[u8]) {
    lz4_block(data);
    let Ok(p) = container::parse(data) else {
        return;
    };
    let field = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().unwrap());
    let table = field(72) as usize * container::ZERO_RUN_LEN;
    let header = container::HEADER_LEN + table;
    assert_eq!(p.unpacked_size, field(24));
    assert_eq!((p.kept.len() + p.packed.len()) as u64, field(16));
    assert_eq!(p.kept.len() as u64, field(64));
    assert_eq!(p.zero_runs.len() * container::ZERO_RUN_LEN, table);
    let entries = data[container::HEADER_LEN..header].chunks_exact(container::ZERO_RUN_LEN);
    for (run, raw) in p.zero_runs.iter().zip(entries) {
        let run = run.get();
        let u64_at = |at: usize| u64::from_le_bytes(raw[at..at + 8].try_into().unwrap());
        let u32_at = |at: usize| u32::from_be_bytes(raw[at..at + 4].try_into().unwrap());
        assert_eq!((run.start, run.len), (u64_at(0), u64_at(8)));
        assert_eq!(run.before, core::array::from_fn(|i| u32_at(16 + 4 * i)));
        assert_eq!(run.after, core::array::from_fn(|i| u32_at(48 + 4 * i)));
    }
    assert_eq!(p.kept, &data[header..header + p.kept.len()]);
    let packed_at = header + p.kept.len();
    assert_eq!(p.packed, &data[packed_at..packed_at + p.packed.len()]);
    assert_eq!(&p.digest[..], &data[32..64]);
    assert!(p.kept.len() as u64 <= p.unpacked_size);
    if p.compression == Compression::None {
        assert_eq!(p.packed.len() as u64, p.body_size());
    }
    let mut inflater = Box::new(Inflater::new());

    let mut head = [GUARD_BYTE; PREFIX];
    let prefix = container::unpack_prefix(&p, &mut head, &mut inflater);
    if let Ok(n) = prefix {
        assert!(n <= PREFIX && n as u64 <= p.unpacked_size);
    }

    if p.unpacked_size > MAX_UNPACKED {
        let mut out = vec![GUARD_BYTE; 4096];
        let r = container::unpack(&p, &mut out, &mut inflater);
        assert!(
            matches!(r, Err(ContainerError::OutputTooSmall { .. })),
            "{r:?}"
        );
        assert!(
            out.iter().all(|&b| b == GUARD_BYTE),
            "a refused unpack wrote"
        );
        return;
    }
    let size = p.unpacked_size as usize;
    let mut out = vec![GUARD_BYTE; size + GUARD];
    let r = container::unpack(&p, &mut out, &mut inflater);
    assert!(
        out[size..].iter().all(|&b| b == GUARD_BYTE),
        "unpack wrote past unpacked_size"
    );
    let Ok(n) = r else { return };
    assert_eq!(n, size, "unpacked to a size other than unpacked_size");
    let unpacked = &out[..size];
    if let Ok(k) = prefix {
        assert_eq!(
            &head[..k],
            &unpacked[..k],
            "unpack_prefix differs from unpack"
        );
        // An LZ4 prefix is the first block, whole: it may be shorter.
        match p.compression {
            Compression::Lz4 => assert!(k <= size.min(PREFIX)),
            _ => assert_eq!(k, size.min(PREFIX)),
        }
    }
    // What the shim does for LZ4: a buffer of first_block_len holds the first block.
    if let Some(len) = container::first_block_len(&p) {
        let mut block = vec![GUARD_BYTE; len as usize];
        let k = container::unpack_prefix(&p, &mut block, &mut inflater)
            .expect("the first block of a container that unpacks");
        assert!(k <= size);
        assert_eq!(&block[..k], &unpacked[..k], "the first block differs");
    }
    if p.compression == Compression::Zlib {
        // The deflate data after the 2-byte zlib header: the shim's inflater (sirocco)
        // and miniz_oxide agree on everything the shim accepts.
        let body = &unpacked[p.kept.len()..];
        let other = miniz_oxide::inflate::decompress_to_vec_with_limit(&p.packed[2..], body.len());
        assert_eq!(other.as_deref().ok(), Some(body), "miniz_oxide disagrees");
    }
    let verified = container::verify(&p, unpacked).is_ok();
    let actual = digest::sha256(digest::portable, unpacked);
    // A zero run whose `after` is wrong may refuse a payload that has the digest.
    assert!(!verified || actual == p.digest, "verified another digest");
    if p.zero_runs.is_empty() {
        assert_eq!(verified, actual == p.digest);
    }
    // The rest alone, as the shim unpacks an ELF payload into its slot.
    let mut body = vec![GUARD_BYTE; size - p.kept.len() + GUARD];
    let n = container::unpack_body(&p, &mut body, &mut inflater);
    assert_eq!(n, Ok(size - p.kept.len()), "unpack_body after unpack");
    assert_eq!(&body[..size - p.kept.len()], &unpacked[p.kept.len()..]);
    assert!(body[size - p.kept.len()..].iter().all(|&b| b == GUARD_BYTE));
    let body_verified = container::verify_body(&p, &body, digest::portable).is_ok();
    assert_eq!(body_verified, verified, "verify_body disagrees with verify");

    // The same container with the digest of what it holds: it verifies and unpacks to
    // the same bytes, and a changed byte no longer verifies.
    let mut fixed = data.to_vec();
    fixed[32..64].copy_from_slice(&actual);
    for run in fixed[container::HEADER_LEN..header].chunks_exact_mut(container::ZERO_RUN_LEN) {
        run[..8].copy_from_slice(&u64::MAX.to_le_bytes()); // past the end: never taken
    }
    let q = container::parse(&fixed).expect("a digest change broke parsing");
    let mut again = vec![0u8; size];
    assert_eq!(container::unpack(&q, &mut again, &mut inflater), Ok(size));
    assert_eq!(again, unpacked, "two unpacks differ");
    assert_eq!(container::verify(&q, &again), Ok(()));
    if let Some(b) = again.first_mut() {
        *b ^= 1;
        assert!(
            container::verify(&q, &again).is_err(),
            "a changed byte verified"
        );
    }
}

/// Any bytes as one LZ4 block, into room of a size they pick: the shim's decoder gives
/// what lz4_flex's gives, bytes or the same kind of error.
fn lz4_block(data: &[u8]) {
    use shim_common::lz4::{decode_block, BlockError};
    let room = data.first().map_or(0, |&b| usize::from(b) * 64);
    let (mut ours, mut theirs) = (vec![0u8; room], vec![0u8; room]);
    let a = decode_block(data, &mut ours);
    let b = lz4_flex::block::decompress_into(data, &mut theirs);
    let too_small = |e: &lz4_flex::block::DecompressError| {
        matches!(e, lz4_flex::block::DecompressError::OutputTooSmall { .. })
    };
    match (a, b) {
        (Ok(n), Ok(m)) => assert!(n == m && ours[..n] == theirs[..m], "LZ4 decoders differ"),
        (Err(BlockError::OutputTooSmall), Err(e)) => assert!(too_small(&e), "{e:?}"),
        (Err(BlockError::Corrupt), Err(e)) => assert!(!too_small(&e), "{e:?}"),
        (a, b) => panic!("LZ4: shim {a:?}, lz4_flex {b:?}"),
    }
}
