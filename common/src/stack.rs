//! Stack high-water marks: the entry code paints the shim's stack with [`PAINT`], and
//! before the handoff the shim reads how deep it ever went and whether it ran off the
//! bottom (into whatever lies below: a silent corruption otherwise).

/// The paint: "TNIAPKTS" in memory, unlikely as data or as an address.
pub const PAINT: u64 = 0x5354_4b50_4149_4e54;

/// Bytes of a stack of `words` 8-byte words ever written, given a reader of word `i`
/// counted from the bottom. `words * 8` means the bottom word was overwritten: overflow.
pub fn used(words: usize, mut word: impl FnMut(usize) -> u64) -> usize {
    let touched = (0..words).skip_while(|&i| word(i) == PAINT).count();
    // A depth to print; saturated, it still reads as overflow.
    touched.saturating_mul(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_the_first_overwritten_word() {
        let mut stack = [PAINT; 16];
        assert_eq!(used(16, |i| stack[i]), 0);
        stack[12] = 0;
        assert_eq!(used(16, |i| stack[i]), 32);
        stack[0] = 1;
        assert_eq!(used(16, |i| stack[i]), 128);
    }
}
