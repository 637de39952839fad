//! `arm64_image`: any bytes as a Linux arm64 Image header. Parsing never panics and
//! its result is exactly what booting.rst says the 64 bytes mean; the placement
//! request built from it keeps its sizes and bounds.

use shim_common::arm64_linux::{Layout, INITRD_WINDOW, PA_LIMIT};
use shim_common::image::{self, Arm64Image, ImageError, ImageSize, PageSize};
use shim_common::memmap::Range;
use shim_common::plan::SLOT_ALIGN;

pub fn run(data: &[u8]) {
    let parsed = image::parse_arm64(data);
    if data.len() < 64 {
        assert_eq!(parsed, Err(ImageError::Truncated));
        return;
    }
    let le = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().unwrap());
    let magic = u32::from_le_bytes(data[0x38..0x3c].try_into().unwrap());
    let (text_offset, size, flags) = (le(0x08), le(0x10), le(0x18));
    let want = if magic != image::ARM64_MAGIC {
        Err(ImageError::BadMagic { found: magic })
    } else if size == 0 {
        Ok(Arm64Image {
            text_offset: image::LEGACY_TEXT_OFFSET,
            image_size: ImageSize::Unknown,
            page_size: PageSize::Unspecified,
            phys_anywhere: false,
            flags: 0,
        })
    } else if flags & 1 != 0 {
        Err(ImageError::BigEndian)
    } else {
        Ok(Arm64Image {
            text_offset,
            image_size: ImageSize::Known(size),
            page_size: match (flags >> 1) & 3 {
                1 => PageSize::K4,
                2 => PageSize::K16,
                3 => PageSize::K64,
                _ => PageSize::Unspecified,
            },
            phys_anywhere: flags & 8 != 0,
            flags,
        })
    };
    assert_eq!(parsed, want);
    let Ok(img) = parsed else { return };

    // The bytes after the header say where RAM starts, the file size and an initrd.
    let tail = |at: usize| {
        data.get(at..at + 8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    let (dram_base, file_size) = (tail(64) & !(SLOT_ALIGN - 1), tail(72));
    let initrd = (tail(80) != 0).then(|| Range {
        start: tail(80),
        end: tail(80).saturating_add(tail(88)),
    });
    let layout = Layout::new(&img, file_size);
    assert!(layout.reserve >= file_size);
    if let ImageSize::Known(n) = img.image_size {
        assert_eq!(layout.reserve, n.max(file_size));
        assert_eq!((layout.anywhere, layout.legacy), (img.phys_anywhere, false));
    } else {
        assert!(layout.legacy && !layout.anywhere);
        assert_eq!(layout.text_offset, image::LEGACY_TEXT_OFFSET);
    }
    match layout.request(dram_base, initrd) {
        Some(req) => {
            assert_eq!(
                Some(req.size),
                layout.text_offset.checked_add(layout.reserve)
            );
            assert_eq!(req.align, SLOT_ALIGN);
            assert!(req.min_addr >= dram_base && req.max_end <= PA_LIMIT);
        }
        None => assert!(
            may_refuse(&layout, initrd),
            "request refused sizes that fit"
        ),
    }
}

/// Whether booting.rst leaves no slot: the sizes overflow, or no 1 GiB-aligned 32 GiB
/// window holds the initrd and a kernel this large.
pub fn may_refuse(layout: &Layout, initrd: Option<Range>) -> bool {
    const GIB: u64 = 1 << 30;
    let Some(size) = layout.text_offset.checked_add(layout.reserve) else {
        return true;
    };
    initrd.is_some_and(|i| {
        let Some(end) = i.end.checked_next_multiple_of(GIB) else {
            return true;
        };
        end - (i.start & !(GIB - 1)) > INITRD_WINDOW || size > INITRD_WINDOW - GIB
    })
}
