//! Links the image at 0 with `linker.ld`: the code is position-independent (PC-relative
//! only) and has no relocations, as a raw arm64 Image entered with the MMU off must.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=src/scan.S");
    println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
}
