//! Raw deflate (RFC 1951) into one caller-provided slice, with zlib-rs through its zlib
//! API. Its state and 32 KiB window come from a scratch area the caller owns: nothing is
//! allocated, and the only `unsafe` of shim-common is here, around those calls.
#![allow(unsafe_code)]

use core::ffi::{c_int, c_uint, c_void};
use core::mem::MaybeUninit;

use libz_rs_sys::{
    inflate, inflateEnd, inflateInit2_, z_stream, zlibVersion, Z_BUF_ERROR, Z_DATA_ERROR, Z_FINISH,
    Z_OK, Z_STREAM_END,
};

/// Bytes of scratch one stream takes: zlib-rs 0.6's state (about 15 KiB) and window
/// (32 KiB plus padding), each aligned to 64 bytes. A test checks it is enough.
pub const SCRATCH: usize = 48 << 10;

/// The most a zlib call takes or gives at once (`avail_in` and `avail_out` are 32-bit).
const CALL_MAX: usize = u32::MAX as usize;

/// The memory one inflate stream works in. 48 KiB: keep it off a small stack.
#[repr(C, align(64))]
pub struct Inflater {
    scratch: [MaybeUninit<u8>; SCRATCH],
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
    /// Whether the last block ended. If not, the input or the output ran out.
    pub ended: bool,
}

/// Why inflating stopped. [`Inflater::inflate`] itself fails only with `Corrupt` or
/// `Scratch`; whether a stream ran short or long is for its caller to tell from
/// [`Inflated`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InflateFailure {
    /// The stream is cut short.
    Truncated,
    /// The stream holds more than `unpacked_size` bytes.
    TooLong,
    /// Malformed deflate or zlib data.
    Corrupt,
    /// zlib-rs asked for more than [`SCRATCH`] (a newer version?) or refused to start.
    Scratch,
}

impl Inflater {
    pub const fn new() -> Self {
        Inflater {
            scratch: [MaybeUninit::uninit(); SCRATCH],
        }
    }

    /// Inflates raw deflate data from the start of `src` into the start of `dst`, until
    /// the last block ends or either slice runs out.
    pub fn inflate(&mut self, src: &[u8], dst: &mut [u8]) -> Result<Inflated, InflateFailure> {
        self.inflate_with(src, dst, CALL_MAX, SCRATCH)
    }

    /// [`Self::inflate`], giving zlib at most `call_max` bytes each way per call and
    /// the first `scratch` bytes (at most [`SCRATCH`]) of the scratch.
    fn inflate_with(
        &mut self,
        src: &[u8],
        dst: &mut [u8],
        call_max: usize,
        scratch: usize,
    ) -> Result<Inflated, InflateFailure> {
        let mut bump = Bump {
            base: self.scratch.as_mut_ptr().cast(),
            len: scratch.min(SCRATCH),
            used: 0,
        };
        let mut strm = z_stream {
            zalloc: Some(bump_alloc),
            zfree: Some(bump_free),
            opaque: (&raw mut bump).cast(),
            ..z_stream::default()
        };
        // SAFETY: `strm` is a fresh z_stream whose allocator hands out `bump`'s region,
        // which `&mut self` keeps to this stream; both outlive every call below. -15 asks
        // for raw deflate with a 32 KiB window.
        let rc = unsafe {
            inflateInit2_(
                &raw mut strm,
                -15,
                zlibVersion(),
                size_of::<z_stream>() as c_int,
            )
        };
        if rc != Z_OK {
            return Err(InflateFailure::Scratch);
        }
        let mut done = Inflated {
            consumed: 0,
            produced: 0,
            ended: false,
        };
        let result = loop {
            let input = src.get(done.consumed..).unwrap_or_default();
            let output = dst.get_mut(done.produced..).unwrap_or_default();
            let (give, room) = (input.len().min(call_max), output.len().min(call_max));
            strm.next_in = input.as_ptr();
            strm.avail_in = give as c_uint;
            strm.next_out = output.as_mut_ptr();
            strm.avail_out = room as c_uint;
            // SAFETY: `strm` was initialized above; next_in/next_out point at `give` and
            // `room` bytes of `src` and `dst`, which outlive the call and are not
            // otherwise touched during it.
            let rc = unsafe { inflate(&raw mut strm, Z_FINISH) };
            // zlib only lowers avail_in and avail_out, and never below 0: nothing clamps.
            done.consumed = done
                .consumed
                .saturating_add(give.saturating_sub(strm.avail_in as usize));
            done.produced = done
                .produced
                .saturating_add(room.saturating_sub(strm.avail_out as usize));
            match rc {
                Z_STREAM_END => {
                    done.ended = true;
                    break Ok(done);
                }
                // Out of input or of room: go on only where a call had less than all.
                Z_OK | Z_BUF_ERROR => {
                    let more_in = strm.avail_in == 0 && done.consumed < src.len();
                    let more_out = strm.avail_out == 0 && done.produced < dst.len();
                    if !(more_in || more_out) {
                        break Ok(done);
                    }
                }
                Z_DATA_ERROR => break Err(InflateFailure::Corrupt),
                _ => break Err(InflateFailure::Scratch),
            }
        };
        // SAFETY: `strm` was initialized and is ended once; its memory is `bump`'s.
        unsafe { inflateEnd(&raw mut strm) };
        result
    }
}

/// zalloc/zfree over one region: each allocation follows the last; all are dropped
/// together when the stream ends.
struct Bump {
    base: *mut u8,
    len: usize,
    used: usize,
}

/// zlib's zalloc: `items * size` bytes from the `Bump` behind `opaque`, 16-aligned
/// (zlib-rs aligns further itself); null when they do not fit.
///
/// # Safety
/// `opaque` points at a live `Bump` that nothing else uses during the call.
unsafe extern "C" fn bump_alloc(opaque: *mut c_void, items: c_uint, size: c_uint) -> *mut c_void {
    // SAFETY: as the caller (zlib-rs, handed `opaque` by inflate_in_calls) promises.
    let bump = unsafe { &mut *opaque.cast::<Bump>() };
    let start = bump.used.next_multiple_of(16);
    let end = (items as usize)
        .checked_mul(size as usize)
        .and_then(|n| start.checked_add(n));
    match end {
        Some(end) if end <= bump.len => {
            bump.used = end;
            // SAFETY: start <= end <= len: inside the region.
            unsafe { bump.base.add(start).cast() }
        }
        _ => core::ptr::null_mut(),
    }
}

/// zlib's zfree: nothing; the region is reused whole by the next stream.
unsafe extern "C" fn bump_free(_opaque: *mut c_void, _ptr: *mut c_void) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn deflate(data: &[u8]) -> Vec<u8> {
        miniz_oxide::deflate::compress_to_vec(data, 9)
    }

    fn sample() -> Vec<u8> {
        (0..300_000u32)
            .flat_map(|i| (i / 7 ^ i % 251).to_le_bytes())
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

    #[test]
    fn stops_when_either_side_runs_out() {
        let data = sample();
        let packed = deflate(&data);
        let mut inflater = Box::new(Inflater::new());
        let mut head = vec![0; 4096];
        let r = inflater.inflate(&packed, &mut head).unwrap();
        assert_eq!((r.produced, r.ended), (4096, false));
        assert_eq!(head, data[..4096]);
        let mut out = vec![0; data.len()];
        let r = inflater
            .inflate(&packed[..packed.len() / 2], &mut out)
            .unwrap();
        assert_eq!((r.consumed, r.ended), (packed.len() / 2, false));
        assert!(out[..r.produced] == data[..r.produced]);
    }

    #[test]
    fn corrupt_data_is_an_error() {
        // Block type 3 is reserved (RFC 1951 3.2.3).
        let mut out = [0; 16];
        let r = Box::<Inflater>::default().inflate(&[0b111], &mut out);
        assert_eq!(r, Err(InflateFailure::Corrupt));
    }

    /// Inputs and outputs over 4 GiB take several calls: the same loop, with calls of
    /// a few bytes, gives the same result.
    #[test]
    fn small_calls_give_the_same_output() {
        let data = sample();
        let packed = deflate(&data);
        let mut out = vec![0; data.len() + 10];
        let mut inflater = Box::new(Inflater::new());
        for call_max in [1, 7, 4096] {
            out.fill(0);
            let r = inflater.inflate_with(&packed, &mut out, call_max, SCRATCH);
            let whole = Inflated {
                consumed: packed.len(),
                produced: data.len(),
                ended: true,
            };
            assert_eq!(r, Ok(whole), "calls of {call_max}");
            assert!(out[..data.len()] == data);
        }
    }

    /// zlib-rs takes its state and window in one allocation at init: SCRATCH holds it,
    /// with less than 2 KiB to spare.
    #[test]
    fn scratch_fits_one_stream_tightly() {
        let packed = deflate(b"abc");
        let mut out = [0; 3];
        let mut inflater = Box::<Inflater>::default();
        let mut with = |scratch| inflater.inflate_with(&packed, &mut out, CALL_MAX, scratch);
        assert!(with(SCRATCH).is_ok_and(|r| r.ended));
        assert_eq!(with(SCRATCH - 2048), Err(InflateFailure::Scratch));
    }
}
