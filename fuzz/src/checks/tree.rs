//! `fdt`: any bytes as a device tree. Reading never panics; a tree the shim can read
//! is rebuilt with edits derived from the input (what the shim does before entering
//! Linux), and the copy must hold exactly the edits and everything else as it was,
//! as our reader, an independent reading (`dtspec`) and the `fdt` crate see it.
//! `wipe_seeds` changes only the bytes of the seed values.

use shim_common::cmdline;
use shim_common::digest;
use shim_common::fdt::edit::{self, Edit};
use shim_common::fdt::{self, Fdt, Machine};

use super::dtspec::{self, Flat};

pub fn run(data: &[u8]) {
    let Ok(tree) = Fdt::new(data) else { return };
    // The console and the PSCI conduit are read from any tree that walks.
    let _ = fdt::stdout(&tree);
    let _ = fdt::psci(&tree);
    let Ok(m) = Machine::read(&tree) else { return };
    check_machine(&tree, &m);
    check_wipe(data, &m);
    check_rebuild(data, &tree, &m);
}

/// What the reader returned agrees with the bytes it came from.
fn check_machine(tree: &Fdt<'_>, m: &Machine<'_>) {
    let blob = tree.bytes();
    assert!(!m.ram.is_empty(), "Machine::read succeeded with no RAM");
    if let Some((seed, at)) = m.kaslr_seed {
        let bytes = blob
            .get(at..at + 8)
            .expect("kaslr-seed offset outside the blob");
        assert_eq!(u64::from_be_bytes(bytes.try_into().unwrap()), seed);
    }
    if let Some((seed, at)) = m.rng_seed {
        assert_eq!(blob.get(at..at + seed.len()), Some(seed), "rng-seed offset");
    }
    for r in m.no_map.iter() {
        let covered = m.reserved.iter().any(|(x, _)| x.contains_range(&r))
            || m.reserved.iter().filter(|(x, _)| x.overlaps(&r)).count() > 1;
        assert!(covered, "no-map {r} is not reserved");
    }
    if let Some(initrd) = m.initrd {
        assert!(initrd.start <= initrd.end);
    }
    // /chosen as libfdt reads it (Linux, U-Boot): the first copy of each property.
    let Some(flat) = dtspec::read(blob) else {
        return;
    };
    let Some(&chosen) = flat.chosen.first() else {
        assert_eq!((m.bootargs, m.initrd), (&b""[..], None), "no /chosen");
        return;
    };
    let first = |name: &'static str| flat.values(chosen, name).next();
    let bootargs = first("bootargs").map_or(&[][..], |v| v.split(|&b| b == 0).next().unwrap());
    assert_eq!(m.bootargs, bootargs, "bootargs other than the first");
    let number = |v: &[u8]| match v.len() {
        4 => u64::from(u32::from_be_bytes(v.try_into().unwrap())),
        8 => u64::from_be_bytes(v.try_into().unwrap()),
        _ => panic!("Machine::read took a malformed initrd property"),
    };
    let start = first("linux,initrd-start").map(number);
    let end = first("linux,initrd-end").map(number);
    assert_eq!(
        m.initrd.map(|r| (r.start, r.end)),
        start.zip(end),
        "initrd other than the first"
    );
}

/// `wipe_seeds` zeroes every seed value `Machine::seeds` names (each `/chosen`
/// kaslr-seed and rng-seed, repeated copies and wrong lengths too) and nothing else.
fn check_wipe(data: &[u8], m: &Machine<'_>) {
    let seeds: Vec<(usize, usize)> = m.seeds().map(|(v, at)| (at, v.len())).collect();
    for &(at, len) in &seeds {
        assert!(at + len <= data.len(), "a seed at {at:#x} past the blob");
    }
    if let Some((_, at)) = m.kaslr_seed {
        assert!(seeds.contains(&(at, 8)), "kaslr-seed not among the seeds");
    }
    if let Some((v, at)) = m.rng_seed {
        assert!(
            seeds.contains(&(at, v.len())),
            "rng-seed not among the seeds"
        );
    }
    let mut wiped = data.to_vec();
    fdt::wipe_seeds(&mut wiped, seeds.iter().copied());
    let inside = |i: usize| seeds.iter().any(|&(at, n)| (at..at + n).contains(&i));
    for (i, (a, b)) in data.iter().zip(&wiped).enumerate() {
        assert!(
            a == b || inside(i),
            "wipe_seeds changed byte {i:#x} outside the seeds"
        );
        assert!(
            !inside(i) || *b == 0,
            "wipe_seeds left byte {i:#x} of a seed"
        );
    }
    let tree = Fdt::new(&wiped).expect("a wiped tree no longer walks");
    let again = Machine::read(&tree).expect("a wiped tree no longer reads");
    assert_eq!(again.kaslr_seed.map(|(v, _)| v), m.kaslr_seed.map(|_| 0));
    assert!(
        again.seeds().all(|(v, _)| v.iter().all(|&b| b == 0)),
        "a seed survived"
    );

    // Every seed property of every top-level chosen node, as the independent reading
    // sees them: the first node is /chosen, seeds in later ones are wiped too.
    if let Some(flat) = dtspec::read(data) {
        let all = flat
            .props
            .iter()
            .filter(|(i, n, _)| flat.chosen.contains(i) && (n == "kaslr-seed" || n == "rng-seed"))
            .count();
        assert_eq!(seeds.len(), all, "seed properties missed by Machine::seeds");
    }
}

/// What one rebuild does to `/chosen`, derived from the input.
struct Plan {
    kaslr: Option<[u8; 8]>,
    rng: Option<Vec<u8>>,
    bootargs: Option<Vec<u8>>,
    /// Properties removed from `/chosen`.
    removed: &'static [&'static str],
}

impl Plan {
    fn new(data: &[u8], m: &Machine<'_>) -> Plan {
        let hash = digest::sha256(digest::portable, data);
        let sel = hash[31];
        let kaslr = (sel & 1 != 0).then(|| hash[..8].try_into().unwrap());
        // 0..=64 bytes, as the shim writes 64 and firmware 32 or 64.
        let rng_len = usize::from(hash[30]) % 65;
        let rng = (sel & 2 != 0).then(|| hash.iter().cycle().take(rng_len).copied().collect());
        let bootargs = (sel & 4 != 0).then(|| {
            // What the shim hands on: its own options stripped, NUL-terminated.
            let mut out = vec![0; m.bootargs.len() + 1];
            let n = cmdline::without_shim_options(m.bootargs, &mut out).unwrap();
            out.truncate(n + 1);
            out[n] = 0;
            out
        });
        let removed: &'static [&'static str] = match (sel >> 3) % 4 {
            0 => &["stdout-path"],
            1 => &["linux,initrd-start", "linux,initrd-end"],
            // Under nokaslr the shim removes the seed rather than replacing it.
            2 if kaslr.is_none() => &["kaslr-seed"],
            _ => &[],
        };
        Plan {
            kaslr,
            rng,
            bootargs,
            removed,
        }
    }

    fn edits(&self) -> Vec<Edit<'_>> {
        let mut edits = Vec::new();
        if let Some(k) = &self.kaslr {
            edits.push(Edit::Set("kaslr-seed", k));
        }
        if let Some(r) = &self.rng {
            edits.push(Edit::Set("rng-seed", r));
        }
        if let Some(b) = &self.bootargs {
            edits.push(Edit::Set("bootargs", b));
        }
        edits.extend(self.removed.iter().map(|&name| Edit::Remove(name)));
        edits
    }

    /// The new value of `/chosen/<name>`: `Some(None)` if removed, `None` if untouched.
    fn edited(&self, name: &str) -> Option<Option<&[u8]>> {
        match name {
            "kaslr-seed" if self.kaslr.is_some() => Some(self.kaslr.as_ref().map(|k| &k[..])),
            "rng-seed" if self.rng.is_some() => Some(self.rng.as_deref()),
            "bootargs" if self.bootargs.is_some() => Some(self.bootargs.as_deref()),
            n if self.removed.contains(&n) => Some(None),
            _ => None,
        }
    }
}

fn check_rebuild(data: &[u8], tree: &Fdt<'_>, m: &Machine<'_>) {
    let plan = Plan::new(data, m);
    let edits = plan.edits();
    let bound = edit::rebuilt_size(tree, &edits);
    let mut out = vec![0xa5; bound + 64];
    let n = match edit::rebuild(tree, &edits, &mut out[..bound]) {
        Ok(n) => n,
        Err(e) => panic!("rebuild into rebuilt_size() = {bound} bytes failed: {e}"),
    };
    assert!(n <= bound);
    assert!(
        out[bound..].iter().all(|&b| b == 0xa5),
        "rebuild wrote past its buffer"
    );
    let out = &out[..n];
    // Deterministic, and a buffer one byte short is an error, not a panic.
    let mut again = vec![0; n];
    assert_eq!(edit::rebuild(tree, &edits, &mut again), Ok(n));
    assert_eq!(again, out, "two rebuilds differ");
    if n > 0 {
        assert!(edit::rebuild(tree, &edits, &mut again[..n - 1]).is_err());
    }

    // Our reader: the edited values, and RAM, reservations and the initrd as before.
    let new_tree = Fdt::new(out).expect("our reader refuses the rebuilt tree");
    let new = Machine::read(&new_tree).expect("the rebuilt tree has no machine");
    assert_eq!(new.ram, m.ram, "RAM changed");
    assert!(
        new.reserved.iter().eq(m.reserved.iter()),
        "reservations changed"
    );
    assert_eq!(new.no_map, m.no_map, "no-map memory changed");
    let initrd_removed = plan.removed.contains(&"linux,initrd-start");
    assert_eq!(new.initrd, if initrd_removed { None } else { m.initrd });
    match plan.edited("kaslr-seed") {
        Some(Some(k)) => {
            let want = u64::from_be_bytes(k.try_into().unwrap());
            assert_eq!(new.kaslr_seed.map(|(v, _)| v), Some(want), "kaslr-seed");
            assert_eq!(new.bad_kaslr_seed, None);
        }
        Some(None) => assert_eq!((new.kaslr_seed, new.bad_kaslr_seed), (None, None)),
        None => {
            assert_eq!(new.kaslr_seed.map(|(v, _)| v), m.kaslr_seed.map(|(v, _)| v));
            assert_eq!(new.bad_kaslr_seed, m.bad_kaslr_seed);
        }
    }
    match plan.edited("rng-seed") {
        Some(want) => assert_eq!(new.rng_seed.map(|(v, _)| v), want, "rng-seed"),
        None => assert_eq!(new.rng_seed.map(|(v, _)| v), m.rng_seed.map(|(v, _)| v)),
    }
    match plan.edited("bootargs") {
        Some(Some(b)) => assert_eq!(new.bootargs, &b[..b.len() - 1], "bootargs"),
        _ => assert_eq!(new.bootargs, m.bootargs, "bootargs"),
    }
    assert!(
        tree.memreserve().eq(new_tree.memreserve()),
        "memreserve changed"
    );

    // The independent reading: every node and property as before, but for the edits.
    let Some(before) = dtspec::read(tree.bytes()) else {
        return;
    };
    let after = dtspec::read(out).expect("the rebuilt tree is not a DTSpec tree");
    assert!(!after.nops, "the rebuilt tree keeps NOPs");
    assert_eq!(after.memreserve, before.memreserve);
    assert_eq!(after.boot_cpuid, before.boot_cpuid);
    assert_eq!(after.nodes, expected_nodes(&before), "nodes changed");
    let mut want = expected_props(&before, &plan);
    let mut got = after.props.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want, "properties changed");
    if before.props_first {
        assert!(
            after.props_first,
            "the rebuild put a property after a subnode"
        );
        if before.root_unnamed {
            check_fdt_crate(out, &after, &plan);
        }
    }
}

/// The node list after a rebuild: as before, with `/chosen` added last if absent.
fn expected_nodes(before: &Flat) -> Vec<String> {
    let mut nodes = before.nodes.clone();
    if before.chosen.is_empty() {
        nodes.push("/chosen".into());
    }
    nodes
}

/// The index of `/chosen` after a rebuild: the first chosen node, or the one added.
fn chosen_after(before: &Flat) -> usize {
    before.chosen.first().copied().unwrap_or(before.nodes.len())
}

/// The properties after a rebuild: every `/chosen` copy of an edited property gone,
/// one copy of each `Set` value in; later chosen nodes untouched.
fn expected_props(before: &Flat, plan: &Plan) -> Vec<(usize, String, Vec<u8>)> {
    let chosen = chosen_after(before);
    let mut props: Vec<_> = before
        .props
        .iter()
        .filter(|(node, name, _)| *node != chosen || plan.edited(name).is_none())
        .cloned()
        .collect();
    for name in ["kaslr-seed", "rng-seed", "bootargs"] {
        if let Some(Some(v)) = plan.edited(name) {
            props.push((chosen, name.into(), v.to_vec()));
        }
    }
    props
}

/// The `fdt` crate (a libfdt-like reader: first match wins, properties before
/// subnodes) sees the edits in `/chosen` and the same nodes.
fn check_fdt_crate(out: &[u8], after: &Flat, plan: &Plan) {
    let oracle = ::fdt::Fdt::new(out).expect("the fdt crate refuses the rebuilt tree");
    assert_eq!(oracle.all_nodes().count(), after.nodes.len());
    let chosen = oracle
        .find_node("/chosen")
        .expect("no /chosen after the rebuild");
    let index = *after
        .chosen
        .first()
        .expect("no chosen node after the rebuild");
    let path = &after.nodes[index];
    assert_eq!(
        path.trim_start_matches('/'),
        chosen.name,
        "which node is /chosen"
    );
    for name in ["kaslr-seed", "rng-seed", "bootargs", "stdout-path"] {
        let found = chosen.property(name).map(|p| p.value);
        match plan.edited(name) {
            Some(want) => assert_eq!(found, want, "/chosen/{name} as the fdt crate reads it"),
            None => {
                let first = after.values(index, name).next();
                assert_eq!(found, first, "/chosen/{name} as the fdt crate reads it");
            }
        }
    }
}
