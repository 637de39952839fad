//! `x86_bzimage`: any bytes as a Linux bzImage. Parsing returns a typed error or a
//! header; decompressing writes nothing past its output (guard bytes) and yields exactly
//! the header's length.

use shim_common::container::Inflater;
use shim_common::x86_linux::{decompress, parse_bzimage};

pub fn run(data: &[u8]) {
    let Ok(bz) = parse_bzimage(data) else { return };
    // Keep each run small; a too-small buffer is an error path worth taking too.
    let len = (bz.decompressed_len as usize).min(1 << 18);
    let mut out = vec![0xa5u8; len + 64];
    let (body, guard) = out.split_at_mut(len);
    if let Ok(n) = decompress(&bz, body, &mut Inflater::new()) {
        assert_eq!(n as u64, bz.decompressed_len);
    }
    assert!(guard.iter().all(|&b| b == 0xa5), "wrote past the output");
}
