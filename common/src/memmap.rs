//! Physical address ranges and their normalisation: the RAM map, the labelled avoid
//! list, and the free memory left once every avoided range is subtracted from RAM.
//! Fixed capacity and no allocation: running out of room is an error, never a silent drop.

use core::fmt;

/// Why a range operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemError {
    /// `base + size` does not fit in 64 bits (a range may end at most at `u64::MAX`).
    Overflow { base: u64, size: u64 },
    /// A [`RangeSet`] would need more entries than its capacity.
    TooManyRanges,
    /// An [`AvoidList`] is full.
    TooManyAvoid,
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemError::Overflow { base, size } => {
                write!(f, "memory range 0x{base:x} + 0x{size:x} overflows 64 bits")
            }
            MemError::TooManyRanges => f.write_str("too many memory ranges for the fixed-size map"),
            MemError::TooManyAvoid => f.write_str("too many entries in the avoid list"),
        }
    }
}

/// A half-open physical range `[start, end)`. A range with `end <= start` is empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    /// The empty range at 0.
    pub const EMPTY: Range = Range { start: 0, end: 0 };

    /// `[base, base + size)`; `size == 0` gives an empty range.
    pub fn from_base_size(base: u64, size: u64) -> Result<Range, MemError> {
        let end = base
            .checked_add(size)
            .ok_or(MemError::Overflow { base, size })?;
        Ok(Range { start: base, end })
    }

    /// Number of bytes in the range (0 when empty).
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// True when the two ranges share at least one byte.
    pub fn overlaps(&self, other: &Range) -> bool {
        !self.is_empty() && !other.is_empty() && self.start < other.end && other.start < self.end
    }

    /// True when `other` is non-empty and lies entirely inside `self`.
    pub fn contains_range(&self, other: &Range) -> bool {
        !other.is_empty() && self.start <= other.start && other.end <= self.end
    }

    /// True when the ranges overlap or share an endpoint (so their union is one range).
    fn touches(&self, other: &Range) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[0x{:x}, 0x{:x})", self.start, self.end)
    }
}

/// A set of bytes kept as at most `N` sorted, disjoint, non-adjacent, non-empty ranges.
#[derive(Clone, Copy, Debug)]
pub struct RangeSet<const N: usize> {
    ranges: [Range; N],
    len: usize,
}

/// Default capacity of a memory map.
pub const MAX_RANGES: usize = 128;
/// The RAM map and the free map use this size.
pub type MemoryMap = RangeSet<MAX_RANGES>;

impl<const N: usize> Default for RangeSet<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> PartialEq for RangeSet<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<const N: usize> Eq for RangeSet<N> {}

impl<const N: usize> RangeSet<N> {
    pub const fn new() -> Self {
        RangeSet {
            ranges: [Range::EMPTY; N],
            len: 0,
        }
    }

    /// The ranges, lowest first.
    pub fn as_slice(&self) -> &[Range] {
        self.ranges.get(..self.len).unwrap_or(&[])
    }

    pub fn iter(&self) -> impl Iterator<Item = Range> + '_ {
        self.as_slice().iter().copied()
    }

    /// Number of (merged) ranges.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The lowest range.
    pub fn first(&self) -> Option<Range> {
        self.as_slice().first().copied()
    }

    /// The highest range.
    pub fn last(&self) -> Option<Range> {
        self.as_slice().last().copied()
    }

    /// Total bytes in the set. Cannot overflow: the ranges are disjoint within `u64`.
    pub fn total(&self) -> u64 {
        self.iter().fold(0u64, |acc, r| acc.saturating_add(r.len()))
    }

    /// True when `r` (non-empty) lies entirely inside one range of the set.
    pub fn contains_range(&self, r: &Range) -> bool {
        self.iter().any(|x| x.contains_range(r))
    }

    /// Appends a range known to sort after every current entry.
    fn push(&mut self, r: Range) -> Result<(), MemError> {
        let slot = self
            .ranges
            .get_mut(self.len)
            .ok_or(MemError::TooManyRanges)?;
        *slot = r;
        self.len = self.len.checked_add(1).ok_or(MemError::TooManyRanges)?;
        Ok(())
    }

    /// Adds `r`, merging it with every range it overlaps or touches. Empty ranges are
    /// ignored; input may come in any order, overlapping or duplicated.
    pub fn insert(&mut self, r: Range) -> Result<(), MemError> {
        if r.is_empty() {
            return Ok(());
        }
        let mut out = Self::new();
        let mut pending = Some(r);
        for x in self.iter() {
            match pending {
                Some(p) if p.touches(&x) => {
                    pending = Some(Range {
                        start: p.start.min(x.start),
                        end: p.end.max(x.end),
                    });
                }
                Some(p) if p.end < x.start => {
                    out.push(p)?;
                    pending = None;
                    out.push(x)?;
                }
                _ => out.push(x)?,
            }
        }
        if let Some(p) = pending {
            out.push(p)?;
        }
        *self = out;
        Ok(())
    }

    /// Subtracts `r`. A range with `r` strictly inside it splits in two, which may
    /// exceed the capacity ([`MemError::TooManyRanges`]; the set is then unchanged).
    pub fn remove(&mut self, r: Range) -> Result<(), MemError> {
        if r.is_empty() {
            return Ok(());
        }
        let mut out = Self::new();
        for x in self.iter() {
            if !x.overlaps(&r) {
                out.push(x)?;
                continue;
            }
            let below = Range {
                start: x.start,
                end: r.start,
            };
            let above = Range {
                start: r.end,
                end: x.end,
            };
            for piece in [below, above] {
                if !piece.is_empty() {
                    out.push(piece)?;
                }
            }
        }
        *self = out;
        Ok(())
    }

    /// The smallest range, the lowest of equals.
    fn smallest(&self) -> Option<Range> {
        self.iter().min_by_key(|x| x.len())
    }

    /// As [`insert`](Self::insert), for sets where less is safe (RAM): a full set keeps
    /// its largest ranges, dropping the smallest (which may be `r`) until `r` fits.
    /// Returns the bytes dropped.
    pub fn insert_lossy(&mut self, r: Range) -> u64 {
        let mut lost = 0u64;
        while self.insert(r).is_err() {
            match self.smallest() {
                Some(s) if s.len() < r.len() => {
                    // A whole range goes: no split, so this cannot fail.
                    let _ = self.remove(s);
                    lost = lost.saturating_add(s.len());
                }
                _ => return lost.saturating_add(r.len()),
            }
        }
        lost
    }

    /// As [`remove`](Self::remove), for sets where less is safe (RAM): when splitting a
    /// range finds the set full, the smaller piece of the split goes too, or the
    /// smallest range if that is smaller still. Returns the bytes dropped besides `r`.
    pub fn remove_lossy(&mut self, r: Range) -> u64 {
        let mut lost = 0u64;
        while self.remove(r).is_err() {
            // Only a split adds a range: `r` lies strictly inside one.
            let Some(x) = self.iter().find(|x| x.start < r.start && r.end < x.end) else {
                break;
            };
            let below = Range {
                start: x.start,
                end: r.start,
            };
            let above = Range {
                start: r.end,
                end: x.end,
            };
            let (piece, widened) = match below.len() <= above.len() {
                true => (
                    below,
                    Range {
                        start: x.start,
                        end: r.end,
                    },
                ),
                false => (
                    above,
                    Range {
                        start: r.start,
                        end: x.end,
                    },
                ),
            };
            match self.smallest() {
                Some(s) if s.len() < piece.len() => {
                    let _ = self.remove(s);
                    lost = lost.saturating_add(s.len());
                }
                _ => {
                    // `r` and the piece reach an end of `x`: no split, cannot fail.
                    let _ = self.remove(widened);
                    return lost.saturating_add(piece.len());
                }
            }
        }
        lost
    }

    /// Removes every byte at or above `limit` (for `mem=`, the user's explicit limit).
    /// Returns how many bytes were removed.
    pub fn truncate_above(&mut self, limit: u64) -> u64 {
        let before = self.total();
        let mut out = Self::new();
        for x in self.iter() {
            let kept = Range {
                start: x.start,
                end: x.end.min(limit),
            };
            if !kept.is_empty() {
                // Never more entries than before, so this cannot fail.
                let _ = out.push(kept);
            }
        }
        *self = out;
        // What is kept is part of what was there.
        before.saturating_sub(self.total())
    }
}

/// How much of a range a set covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cover {
    All,
    Part,
    Nothing,
}

/// A set's cover of ranges asked in order of their start (each start at or above the
/// last one's): the page-table builders' pass over the address space, a constant
/// amount of work per block instead of a search of the whole set.
pub struct Sweep<'a> {
    /// The set's ranges that end above the last start asked about.
    ahead: &'a [Range],
}

impl<'a> Sweep<'a> {
    pub fn new<const N: usize>(set: &'a RangeSet<N>) -> Self {
        Sweep {
            ahead: set.as_slice(),
        }
    }

    /// How much of `r` (non-empty, starting at or above every earlier question's
    /// start) the set covers. The set's ranges are disjoint and never adjacent, so
    /// `r` is all covered only when one range holds it.
    pub fn cover(&mut self, r: Range) -> Cover {
        while let Some((first, rest)) = self.ahead.split_first() {
            if first.end > r.start {
                break;
            }
            self.ahead = rest;
        }
        match self.ahead.first() {
            Some(n) if n.start <= r.start && n.end >= r.end => Cover::All,
            Some(n) if n.start < r.end => Cover::Part,
            _ => Cover::Nothing,
        }
    }

    /// The set's ranges that overlap `r` (asked about last, with [`Sweep::cover`]).
    pub fn overlapping(&self, r: Range) -> impl Iterator<Item = Range> + 'a {
        self.ahead
            .iter()
            .take_while(move |n| n.start < r.end)
            .copied()
    }
}

/// Ranges the payload must not be placed over, each labelled for the error report,
/// kept in insertion order (they may overlap each other).
#[derive(Clone, Copy, Debug)]
pub struct AvoidList<const N: usize> {
    entries: [(Range, &'static str); N],
    len: usize,
}

/// Default capacity of the avoid list.
pub const MAX_AVOID: usize = 64;
pub type Avoid = AvoidList<MAX_AVOID>;

impl<const N: usize> Default for AvoidList<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> AvoidList<N> {
    pub const fn new() -> Self {
        AvoidList {
            entries: [(Range::EMPTY, ""); N],
            len: 0,
        }
    }

    /// Records `range` under `label` (e.g. "shim", "fdt", "initrd", "reserved-memory",
    /// "memreserve"). Empty ranges are ignored.
    pub fn push(&mut self, range: Range, label: &'static str) -> Result<(), MemError> {
        if range.is_empty() {
            return Ok(());
        }
        let slot = self
            .entries
            .get_mut(self.len)
            .ok_or(MemError::TooManyAvoid)?;
        *slot = (range, label);
        self.len = self.len.checked_add(1).ok_or(MemError::TooManyAvoid)?;
        Ok(())
    }

    pub fn iter(&self) -> impl Iterator<Item = (Range, &'static str)> + '_ {
        self.entries.get(..self.len).unwrap_or(&[]).iter().copied()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first recorded entry that overlaps `range`.
    pub fn overlapping(&self, range: Range) -> Option<(Range, &'static str)> {
        self.iter().find(|(r, _)| r.overlaps(&range))
    }
}

/// RAM minus every avoided range.
pub fn free_memory<const N: usize, const M: usize>(
    ram: &RangeSet<N>,
    avoid: &AvoidList<M>,
) -> Result<RangeSet<N>, MemError> {
    let mut free = *ram;
    for (r, _) in avoid.iter() {
        // Free memory may be less than what is free, never more: a map too fragmented
        // to split once more loses its smallest piece instead of the boot.
        free.remove_lossy(r);
    }
    Ok(free)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sweep_covers_like_the_set() {
        let mut set = MemoryMap::new();
        for (start, end) in [(0x1000, 0x3000), (0x5000, 0x9000), (0x20000, 0x40000)] {
            set.insert(Range { start, end }).unwrap();
        }
        let truth = |r: Range| {
            if set.contains_range(&r) {
                Cover::All
            } else if set.iter().any(|n| n.overlaps(&r)) {
                Cover::Part
            } else {
                Cover::Nothing
            }
        };
        // Every block size, and a coarse block followed by its fine ones (the page-table
        // builders' order), agree with the set's own answers.
        for size in [0x800u64, 0x1000, 0x2000, 0x4000, 0x10000] {
            let mut sweep = Sweep::new(&set);
            for start in (0..0x50000).step_by(size as usize) {
                let r = Range {
                    start,
                    end: start + size,
                };
                assert_eq!(sweep.cover(r), truth(r), "{r:?}");
                let inside: Vec<_> = sweep.overlapping(r).collect();
                let want: Vec<_> = set.iter().filter(|n| n.overlaps(&r)).collect();
                assert_eq!(inside, want, "{r:?}");
                if size == 0x4000 {
                    for fine in (start..start + size).step_by(0x800) {
                        let f = Range {
                            start: fine,
                            end: fine + 0x800,
                        };
                        assert_eq!(sweep.cover(f), truth(f), "{f:?}");
                    }
                }
            }
        }
        let nothing = MemoryMap::new();
        let mut empty = Sweep::new(&nothing);
        assert_eq!(empty.cover(Range { start: 0, end: 1 }), Cover::Nothing);
        // A range ending at the top of the address space.
        let mut top = MemoryMap::new();
        top.insert(Range {
            start: u64::MAX - 0xfff,
            end: u64::MAX,
        })
        .unwrap();
        let mut sweep = Sweep::new(&top);
        assert_eq!(
            sweep.cover(Range {
                start: 0,
                end: 0x1000
            }),
            Cover::Nothing
        );
        let last = Range {
            start: u64::MAX - 0xfff,
            end: u64::MAX,
        };
        assert_eq!(sweep.cover(last), Cover::All);
    }

    use super::*;
    use proptest::prelude::*;

    fn r(start: u64, end: u64) -> Range {
        Range { start, end }
    }

    #[test]
    fn range_basics() {
        assert_eq!(
            Range::from_base_size(0x4000_0000, 0x4000_0000),
            Ok(r(0x4000_0000, 0x8000_0000))
        );
        assert!(Range::from_base_size(1, 0).is_ok_and(|x| x.is_empty()));
        assert_eq!(
            Range::from_base_size(u64::MAX, 1),
            Err(MemError::Overflow {
                base: u64::MAX,
                size: 1
            })
        );
        assert_eq!(
            r(0x4000_0000, 0x8000_0000).to_string(),
            "[0x40000000, 0x80000000)"
        );
        assert!(r(0, 10).overlaps(&r(9, 11)));
        assert!(!r(0, 10).overlaps(&r(10, 11)));
        assert!(!r(0, 10).overlaps(&r(5, 5)));
        assert!(r(0, 10).contains_range(&r(0, 10)));
        assert!(!r(0, 10).contains_range(&r(5, 11)));
        assert_eq!(r(5, 3).len(), 0);
    }

    #[test]
    fn insert_normalises() {
        let mut s = RangeSet::<8>::new();
        for x in [
            r(30, 40),
            r(0, 10),
            r(10, 20),
            r(35, 50),
            r(0, 10),
            r(60, 60),
            r(100, 200),
        ] {
            s.insert(x).unwrap();
        }
        assert_eq!(s.as_slice(), &[r(0, 20), r(30, 50), r(100, 200)]);
        s.insert(r(15, 150)).unwrap();
        assert_eq!(s.as_slice(), &[r(0, 200)]);
        assert_eq!(s.total(), 200);
        assert_eq!(s.first(), Some(r(0, 200)));
    }

    #[test]
    fn remove_splits_and_hits_capacity() {
        let mut s = RangeSet::<2>::new();
        s.insert(r(0, 100)).unwrap();
        s.remove(r(10, 20)).unwrap();
        assert_eq!(s.as_slice(), &[r(0, 10), r(20, 100)]);
        assert_eq!(s.remove(r(50, 60)), Err(MemError::TooManyRanges));
        assert_eq!(s.as_slice(), &[r(0, 10), r(20, 100)], "unchanged on error");
        s.remove(r(0, 30)).unwrap();
        assert_eq!(s.as_slice(), &[r(30, 100)]);
        assert_eq!(s.truncate_above(64), 36);
        assert_eq!(s.as_slice(), &[r(30, 64)]);
        assert_eq!(s.truncate_above(0), 34);
        assert!(s.is_empty());
    }

    #[test]
    fn a_full_set_keeps_its_largest_ranges() {
        let mut s = RangeSet::<2>::new();
        s.insert(r(0, 100)).unwrap();
        s.insert(r(200, 210)).unwrap();
        // A third range: the smallest of the three (the new one here) is dropped.
        assert_eq!(s.insert_lossy(r(300, 305)), 5);
        assert_eq!(s.as_slice(), &[r(0, 100), r(200, 210)]);
        // A larger one evicts the smallest.
        assert_eq!(s.insert_lossy(r(300, 350)), 10);
        assert_eq!(s.as_slice(), &[r(0, 100), r(300, 350)]);
        // Merging needs no room.
        assert_eq!(s.insert_lossy(r(100, 120)), 0);
        assert_eq!(s.as_slice(), &[r(0, 120), r(300, 350)]);
        // A split with no room: the smaller piece (0-10) goes with the hole...
        assert_eq!(s.remove_lossy(r(10, 20)), 10);
        assert_eq!(s.as_slice(), &[r(20, 120), r(300, 350)]);
        // Here the piece (20-50) is smaller than any range: it goes.
        assert_eq!(s.remove_lossy(r(50, 60)), 30);
        assert_eq!(s.as_slice(), &[r(60, 120), r(300, 350)]);
        // Here the piece is the smaller piece of the split (110-120).
        assert_eq!(s.remove_lossy(r(100, 110)), 10);
        assert_eq!(s.as_slice(), &[r(60, 100), r(300, 350)]);
        // No split, no loss.
        assert_eq!(s.remove_lossy(r(0, 70)), 0);
        assert_eq!(s.as_slice(), &[r(70, 100), r(300, 350)]);
        // A range smaller than the piece (2000-2010 against 0-100) goes instead.
        let mut s = RangeSet::<2>::new();
        s.insert(r(0, 1000)).unwrap();
        s.insert(r(2000, 2010)).unwrap();
        assert_eq!(s.remove_lossy(r(100, 110)), 10);
        assert_eq!(s.as_slice(), &[r(0, 100), r(110, 1000)]);
    }

    #[test]
    fn insert_hits_capacity() {
        let mut s = RangeSet::<1>::new();
        s.insert(r(0, 1)).unwrap();
        assert_eq!(s.insert(r(5, 6)), Err(MemError::TooManyRanges));
        s.insert(r(1, 6)).unwrap();
        assert_eq!(s.as_slice(), &[r(0, 6)]);
    }

    #[test]
    fn avoid_and_free() {
        let mut ram = MemoryMap::new();
        ram.insert(r(0x1000, 0x9000)).unwrap();
        let mut avoid = AvoidList::<2>::new();
        avoid.push(r(0x2000, 0x3000), "fdt").unwrap();
        avoid.push(r(0, 0), "empty").unwrap();
        avoid.push(r(0x8000, 0xa000), "initrd").unwrap();
        assert_eq!(avoid.push(r(1, 2), "x"), Err(MemError::TooManyAvoid));
        assert_eq!(
            avoid.overlapping(r(0x8fff, 0x9000)),
            Some((r(0x8000, 0xa000), "initrd"))
        );
        assert_eq!(avoid.overlapping(r(0x3000, 0x8000)), None);
        let free = free_memory(&ram, &avoid).unwrap();
        assert_eq!(free.as_slice(), &[r(0x1000, 0x2000), r(0x3000, 0x8000)]);
    }

    fn small_range() -> impl Strategy<Value = Range> {
        (0u64..200, 0u64..40).prop_map(|(s, l)| r(s, s + l))
    }

    proptest! {
        #[test]
        fn set_matches_bitmap(ops in proptest::collection::vec((any::<bool>(), small_range()), 0..30)) {
            let mut s = RangeSet::<64>::new();
            let mut bits = [false; 256];
            for (add, x) in ops {
                if add { s.insert(x).unwrap() } else { s.remove(x).unwrap() }
                for b in x.start..x.end { bits[b as usize] = add; }
            }
            let v = s.as_slice();
            for w in v.windows(2) {
                prop_assert!(w[0].end < w[1].start, "sorted, disjoint, not adjacent");
            }
            for x in v { prop_assert!(!x.is_empty()); }
            for (b, &set) in bits.iter().enumerate() {
                let b = b as u64;
                prop_assert_eq!(set, v.iter().any(|x| x.start <= b && b < x.end));
            }
        }
    }
}
