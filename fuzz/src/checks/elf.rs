//! `elf`: any bytes as an ELF payload for either machine. Parsing never panics; a
//! file that parses is loaded and relocated into an image of exactly `span()` bytes
//! with guard bytes on both sides, which must never change; the loaded bytes are the
//! segments' file bytes and zeros; the relocation counts match the tables; the headers
//! read from the first 8 KiB (what the shim places by) agree with the whole file.

use shim_common::elf::{Elf, ElfError, Machine};

const GUARD: usize = 64;
const GUARD_BYTE: u8 = 0xa5;
/// The prefix `common::boot` reads the headers from.
const HEADERS_PREFIX: usize = 8192;
/// Larger images are parsed but not loaded (memory per run).
const MAX_SPAN: u64 = 1 << 22;

pub fn run(data: &[u8]) {
    for machine in [Machine::Aarch64, Machine::X86_64] {
        check(data, machine);
    }
}

fn check(data: &[u8], machine: Machine) {
    let prefix = &data[..data.len().min(HEADERS_PREFIX)];
    let headers = Elf::headers(prefix, data.len() as u64, machine);
    let elf = match Elf::parse(data, machine) {
        Ok(elf) => elf,
        Err(_) => return,
    };
    let (span, base) = (elf.span(), elf.link_base());
    match headers {
        Ok(h) => assert_eq!((h.span, h.align), (span, elf.align()), "headers differ"),
        Err(e) => {
            // Only program headers past the prefix may keep the shim from reading them.
            let phoff = u64::from_le_bytes(data[32..40].try_into().unwrap());
            let phnum = u64::from(u16::from_le_bytes(data[56..58].try_into().unwrap()));
            let end = phoff.saturating_add(phnum * 56);
            assert!(
                end > HEADERS_PREFIX as u64,
                "headers refused in the prefix: {e}"
            );
        }
    }
    assert!(span > 0 && span % 4096 == 0 && base % 4096 == 0);
    assert!(elf.align().is_power_of_two() && elf.align() >= 4096);
    assert!(
        elf.entry() >= base && elf.entry() - base < span,
        "entry outside"
    );
    let mut prev_end = base;
    for s in elf.segments() {
        assert!(
            s.filesz <= s.memsz && s.vaddr >= prev_end,
            "segments overlap"
        );
        let end = s.vaddr - base + s.memsz;
        assert!(end <= span, "segment past the span");
        let file_end = s.offset.checked_add(s.filesz).expect("file bytes wrap");
        assert!(file_end <= data.len() as u64);
        prev_end = s.vaddr + s.memsz;
    }
    if span > MAX_SPAN {
        return;
    }
    let span = span as usize;

    // Too small a destination: an error before any write.
    let mut small = vec![GUARD_BYTE; span - 1];
    assert!(matches!(
        elf.load(&mut small),
        Err(ElfError::ImageTooSmall { .. })
    ));
    assert!(
        small.iter().all(|&b| b == GUARD_BYTE),
        "a failed load wrote"
    );

    let mut buf = vec![GUARD_BYTE; GUARD + span + GUARD];
    let image = &mut buf[GUARD..GUARD + span];
    if elf.load(image).is_ok() {
        let mut expect = vec![0u8; span];
        for s in elf.segments() {
            let (at, off) = ((s.vaddr - base) as usize, s.offset as usize);
            let n = s.filesz as usize;
            expect[at..at + n].copy_from_slice(&data[off..off + n]);
        }
        assert!(
            image == expect.as_slice(),
            "loaded image differs from the segments"
        );
        let relocated = elf.relocate(image, 0xffff_0000_1234_0000);
        if let Ok(stats) = relocated {
            let rela = elf.rela_types().filter(|&t| t != 0).count();
            assert_eq!(stats.rela, rela, "RELA words relocated");
            assert_eq!(stats.relr, elf.relr_words(), "RELR words relocated");
        }
    }
    let (head, rest) = buf.split_at(GUARD);
    assert!(
        head.iter().all(|&b| b == GUARD_BYTE),
        "wrote before the image"
    );
    assert!(
        rest[span..].iter().all(|&b| b == GUARD_BYTE),
        "wrote past the image"
    );
}
