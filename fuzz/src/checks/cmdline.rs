//! `cmdline`: any bytes as a kernel command line. Parsing never panics and what it
//! returns is consistent; `without_shim_options` fits in `cmdline.len()` bytes, is
//! idempotent, leaves no `shim.` option the shim would read, and keeps every option
//! the shim reads otherwise (the line parses to the same non-shim options).

use shim_common::cmdline::{self, CmdlineError, MemmapKind, Options, MAX_MEMMAP};

pub fn run(data: &[u8]) {
    let parsed = cmdline::parse(data);
    if let Ok(o) = &parsed {
        check_options(o);
    }
    let mut out = vec![0xa5u8; data.len() + 8];
    let n = cmdline::without_shim_options(data, &mut out[..data.len()])
        .expect("without_shim_options needs more than cmdline.len() bytes");
    assert!(
        out[data.len()..].iter().all(|&b| b == 0xa5),
        "wrote past its buffer"
    );
    let stripped = &out[..n];
    assert!(!stripped.contains(&0), "a NUL in the stripped line");

    let mut again = vec![0u8; n];
    let m = cmdline::without_shim_options(stripped, &mut again).unwrap();
    assert_eq!(&again[..m], stripped, "stripping twice differs from once");

    let reparsed = cmdline::parse(stripped);
    match &reparsed {
        Err(CmdlineError::UnknownShimOption(name)) => panic!("{name:?} left in {stripped:?}"),
        Err(
            CmdlineError::BadValue { option }
            | CmdlineError::MissingValue { option }
            | CmdlineError::UnexpectedValue { option },
        ) if option.starts_with("shim.") => panic!("{option} left in {stripped:?}"),
        Ok(o) => {
            assert!(
                !o.verbose && o.image_offset.is_none() && !o.weak_fixed,
                "{o:?}"
            );
            check_options(o);
        }
        Err(_) => {}
    }
    if let Ok(o) = parsed {
        let s = reparsed.expect("stripping made a line that parsed unparsable");
        assert_eq!(
            (
                s.nokaslr,
                s.mem_limit,
                s.memmap,
                s.memmap_count,
                s.memmap_overflow
            ),
            (
                o.nokaslr,
                o.mem_limit,
                o.memmap,
                o.memmap_count,
                o.memmap_overflow
            ),
            "stripping changed the options"
        );
    }
}

fn check_options(o: &Options) {
    assert!(o.memmap_count <= MAX_MEMMAP);
    for (i, e) in o.memmap.iter().enumerate() {
        assert_eq!(e.is_some(), i < o.memmap_count);
    }
    assert!(!o.memmap_overflow || o.memmap_count == MAX_MEMMAP);
    let avoided = o.memmaps().filter(|e| e.kind == MemmapKind::Avoid).count();
    assert_eq!(
        o.memmap_avoid().count(),
        avoided,
        "an avoided memmap= range overflows"
    );
    let limits = o
        .memmaps()
        .filter(|e| e.kind == MemmapKind::Limit)
        .map(|e| e.size);
    assert_eq!(o.memory_limit(), limits.chain(o.mem_limit).min());
    assert_ne!(o.mem_limit, Some(0));
}
