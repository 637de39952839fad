//! Where a Linux arm64 Image may go (Documentation/arch/arm64/booting.rst): a 2 MiB
//! aligned base plus `text_offset`, `image_size` bytes free from the image start, below
//! the 48-bit physical limit, and within one 1 GiB-aligned 32 GiB window with the initrd.
//!
//! ```text
//!  base (2 MiB aligned)   image = base + text_offset
//!  ├── text_offset ───────┼── reserve = max(image_size, file size) ──┤
//!  └──────────────────── one slot of slot::Request::size ───────────────┘
//! ```

use crate::image::{Arm64Image, ImageSize, LEGACY_TEXT_OFFSET};
use crate::memmap::Range;
use crate::plan::SLOT_ALIGN;
use crate::slot;

/// Flag bit 3 set: "2MB aligned base such that all image_size bytes counted from the
/// start of the image are within the 48-bit addressable range of physical memory".
pub const PA_LIMIT: u64 = 1 << 48;
/// "The initrd must [...] lie in a 1GB aligned physical memory window of up to 32GB
/// in size that fully covers the kernel Image as well."
pub const INITRD_WINDOW: u64 = 32 << 30;
const GIB: u64 = 1 << 30;
/// What U-Boot's `booti` reserves for a kernel whose header states no size
/// (image_size 0, before v3.17): booting.rst gives no figure, so we follow U-Boot.
pub const LEGACY_RESERVE: u64 = 16 << 20;

/// How the kernel wants to be laid out, from its header and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub text_offset: u64,
    /// Bytes from the image start that must be free: `image_size` (bss and early page
    /// tables included), never less than the file itself.
    pub reserve: u64,
    /// Flag bit 3: the base may be anywhere below 2^48. Clear: "as close as possible
    /// to the base of DRAM", so the shim does not randomize the physical address.
    pub anywhere: bool,
    /// `image_size` is 0: a kernel before v3.17, placed as booting.rst asked then.
    pub legacy: bool,
}

impl Layout {
    pub fn new(img: &Arm64Image, file_size: u64) -> Layout {
        match img.image_size {
            ImageSize::Known(size) => Layout {
                text_offset: img.text_offset,
                reserve: size.max(file_size),
                anywhere: img.phys_anywhere,
                legacy: false,
            },
            // "Where image_size is zero, text_offset can be assumed to be 0x80000."
            ImageSize::Unknown => Layout {
                text_offset: LEGACY_TEXT_OFFSET,
                reserve: LEGACY_RESERVE.max(file_size),
                anywhere: false,
                legacy: true,
            },
        }
    }

    /// The slots: 2 MiB-aligned bases whose `text_offset + reserve` bytes are free, at
    /// or above `dram_base`, below 2^48, and inside a 32 GiB window with `initrd`.
    /// `None` if the sizes overflow, or if no window can hold the kernel and the
    /// initrd: an initrd spanning more than 32 GiB, or a kernel of more than 31 GiB
    /// with an initrd (below that the two bounds suffice: a kernel starting anywhere
    /// in its first GiB still ends inside the window that GiB begins).
    pub fn request(&self, dram_base: u64, initrd: Option<Range>) -> Option<slot::Request> {
        let size = self.text_offset.checked_add(self.reserve)?;
        let (mut min_addr, mut max_end) = (dram_base, PA_LIMIT);
        if let Some(initrd) = initrd {
            let span = initrd
                .end
                .checked_next_multiple_of(GIB)?
                .checked_sub(initrd.start & !(GIB - 1))?;
            if span > INITRD_WINDOW || size > INITRD_WINDOW - GIB {
                return None;
            }
            // Any 1 GiB-aligned window of 32 GiB that holds the initrd starts at or
            // after `align_up(end, 1G) - 32G` and ends by `align_down(start, 1G) + 32G`.
            let lowest = initrd.end.checked_next_multiple_of(GIB)?;
            min_addr = min_addr.max(lowest.saturating_sub(INITRD_WINDOW));
            max_end = max_end.min((initrd.start & !(GIB - 1)).saturating_add(INITRD_WINDOW));
        }
        Some(slot::Request {
            size,
            align: SLOT_ALIGN,
            min_addr,
            max_end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::PageSize;
    use crate::memmap::MemoryMap;

    const MIB: u64 = 1 << 20;

    fn image(text_offset: u64, size: ImageSize, anywhere: bool) -> Arm64Image {
        Arm64Image {
            text_offset,
            image_size: size,
            page_size: PageSize::K4,
            phys_anywhere: anywhere,
            flags: 0,
        }
    }

    #[test]
    fn modern_kernels_reserve_image_size_and_go_anywhere() {
        let l = Layout::new(&image(0, ImageSize::Known(30 * MIB), true), 25 * MIB);
        assert_eq!(
            (l.text_offset, l.reserve, l.anywhere, l.legacy),
            (0, 30 * MIB, true, false)
        );
        let req = l.request(GIB, None).unwrap();
        assert_eq!(
            (req.size, req.align, req.min_addr, req.max_end),
            (30 * MIB, 2 * MIB, GIB, PA_LIMIT)
        );
        // A header smaller than the file never shrinks what is reserved.
        let l = Layout::new(&image(0, ImageSize::Known(MIB), true), 3 * MIB);
        assert_eq!(l.reserve, 3 * MIB);
    }

    #[test]
    fn flag_bit_3_clear_is_not_anywhere() {
        let l = Layout::new(&image(0x8_0000, ImageSize::Known(20 * MIB), false), MIB);
        assert!(!l.anywhere && !l.legacy);
        assert_eq!(l.request(GIB, None).unwrap().size, 0x8_0000 + 20 * MIB);
    }

    #[test]
    fn image_size_zero_follows_booting_rst_and_u_boot() {
        let l = Layout::new(&image(0x1234, ImageSize::Unknown, true), 9 * MIB);
        assert_eq!(
            l,
            Layout {
                text_offset: LEGACY_TEXT_OFFSET,
                reserve: LEGACY_RESERVE,
                anywhere: false,
                legacy: true
            }
        );
        let big = Layout::new(&image(0, ImageSize::Unknown, false), 20 * MIB);
        assert_eq!(big.reserve, 20 * MIB);
    }

    /// Found by the place fuzz target: a kernel of more than 32 GiB (its header's
    /// image_size) got a slot with an initrd, though no 32 GiB window holds both.
    #[test]
    fn no_slot_when_no_window_holds_kernel_and_initrd() {
        let initrd = Range {
            start: 48 * GIB,
            end: 48 * GIB + (1 << 20),
        };
        let kernel = |reserve: u64| Layout {
            text_offset: 0,
            reserve,
            anywhere: true,
            legacy: false,
        };
        assert!(kernel(31 * GIB).request(GIB, Some(initrd)).is_some());
        assert!(kernel(31 * GIB + (2 << 20))
            .request(GIB, Some(initrd))
            .is_none());
        assert!(kernel(40 * GIB).request(GIB, None).is_some());
        let huge = Range {
            start: GIB,
            end: 34 * GIB,
        };
        assert!(kernel(64 << 20).request(GIB, Some(huge)).is_none());
    }

    #[test]
    fn the_initrd_window_bounds_the_kernel() {
        let l = Layout::new(&image(0, ImageSize::Known(32 * MIB), true), 32 * MIB);
        let initrd = Range {
            start: 40 * GIB + 5 * MIB,
            end: 41 * GIB + 7 * MIB,
        };
        let req = l.request(GIB, Some(initrd)).unwrap();
        // Windows [10G, 42G) .. [40G, 72G) hold the initrd.
        assert_eq!((req.min_addr, req.max_end), (10 * GIB, 72 * GIB));
        // Every slot in 1..100 GiB of RAM then shares a window with the initrd.
        let mut free = MemoryMap::new();
        free.insert(Range {
            start: GIB,
            end: 100 * GIB,
        })
        .unwrap();
        for n in [0, 1, slot::count(&free, &req).unwrap() - 1] {
            let base = slot::nth(&free, &req, n).unwrap();
            let lo = base.min(initrd.start) & !(GIB - 1);
            let hi = (base + req.size).max(initrd.end);
            assert!(hi - lo <= INITRD_WINDOW, "slot {n} at {base:#x}");
        }
        assert!(l
            .request(
                GIB,
                Some(Range {
                    start: 0,
                    end: u64::MAX
                })
            )
            .is_none());
    }

    #[test]
    fn overflowing_sizes_are_refused() {
        let l = Layout::new(&image(u64::MAX, ImageSize::Known(1), true), 1);
        assert!(l.request(0, None).is_none());
    }
}
