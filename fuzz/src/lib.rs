//! The invariants every fuzz target asserts, in one place so that `cargo test` in
//! `common/` replays the committed crash inputs through exactly the same checks
//! (`common/tests/fuzz.rs` includes `checks/` by path). A violated invariant panics,
//! which libFuzzer reports as a crash.

pub mod checks;

pub use checks::*;
