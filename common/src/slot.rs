//! Physical slots: every aligned address where the image fits inside free memory,
//! counted over all free ranges with no cap (Linux's x86 KASLR stops at 100 areas),
//! and a uniform choice among them.

use core::fmt;

use crate::entropy::Rng;
use crate::memmap::{Range, RangeSet};

/// What to place.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    /// Bytes the image needs (non-zero).
    pub size: u64,
    /// Required alignment of the slot start: a power of two.
    pub align: u64,
    /// Lowest allowed slot start.
    pub min_addr: u64,
    /// Exclusive upper bound on the slot end; `u64::MAX` for none.
    pub max_end: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotError {
    /// No aligned position fits in free memory.
    NoSlot,
    /// The alignment is not a power of two.
    BadAlign { align: u64 },
    /// The image size is zero.
    ZeroSize,
    /// The slot count does not fit in 64 bits (cannot happen for disjoint ranges).
    Overflow,
}

impl fmt::Display for SlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotError::NoSlot => f.write_str("no free slot is large enough for the image"),
            SlotError::BadAlign { align } => {
                write!(f, "slot alignment 0x{align:x} is not a power of two")
            }
            SlotError::ZeroSize => f.write_str("image size is zero"),
            SlotError::Overflow => f.write_str("slot count overflows 64 bits"),
        }
    }
}

/// A chosen slot and how many slots it was drawn from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    pub addr: u64,
    pub slots: u64,
}

impl Request {
    fn check(&self) -> Result<(), SlotError> {
        if !self.align.is_power_of_two() {
            return Err(SlotError::BadAlign { align: self.align });
        }
        if self.size == 0 {
            return Err(SlotError::ZeroSize);
        }
        Ok(())
    }

    /// The slots inside one free range, as `(first address, count)`, if any.
    /// `first = align_up(max(start, min_addr))`, `last = align_down(min(end, max_end) - size)`.
    /// The request must have passed [`Request::check`].
    fn slots_in(&self, r: Range) -> Option<(u64, u64)> {
        let mask = self.align.checked_sub(1)?;
        let first = r.start.max(self.min_addr).checked_add(mask)? & !mask;
        let last = r.end.min(self.max_end).checked_sub(self.size)? & !mask;
        let n = last
            .checked_sub(first)?
            .checked_div(self.align)?
            .checked_add(1)?;
        Some((first, n))
    }
}

/// Number of slots for `req` in `free`.
pub fn count<const N: usize>(free: &RangeSet<N>, req: &Request) -> Result<u64, SlotError> {
    req.check()?;
    free.iter()
        .filter_map(|r| req.slots_in(r))
        .try_fold(0u64, |acc, (_, n)| {
            acc.checked_add(n).ok_or(SlotError::Overflow)
        })
}

/// The `n`th slot (from 0) in address order, or `None` if there are not that many
/// (or the request is invalid).
pub fn nth<const N: usize>(free: &RangeSet<N>, req: &Request, n: u64) -> Option<u64> {
    req.check().ok()?;
    let mut left = n;
    for (first, k) in free.iter().filter_map(|r| req.slots_in(r)) {
        match left.checked_sub(k) {
            Some(rest) => left = rest,
            None => return first.checked_add(left.checked_mul(req.align)?),
        }
    }
    None
}

/// The lowest slot.
pub fn lowest<const N: usize>(free: &RangeSet<N>, req: &Request) -> Option<u64> {
    nth(free, req, 0)
}

/// True when `addr` is a slot: aligned, within the request's bounds, and
/// `[addr, addr + size)` lies inside one free range.
pub fn is_slot<const N: usize>(free: &RangeSet<N>, req: &Request, addr: u64) -> bool {
    if req.check().is_err() || !addr.is_multiple_of(req.align) || addr < req.min_addr {
        return false;
    }
    match Range::from_base_size(addr, req.size) {
        Ok(image) => image.end <= req.max_end && free.contains_range(&image),
        Err(_) => false,
    }
}

/// Picks one slot uniformly at random.
pub fn choose<const N: usize>(
    free: &RangeSet<N>,
    req: &Request,
    rng: &mut Rng,
) -> Result<Choice, SlotError> {
    let slots = count(free, req)?;
    if slots == 0 {
        return Err(SlotError::NoSlot);
    }
    let addr = nth(free, req, rng.below(slots)).ok_or(SlotError::NoSlot)?;
    Ok(Choice { addr, slots })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::Rng;
    use crate::memmap::{free_memory, AvoidList};
    use proptest::prelude::*;

    fn set(ranges: &[(u64, u64)]) -> RangeSet<16> {
        let mut s = RangeSet::new();
        for &(start, end) in ranges {
            s.insert(Range { start, end }).unwrap();
        }
        s
    }

    fn req(size: u64, align: u64) -> Request {
        Request {
            size,
            align,
            min_addr: 0,
            max_end: u64::MAX,
        }
    }

    #[test]
    fn counts_simple() {
        let free = set(&[(0x1000, 0x5000), (0x8000, 0x9000)]);
        let r = req(0x1000, 0x1000);
        assert_eq!(count(&free, &r), Ok(5));
        let all: Vec<u64> = (0..6).map(|i| nth(&free, &r, i).unwrap_or(0)).collect();
        assert_eq!(all, [0x1000, 0x2000, 0x3000, 0x4000, 0x8000, 0]);
        assert_eq!(lowest(&free, &r), Some(0x1000));
        assert!(is_slot(&free, &r, 0x4000) && !is_slot(&free, &r, 0x4800));
        assert!(!is_slot(&free, &r, 0x5000));
        let bounded = Request {
            min_addr: 0x1800,
            max_end: 0x8fff,
            ..r
        };
        assert_eq!(count(&free, &bounded), Ok(3));
        assert_eq!(lowest(&free, &bounded), Some(0x2000));
        assert!(!is_slot(&free, &bounded, 0x1000) && !is_slot(&free, &bounded, 0x8000));
    }

    #[test]
    fn bad_requests() {
        let free = set(&[(0, 0x1000)]);
        assert_eq!(
            count(&free, &req(1, 3)),
            Err(SlotError::BadAlign { align: 3 })
        );
        assert_eq!(
            count(&free, &req(1, 0)),
            Err(SlotError::BadAlign { align: 0 })
        );
        assert_eq!(count(&free, &req(0, 1)), Err(SlotError::ZeroSize));
        assert_eq!(nth(&free, &req(1, 3), 0), None);
        let mut rng = Rng::from_key([0; 32]);
        assert_eq!(
            choose(&free, &req(0x2000, 1), &mut rng),
            Err(SlotError::NoSlot)
        );
    }

    #[test]
    fn top_of_address_space() {
        let free = set(&[(u64::MAX - 0x3000, u64::MAX)]);
        let r = req(0x1000, 0x1000);
        assert_eq!(count(&free, &r), Ok(2));
        assert_eq!(nth(&free, &r, 1), Some(u64::MAX - 0x1fff));
        assert_eq!(
            count(&free, &req(1, 1 << 63)),
            Ok(0),
            "align_up overflows: no slot"
        );
        let whole = set(&[(0, u64::MAX)]);
        assert_eq!(count(&whole, &req(1, 1 << 63)), Ok(2));
        assert_eq!(count(&whole, &req(1, 1)), Ok(u64::MAX));
        assert_eq!(nth(&whole, &req(1, 1), u64::MAX - 1), Some(u64::MAX - 1));
        assert!(is_slot(&whole, &req(1, 1), u64::MAX - 1));
        assert!(!is_slot(&whole, &req(2, 1), u64::MAX - 1));
    }

    #[test]
    fn uniform_choice() {
        let free = set(&[(0, 3), (10, 12)]);
        let r = req(1, 1);
        let mut rng = Rng::from_key([9; 32]);
        let mut hits = std::collections::BTreeMap::new();
        for _ in 0..5000 {
            let c = choose(&free, &r, &mut rng).unwrap();
            assert_eq!(c.slots, 5);
            *hits.entry(c.addr).or_insert(0u32) += 1;
        }
        assert_eq!(hits.keys().copied().collect::<Vec<_>>(), [0, 1, 2, 10, 11]);
        assert!(hits.values().all(|&n| (850..1150).contains(&n)), "{hits:?}");
    }

    type Toy = (Vec<(u64, u64)>, Vec<(u64, u64)>, Request);

    /// RAM and avoid lists on a 512-byte toy address space, plus a request.
    fn toy() -> impl Strategy<Value = Toy> {
        let range = (0u64..512, 0u64..160).prop_map(|(s, l)| (s, (s + l).min(512)));
        (
            proptest::collection::vec(range.clone(), 0..6),
            proptest::collection::vec(range, 0..6),
            1u64..80,
            0u32..6,
            0u64..100,
            300u64..600,
        )
            .prop_map(|(ram, avoid, size, shift, min_addr, max_end)| {
                (
                    ram,
                    avoid,
                    Request {
                        size,
                        align: 1 << shift,
                        min_addr,
                        max_end,
                    },
                )
            })
    }

    /// Every slot, found byte by byte from the raw RAM and avoid lists.
    fn brute(ram: &[(u64, u64)], avoid: &[(u64, u64)], r: &Request) -> Vec<u64> {
        let free_byte = |b: u64| {
            ram.iter().any(|&(s, e)| s <= b && b < e)
                && !avoid.iter().any(|&(s, e)| s <= b && b < e)
        };
        (0..512u64)
            .filter(|a| a % r.align == 0 && *a >= r.min_addr && a + r.size <= r.max_end)
            .filter(|a| (*a..a + r.size).all(free_byte))
            .collect()
    }

    fn build(ram: &[(u64, u64)], avoid: &[(u64, u64)]) -> RangeSet<16> {
        let ram = set(ram);
        let mut list = AvoidList::<8>::new();
        for &(start, end) in avoid {
            list.push(Range { start, end }, "test").unwrap();
        }
        free_memory(&ram, &list).unwrap()
    }

    proptest! {
        #[test]
        fn matches_brute_force((ram, avoid, r) in toy(), key in any::<[u8; 32]>()) {
            let free = build(&ram, &avoid);
            let expected = brute(&ram, &avoid, &r);
            prop_assert_eq!(count(&free, &r).unwrap(), expected.len() as u64);
            let all: Vec<u64> = (0..expected.len() as u64).filter_map(|i| nth(&free, &r, i)).collect();
            prop_assert_eq!(&all, &expected);
            prop_assert_eq!(nth(&free, &r, expected.len() as u64), None);
            for a in 0..512 {
                prop_assert_eq!(is_slot(&free, &r, a), expected.contains(&a));
            }
            let mut rng = Rng::from_key(key);
            match choose(&free, &r, &mut rng) {
                Ok(c) => {
                    prop_assert!(expected.contains(&c.addr));
                    prop_assert_eq!(c.addr % r.align, 0);
                    let image = Range { start: c.addr, end: c.addr + r.size };
                    prop_assert!(set(&ram).contains_range(&image));
                    let clear = avoid.iter().all(|&(s, e)| !image.overlaps(&Range { start: s, end: e }));
                    prop_assert!(clear, "slot overlaps an avoided range");
                }
                Err(e) => {
                    prop_assert_eq!(e, SlotError::NoSlot);
                    prop_assert!(expected.is_empty());
                }
            }
        }
    }
}
