//! Stack high-water marks: the entry code paints the shim's stack with [`PAINT`], and
//! before the handoff the shim reads how deep it ever went and whether it ran off the
//! bottom (into whatever lies below: a silent corruption otherwise).

/// The paint: "TNIAPKTS" in memory, unlikely as data or as an address.
pub const PAINT: u64 = 0x5354_4b50_4149_4e54;

/// Bytes of a stack of `words` 8-byte words ever written, given a reader of word `i`
/// counted from the bottom. `words * 8` means the bottom word was overwritten: overflow.
pub fn used(words: usize, mut word: impl FnMut(usize) -> u64) -> usize {
    // Eight words a step while all eight keep the paint, then word by word: the untouched
    // part of a 256 KiB stack is some 24,000 words.
    let mut untouched: usize = 0;
    while let Some(next) = untouched.checked_add(8).filter(|&n| n <= words) {
        // Written out: at opt-level s a loop over the eight is not unrolled.
        let mut changed = |k: usize| word(untouched.wrapping_add(k)) ^ PAINT;
        let any = changed(0) | changed(1) | changed(2) | changed(3);
        if any | changed(4) | changed(5) | changed(6) | changed(7) != 0 {
            break;
        }
        untouched = next;
    }
    while untouched < words && word(untouched) == PAINT {
        untouched = untouched.saturating_add(1);
    }
    // A depth to print; saturated, it still reads as overflow.
    words.saturating_sub(untouched).saturating_mul(8)
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

    #[test]
    fn every_depth_of_an_odd_sized_stack() {
        for words in 0..40 {
            for first in 0..=words {
                let stack: Vec<u64> = (0..words)
                    .map(|i| if i < first { PAINT } else { 7 })
                    .collect();
                assert_eq!(
                    used(words, |i| stack[i]),
                    (words - first) * 8,
                    "{words} {first}"
                );
            }
        }
    }
}
