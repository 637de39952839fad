//! `x86_vmlinux`: any bytes as a decompressed x86_64 kernel (vmlinux.bin and its
//! relocation table). Laying the segments out and relocating with either table layout
//! write only inside the slot (guard bytes); a refused relocation changes nothing.

use shim_common::x86_linux::{detect_layout, parse_vmlinux, place_segments, relocate, RelocLayout};

pub fn run(data: &[u8]) {
    let Ok(vm) = parse_vmlinux(data) else { return };
    let Ok(image) = usize::try_from(vm.image_size()) else {
        return;
    };
    if image > 1 << 24 {
        return;
    }
    let slot = image.max(data.len());
    let mut buf = vec![0xa5u8; slot + 64];
    buf[..data.len()].copy_from_slice(data);
    let (body, guard) = buf.split_at_mut(slot);
    if place_segments(body, data.len(), &vm).is_ok() {
        let _ = detect_layout(body, data.len(), &vm);
        for layout in [RelocLayout::ThreeLists, RelocLayout::TwoLists] {
            let before = body.to_vec();
            if relocate(body, data.len(), &vm, 0x1234_0000, layout).is_err() {
                assert_eq!(body, &before[..], "a refused relocation wrote");
            }
        }
    }
    assert!(guard.iter().all(|&b| b == 0xa5), "wrote past the slot");
}
