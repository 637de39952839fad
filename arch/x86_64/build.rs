//! Links the shim's protected-mode part as a position-independent image at 0 with our
//! linker script; the entry code applies the R_X86_64_RELATIVE relocations before any
//! Rust runs. The real-mode setup stays in a non-allocated section for xtask to dump.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=src/entry.S");
    println!("cargo:rerun-if-changed=src/setup.S");
    println!("cargo:rerun-if-changed=src/vectors.S");
    println!("cargo:rerun-if-changed=src/handoff.S");
    for arg in [
        &format!("-T{dir}/linker.ld"),
        "-pie",
        "--no-dynamic-linker",
        "-znorelro",
        // libcore is prebuilt without PIC: its tables carry absolute addresses in
        // read-only sections. They become RELATIVE relocations, which entry.S applies
        // before anything is write-protected.
        "-znotext",
        "-zmax-page-size=4096",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
