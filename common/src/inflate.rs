//! Raw deflate (RFC 1951) into one caller-provided slice, with sirocco's decoder: a
//! table-driven loop in libdeflate's style, safe Rust, no allocation. Its tables (about
//! 13 KiB) live in the caller's [`Inflater`]; the output is written once, in place.

use sirocco::inflate::{Decoder, Error};
use sirocco::Format;

/// The memory one inflate stream works in: the decoder's tables and state, 13-14 KiB.
/// Keep it off a small stack.
pub struct Inflater {
    decoder: Decoder,
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

/// How far [`Inflater::inflate`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inflated {
    /// Bytes of input read.
    pub consumed: usize,
    /// Bytes of output written, from the start of the output slice.
    pub produced: usize,
    /// Whether the last block ended. If not, the output ran out first.
    pub ended: bool,
}

/// Why inflating stopped short of the stream's end. [`Inflater::inflate`] itself fails
/// only with `Truncated` or `Corrupt`; whether a stream ran long is for its caller to
/// tell from [`Inflated`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InflateFailure {
    /// The stream is cut short.
    Truncated,
    /// The stream holds more than `unpacked_size` bytes.
    TooLong,
    /// Malformed deflate or zlib data.
    Corrupt,
}

impl Inflater {
    pub const fn new() -> Self {
        Inflater {
            decoder: Decoder::new(Format::Deflate),
        }
    }

    /// Inflates raw deflate data from the start of `src` into the start of `dst`, until
    /// the last block ends or `dst` is full. Input that ends before either is
    /// [`InflateFailure::Truncated`].
    pub fn inflate(&mut self, src: &[u8], dst: &mut [u8]) -> Result<Inflated, InflateFailure> {
        self.decoder.reset();
        match self.decoder.decompress(src, dst, true) {
            Ok(p) => Ok(Inflated {
                consumed: p.consumed,
                produced: p.output.len(),
                ended: p.done,
            }),
            Err(Error::Truncated) => Err(InflateFailure::Truncated),
            // BadData. A full `dst` (even an empty one) comes back above as progress, so
            // a one-shot call never gives BufferFull; the other errors (checksums,
            // dictionaries, trailing data, limits) belong to zlib and gzip streams,
            // which the container unwraps itself.
            Err(_) => Err(InflateFailure::Corrupt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deflate(data: &[u8]) -> Vec<u8> {
        miniz_oxide::deflate::compress_to_vec(data, 9)
    }

    fn sample() -> Vec<u8> {
        (0..300_000u32)
            .flat_map(|i| ((i / 7) ^ (i % 251)).to_le_bytes())
            .collect()
    }

    #[test]
    fn whole_stream_into_an_exact_slice() {
        let data = sample();
        let packed = deflate(&data);
        let mut out = vec![0; data.len()];
        let r = Box::<Inflater>::default().inflate(&packed, &mut out);
        let whole = Inflated {
            consumed: packed.len(),
            produced: data.len(),
            ended: true,
        };
        assert_eq!(r, Ok(whole));
        assert!(out == data);
    }

    /// Bytes after the stream (a zlib or gzip trailer) are not read.
    #[test]
    fn stops_at_the_last_block() {
        let data = sample();
        let mut packed = deflate(&data);
        let len = packed.len();
        packed.extend_from_slice(&[0xff; 8]);
        let mut out = vec![0; data.len() + 100];
        let r = Box::<Inflater>::default().inflate(&packed, &mut out);
        let whole = Inflated {
            consumed: len,
            produced: data.len(),
            ended: true,
        };
        assert_eq!(r, Ok(whole));
        assert!(out[..data.len()] == data);
    }

    #[test]
    fn a_full_output_stops_early_and_the_inflater_starts_afresh() {
        let data = sample();
        let packed = deflate(&data);
        let mut inflater = Box::new(Inflater::new());
        for len in [0, 1, 4096, data.len() - 1] {
            let mut head = vec![0; len];
            let r = inflater.inflate(&packed, &mut head).unwrap();
            assert_eq!((r.produced, r.ended), (len, false));
            assert!(head == data[..len]);
        }
        let mut out = vec![0; data.len()];
        let r = inflater.inflate(&packed, &mut out).unwrap();
        assert_eq!((r.produced, r.ended), (data.len(), true));
        assert!(out == data);
    }

    #[test]
    fn cut_input_is_truncated() {
        let data = sample();
        let packed = deflate(&data);
        let mut out = vec![0; data.len()];
        let mut inflater = Box::new(Inflater::new());
        for len in [0, 1, packed.len() / 2, packed.len() - 1] {
            let r = inflater.inflate(&packed[..len], &mut out);
            assert_eq!(r, Err(InflateFailure::Truncated), "cut at {len}");
        }
    }

    #[test]
    fn corrupt_data_is_an_error() {
        // Block type 3 is reserved (RFC 1951 3.2.3).
        let mut out = [0; 16];
        let r = Box::<Inflater>::default().inflate(&[0b111], &mut out);
        assert_eq!(r, Err(InflateFailure::Corrupt));
        // A distance reaching before the start of the output (RFC 1951 3.2.5): a fixed
        // block whose first symbol is a match (length 3, distance 1).
        let r = Box::<Inflater>::default().inflate(&[0x03, 0x02, 0x00, 0x00], &mut out);
        assert_eq!(r, Err(InflateFailure::Corrupt));
    }
}
