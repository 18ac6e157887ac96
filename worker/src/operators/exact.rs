//! An exact sum of doubles: a two's-complement fixed-point number in units of 2^-1074,
//! the smallest subnormal double, so that every finite double is an integer number of
//! units and adding one is exact. Only the 64-bit limbs in use are held (a handful for
//! values of similar magnitude), so it is as small as the numbers summed allow.
//!
//! Why not a running double, or Shewchuk's partials: a running sum depends on the order
//! of additions, and partials can overflow in between even when the total would not.
//! This gives `round(exact total)` whatever the order or grouping — what Python computes
//! with `float(sum(map(Fraction, xs)))` — which is what lets the engine's specification
//! state sums exactly.

/// Units of 2^-1074 in 1.0: the bit position of the integers.
const UNIT_SHIFT_OF_ONE: u32 = 1074;
/// More limbs than any sum can need: 2098 bits of double range plus 128 of count and
/// integer headroom, in 64-bit limbs.
pub(crate) const LIMBS_MAX: usize = 40;

/// An exact sum; zero when empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ExactFloatSum {
    /// The index of `limbs[0]`: the number is `sum(limbs[i] << 64 * (low + i))` units.
    low: u32,
    /// Two's complement, least significant first; the last limb is always all zeros or
    /// all ones (the sign, extended), and no other limb is needed to express the number.
    limbs: Vec<u64>,
}

impl ExactFloatSum {
    /// Adds a finite double exactly.
    pub(crate) fn add_f64(&mut self, value: f64) {
        debug_assert!(value.is_finite());
        let bits = value.to_bits();
        let exponent = ((bits >> 52) & 0x7ff) as u32;
        let fraction = bits & ((1 << 52) - 1);
        let (mantissa, shift) = match exponent {
            0 => (fraction, 0),
            _ => (fraction | (1 << 52), exponent - 1),
        };
        if mantissa != 0 {
            self.add_shifted(u128::from(mantissa), shift, value < 0.0);
        }
    }

    /// Adds an integer exactly.
    pub(crate) fn add_int(&mut self, value: i128) {
        if value != 0 {
            self.add_shifted(value.unsigned_abs(), UNIT_SHIFT_OF_ONE, value < 0);
        }
    }

    /// Adds everything `other` holds.
    pub(crate) fn merge(&mut self, other: &ExactFloatSum) {
        let Some(other_top) = other.top() else {
            return;
        };
        self.ensure(other.low, other_top + 1);
        let start = (other.low - self.low) as usize;
        let mut carry = false;
        for i in start..self.limbs.len() {
            let addend = other.limb_at(self.low + i as u32);
            let (sum, overflow_a) = self.limbs[i].overflowing_add(addend);
            let (sum, overflow_b) = sum.overflowing_add(u64::from(carry));
            self.limbs[i] = sum;
            carry = overflow_a || overflow_b;
        }
        self.normalize();
    }

    /// The exact sum plus `int` (in whole units), rounded to the nearest double, ties to
    /// even; infinite when that is beyond the double range.
    pub(crate) fn round_with(&self, int: i128) -> f64 {
        let mut total = self.clone();
        total.add_int(int);
        total.round()
    }

    fn round(&self) -> f64 {
        let Some(&top_limb) = self.limbs.last() else {
            return 0.0;
        };
        let negative = top_limb >> 63 == 1;
        let magnitude: Vec<u64> = if negative {
            // Two's complement negation: invert and add one.
            let mut carry = true;
            self.limbs
                .iter()
                .map(|&limb| {
                    let (value, overflow) = (!limb).overflowing_add(u64::from(carry));
                    carry = overflow;
                    value
                })
                .collect()
        } else {
            self.limbs.clone()
        };
        let Some(top_index) = magnitude.iter().rposition(|&limb| limb != 0) else {
            return 0.0;
        };
        // The highest set bit, counted in units from the number's lowest limb.
        let top_bit = top_index as u32 * 64 + 63 - magnitude[top_index].leading_zeros();
        // Bit positions below count from `magnitude[0]`, which sits `self.low` limbs up.
        let top_unit = i64::from(top_bit) + i64::from(self.low) * 64;
        let bit_base = i64::from(self.low) * 64;
        let bits = |unit: i64, count: u32| bits_of(&magnitude, unit - bit_base, count);
        if top_unit < 53 {
            // Below 2^53 units: exactly a (sub)normal double.
            let units = bits(0, 53);
            return copysign((units as f64) * f64::from_bits(1), negative);
        }
        let mut mantissa = bits(top_unit - 52, 53);
        let guard = bits(top_unit - 53, 1) == 1;
        let sticky = (bit_base..top_unit - 53).any(|unit| bits(unit, 1) == 1);
        let mut top_unit = top_unit as u64;
        if guard && (sticky || mantissa & 1 == 1) {
            mantissa += 1;
            if mantissa == 1 << 53 {
                mantissa >>= 1;
                top_unit += 1;
            }
        }
        let sign = if negative { 1u64 << 63 } else { 0 };
        // 1.0 is at unit 1074 with biased exponent 1023.
        let biased_exponent = top_unit - 51;
        if biased_exponent >= 2047 {
            return if negative {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            };
        }
        f64::from_bits(sign | (biased_exponent << 52) | (mantissa & ((1 << 52) - 1)))
    }

    fn add_shifted(&mut self, magnitude: u128, shift: u32, negative: bool) {
        let limb = shift / 64;
        let offset = shift % 64;
        let low = magnitude << offset;
        let high = if offset == 0 {
            0
        } else {
            (magnitude >> (128 - offset)) as u64
        };
        let parts = [low as u64, (low >> 64) as u64, high];
        // One limb above the parts keeps room for the carry and the sign.
        self.ensure(limb, limb + 3);
        let start = (limb - self.low) as usize;
        let mut carry = false;
        for i in start..self.limbs.len() {
            let part = parts.get(i - start).copied().unwrap_or(0);
            if !carry && part == 0 && i >= start + parts.len() {
                break;
            }
            let (value, overflow_a, overflow_b) = if negative {
                let (value, a) = self.limbs[i].overflowing_sub(part);
                let (value, b) = value.overflowing_sub(u64::from(carry));
                (value, a, b)
            } else {
                let (value, a) = self.limbs[i].overflowing_add(part);
                let (value, b) = value.overflowing_add(u64::from(carry));
                (value, a, b)
            };
            self.limbs[i] = value;
            carry = overflow_a || overflow_b;
        }
        self.normalize();
    }

    /// The index of the top limb, if any.
    fn top(&self) -> Option<u32> {
        (!self.limbs.is_empty()).then(|| self.low + self.limbs.len() as u32 - 1)
    }

    /// The limb at absolute index `index`, sign-extended above and zero below.
    fn limb_at(&self, index: u32) -> u64 {
        if index < self.low {
            return 0;
        }
        match self.limbs.get((index - self.low) as usize) {
            Some(&limb) => limb,
            None => self.sign_limb(),
        }
    }

    fn sign_limb(&self) -> u64 {
        match self.limbs.last() {
            Some(&limb) if limb >> 63 == 1 => u64::MAX,
            _ => 0,
        }
    }

    /// Widens the held limbs to cover absolute indices `first..=last`.
    fn ensure(&mut self, first: u32, last: u32) {
        if self.limbs.is_empty() {
            self.low = first;
            self.limbs = vec![0; (last - first + 1) as usize];
            return;
        }
        if first < self.low {
            let extra = (self.low - first) as usize;
            self.limbs.splice(0..0, std::iter::repeat_n(0, extra));
            self.low = first;
        }
        let sign = self.sign_limb();
        while self.low + (self.limbs.len() as u32) <= last {
            self.limbs.push(sign);
        }
    }

    /// Restores the invariants: a pure sign limb on top and nothing redundant.
    fn normalize(&mut self) {
        let Some(&top) = self.limbs.last() else {
            return;
        };
        let sign = if top >> 63 == 1 { u64::MAX } else { 0 };
        if top != sign {
            self.limbs.push(sign);
        }
        while self.limbs.len() >= 2
            && self.limbs[self.limbs.len() - 1] == sign
            && self.limbs[self.limbs.len() - 2] == sign
        {
            self.limbs.pop();
        }
        let zeros = self.limbs.iter().take_while(|&&limb| limb == 0).count();
        if zeros == self.limbs.len() {
            self.limbs.clear();
            self.low = 0;
        } else if zeros > 0 {
            self.limbs.drain(..zeros);
            self.low += zeros as u32;
        }
    }

    /// The parts for a snapshot: the lowest limb's index and the limbs.
    pub(crate) fn parts(&self) -> (u32, &[u64]) {
        (self.low, &self.limbs)
    }

    /// The sum from a snapshot's parts, if they are in the form this code writes.
    pub(crate) fn from_parts(low: u32, limbs: Vec<u64>) -> Option<ExactFloatSum> {
        let too_big = limbs.len() > LIMBS_MAX || low as usize + limbs.len() > LIMBS_MAX;
        let sum = ExactFloatSum { low, limbs };
        let mut normalized = sum.clone();
        normalized.normalize();
        (!too_big && normalized == sum && (!sum.limbs.is_empty() || low == 0)).then_some(sum)
    }
}

fn copysign(value: f64, negative: bool) -> f64 {
    if negative {
        -value
    } else {
        value
    }
}

/// `count` (at most 64) bits of `limbs` starting at bit `from`, as an integer; bits
/// outside the limbs are zero.
fn bits_of(limbs: &[u64], from: i64, count: u32) -> u64 {
    let mut value = 0u64;
    for i in 0..count {
        let bit = from + i64::from(i);
        if bit < 0 {
            continue;
        }
        let limb = limbs.get((bit / 64) as usize).copied().unwrap_or(0);
        value |= ((limb >> (bit % 64)) & 1) << i;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    fn sum(values: &[f64]) -> f64 {
        let mut exact = ExactFloatSum::default();
        values.iter().for_each(|v| exact.add_f64(*v));
        exact.round_with(0)
    }

    #[test]
    fn sums_are_exact_then_rounded_once() {
        assert_eq!(sum(&[]), 0.0);
        assert_eq!(sum(&[1.5]), 1.5);
        assert_eq!(sum(&[0.1, 0.2, 0.3]), 0.6);
        assert_eq!(sum(&[1e100, 1.0, -1e100]), 1.0);
        assert_eq!(sum(&[-2.5, 1.0]), -1.5);
        assert_eq!(
            sum(&[f64::from_bits(1), f64::from_bits(1)]),
            f64::from_bits(2)
        );
        assert_eq!(
            sum(&[f64::MIN_POSITIVE, -f64::from_bits(1)]),
            f64::MIN_POSITIVE - f64::from_bits(1)
        );
        // Overflow happens only when the exact total is beyond range.
        assert_eq!(sum(&[f64::MAX, f64::MAX, -f64::MAX]), f64::MAX);
        assert_eq!(sum(&[f64::MAX, f64::MAX]), f64::INFINITY);
        assert_eq!(sum(&[-f64::MAX, -f64::MAX]), f64::NEG_INFINITY);
        // Ties go to even: 2^53 + 1 is halfway between 2^53 and 2^53 + 2.
        let mut exact = ExactFloatSum::default();
        exact.add_f64(9007199254740992.0);
        assert_eq!(exact.round_with(1), 9007199254740992.0);
        assert_eq!(exact.round_with(3), 9007199254740996.0);
        assert_eq!(exact.round_with(-9007199254740992), 0.0);
    }

    /// Exact rational reference for a few values: sums as i128 multiples of 2^-k for
    /// small-range doubles.
    #[test]
    fn agrees_with_integer_arithmetic_on_dyadic_values() {
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..2_000 {
            // Multiples of 2^-20 below 2^40: every partial sum is exact in i128.
            let units: Vec<i64> = (0..rng.gen_range(1..40))
                .map(|_| rng.gen_range(-(1i64 << 60)..(1i64 << 60)))
                .collect();
            let values: Vec<f64> = units
                .iter()
                .map(|u| *u as f64 / (1u64 << 20) as f64)
                .collect();
            let exact: i128 = values
                .iter()
                .map(|v| (v * (1u64 << 20) as f64) as i128)
                .sum();
            let expected = exact as f64 / (1u64 << 20) as f64;
            assert_eq!(sum(&values), expected, "{values:?}");
            // Any order, any grouping.
            let mut left = ExactFloatSum::default();
            let mut right = ExactFloatSum::default();
            let split = rng.gen_range(0..=values.len());
            values[..split].iter().rev().for_each(|v| left.add_f64(*v));
            values[split..].iter().for_each(|v| right.add_f64(*v));
            left.merge(&right);
            assert_eq!(left.round_with(0), expected);
            let (low, limbs) = left.parts();
            assert_eq!(
                ExactFloatSum::from_parts(low, limbs.to_vec()),
                Some(left.clone())
            );
        }
    }

    #[test]
    fn extreme_magnitudes_cancel_exactly() {
        let mut rng = SmallRng::seed_from_u64(2);
        for _ in 0..500 {
            let values: Vec<f64> = (0..rng.gen_range(1..20))
                .map(|_| {
                    let bits =
                        rng.gen::<u64>() & !(0x7ff << 52) | (rng.gen_range(0..2047u64) << 52);
                    f64::from_bits(bits)
                })
                .collect();
            let mut forward = ExactFloatSum::default();
            values.iter().for_each(|v| forward.add_f64(*v));
            // Adding the negations back leaves exactly zero.
            let mut cancelled = forward.clone();
            values.iter().for_each(|v| cancelled.add_f64(-v));
            assert_eq!(cancelled, ExactFloatSum::default());
            let mut backward = ExactFloatSum::default();
            values.iter().rev().for_each(|v| backward.add_f64(*v));
            assert_eq!(forward, backward);
            assert!(forward.parts().1.len() <= LIMBS_MAX);
            // A single value rounds to itself.
            let mut one = ExactFloatSum::default();
            one.add_f64(values[0]);
            assert_eq!(one.round_with(0).to_bits(), (values[0] + 0.0).to_bits());
        }
    }

    #[test]
    fn snapshot_parts_must_be_normalized() {
        assert!(ExactFloatSum::from_parts(0, vec![]).is_some());
        assert!(ExactFloatSum::from_parts(3, vec![]).is_none());
        assert!(ExactFloatSum::from_parts(0, vec![0, 1, 0]).is_none());
        assert!(ExactFloatSum::from_parts(0, vec![1, 0, 0]).is_none());
        assert!(ExactFloatSum::from_parts(0, vec![1, 0]).is_some());
        assert!(ExactFloatSum::from_parts(0, vec![u64::MAX]).is_some());
        assert!(ExactFloatSum::from_parts(39, vec![1, 0]).is_none());
    }
}
