//! `elf`: any bytes as an ELF payload for either machine. Parsing never panics; a
//! file that parses is loaded and relocated into an image of exactly `span()` bytes
//! with guard bytes on both sides, which must never change; the loaded bytes are the
//! segments' file bytes and zeros; the relocation counts match the tables; the headers
//! alone (what the shim places by) agree with the whole file. Laid out as xtask packs
//! it, the file unpacked over junk in its slot, its gaps cleared and relocated in place
//! (the shim's path) gives the same image as loading and relocating the file.

use shim_common::elf::{lay_out, Elf, ElfError, Machine};

const GUARD: usize = 64;
const GUARD_BYTE: u8 = 0xa5;
const VIRT: u64 = 0xffff_0000_1234_0000;
/// Larger images are parsed but not loaded (memory per run).
const MAX_SPAN: u64 = 1 << 22;

pub fn run(data: &[u8]) {
    for machine in [Machine::Aarch64, Machine::X86_64] {
        check(data, machine);
    }
}

fn check(data: &[u8], machine: Machine) {
    let elf = match Elf::parse(data, machine) {
        Ok(elf) => elf,
        Err(_) => return,
    };
    let (span, base) = (elf.span(), elf.link_base());
    let headers_len = Elf::headers_len(data).expect("a parsed file's headers") as usize;
    let headers = Elf::headers(&data[..headers_len], data.len() as u64, machine)
        .expect("headers refused alone that parse with the file");
    assert_eq!(
        (headers.span(), headers.align(), headers.entry()),
        (span, elf.align(), elf.entry()),
        "headers differ"
    );
    assert!(headers.segments().eq(elf.segments()), "segments differ");
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
        elf.load(data, &mut small),
        Err(ElfError::ImageTooSmall { .. })
    ));
    assert!(
        small.iter().all(|&b| b == GUARD_BYTE),
        "a failed load wrote"
    );

    let mut buf = vec![GUARD_BYTE; GUARD + span + GUARD];
    let image = &mut buf[GUARD..GUARD + span];
    if elf.load(data, image).is_ok() {
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
        let relocated = elf.relocate(image, VIRT);
        if let Ok(stats) = relocated {
            let rela = elf.rela_types(data).filter(|&t| t != 0).count();
            assert_eq!(stats.rela, rela, "RELA words relocated");
            assert_eq!(stats.relr, elf.relr_words(data), "RELR words relocated");
        }
        in_place(data, machine, image, relocated.is_ok());
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

/// The shim's path for `data` laid out as xtask packs it: its headers alone, then the
/// image over junk in a slot of `span` bytes, gaps cleared, tables read from the image,
/// relocated. The same as `loaded` (the file loaded and relocated, `relocated` if that
/// succeeded), and nothing written outside the slot.
fn in_place(data: &[u8], machine: Machine, loaded: &[u8], relocated: bool) {
    let (file, kept) = lay_out(data, machine).expect("lay_out refused a parsed file");
    let mut elf =
        Elf::headers(&file[..kept], file.len() as u64, machine).expect("a laid-out file's headers");
    let body = elf
        .laid_out(kept as u64, file.len() as u64)
        .expect("lay_out's output is not laid out") as usize;
    let span = elf.span() as usize;
    let mut buf = vec![GUARD_BYTE; GUARD + span + GUARD];
    let slot = &mut buf[GUARD..GUARD + span];
    slot[..body].copy_from_slice(&file[kept..]);
    elf.clear_gaps(slot).expect("gaps cleared");
    let read = elf.read_tables(slot);
    if relocated {
        read.expect("tables read from the image");
        elf.relocate(slot, VIRT).expect("relocated in place");
        assert!(slot == loaded, "in place differs from load and relocate");
    }
    assert!(buf[..GUARD]
        .iter()
        .chain(&buf[GUARD + span..])
        .all(|&b| b == GUARD_BYTE));
}
