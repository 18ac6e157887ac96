//! The exact sum of integers and doubles, rounded once to the nearest double, ties to even
//! (Python's `float(sum(map(Fraction, xs)))`). Every double and every integer is a whole
//! multiple of 2^-1074, so the sum is kept as one fixed-point integer in units of 2^-1074:
//! a two's-complement number of [`LIMBS`] 64-bit limbs, wide enough for the largest
//! double (below 2^1024, so below 2^2098 units) times far more events than a window holds.

/// Limbs of the accumulator: 2560 bits, the top one the sign.
const LIMBS: usize = 40;
/// The accumulator's unit is 2^-SCALE_BITS.
const SCALE_BITS: u32 = 1074;

/// An exact sum; `Default` is zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExactSum {
    limbs: [u64; LIMBS],
}

impl Default for ExactSum {
    fn default() -> Self {
        ExactSum { limbs: [0; LIMBS] }
    }
}

impl ExactSum {
    pub(crate) fn add_int(&mut self, value: i128) {
        self.add_scaled(value.unsigned_abs(), SCALE_BITS, value < 0);
    }

    pub(crate) fn add_double(&mut self, value: f64) {
        debug_assert!(value.is_finite());
        let bits = value.to_bits();
        let negative = bits >> 63 == 1;
        let exponent = ((bits >> 52) & 0x7ff) as u32;
        let fraction = bits & ((1 << 52) - 1);
        // A normal double is (2^52 + fraction) * 2^(exponent - 1075), a subnormal one
        // fraction * 2^-1074; in units of 2^-1074 the shifts are exponent - 1 and 0.
        let (mantissa, shift) = match exponent {
            0 => (fraction, 0),
            _ => (fraction | (1 << 52), exponent - 1),
        };
        self.add_scaled(u128::from(mantissa), shift, negative);
    }

    pub(crate) fn add(&mut self, other: &ExactSum) {
        self.add_limbs(&other.limbs);
    }

    /// Adds `±magnitude * 2^shift` units.
    fn add_scaled(&mut self, magnitude: u128, shift: u32, negative: bool) {
        let mut term = [0u64; LIMBS];
        let limb = (shift / 64) as usize;
        let bit = shift % 64;
        let low = magnitude as u64;
        let high = (magnitude >> 64) as u64;
        let words = match bit {
            0 => [low, high, 0],
            _ => [
                low << bit,
                (high << bit) | (low >> (64 - bit)),
                high >> (64 - bit),
            ],
        };
        for (i, word) in words.into_iter().enumerate() {
            assert!(word == 0 || limb + i < LIMBS - 1, "exact sum overflow");
            if limb + i < LIMBS {
                term[limb + i] = word;
            }
        }
        if negative {
            negate(&mut term);
        }
        self.add_limbs(&term);
    }

    fn add_limbs(&mut self, term: &[u64; LIMBS]) {
        let mut carry = false;
        for (limb, add) in self.limbs.iter_mut().zip(term) {
            let (sum, carry_a) = limb.overflowing_add(*add);
            let (sum, carry_b) = sum.overflowing_add(u64::from(carry));
            *limb = sum;
            carry = carry_a || carry_b;
        }
    }

    /// The sum rounded once to the nearest double, ties to even; `None` when that
    /// overflows. An exact zero is `0.0`.
    pub(crate) fn to_f64(&self) -> Option<f64> {
        let negative = self.limbs[LIMBS - 1] >> 63 == 1;
        let mut magnitude = self.limbs;
        if negative {
            negate(&mut magnitude);
        }
        let bit_at = |i: u32| (magnitude[(i / 64) as usize] >> (i % 64)) & 1 == 1;
        let Some(top) = (0..LIMBS as u32 * 64).rev().find(|&i| bit_at(i)) else {
            return Some(0.0);
        };
        let sign = if negative { 1u64 << 63 } else { 0 };
        if top < 53 {
            // Below 2^53 units the value is a double as it is (subnormal or the smallest
            // normals), and scaling by a power of two is then exact.
            let units = magnitude[0] as f64;
            return Some(f64::from_bits((units * f64::from_bits(1)).to_bits() | sign));
        }
        // Keep the top 53 bits, rounding on the rest.
        let shift = top - 52;
        let mut kept: u64 = (0..53).fold(0, |acc, i| acc | (u64::from(bit_at(shift + i)) << i));
        let half = bit_at(shift - 1);
        let sticky = (0..shift - 1).any(bit_at);
        let mut exponent_units = shift;
        if half && (sticky || kept & 1 == 1) {
            kept += 1;
            if kept == 1 << 53 {
                kept >>= 1;
                exponent_units += 1;
            }
        }
        // kept * 2^(exponent_units - 1074) = 1.f * 2^(exponent_units - 1022).
        let biased = u64::from(exponent_units) + 1;
        if biased >= 0x7ff {
            return None;
        }
        Some(f64::from_bits(
            sign | (biased << 52) | (kept & ((1 << 52) - 1)),
        ))
    }
}

/// Two's-complement negation in place.
fn negate(limbs: &mut [u64; LIMBS]) {
    let mut carry = true;
    for limb in limbs.iter_mut() {
        let (sum, overflow) = (!*limb).overflowing_add(u64::from(carry));
        *limb = sum;
        carry = overflow;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(doubles: &[f64], ints: &[i128]) -> Option<f64> {
        let mut total = ExactSum::default();
        doubles.iter().for_each(|d| total.add_double(*d));
        ints.iter().for_each(|i| total.add_int(*i));
        total.to_f64()
    }

    #[test]
    fn sums_exactly_and_rounds_once() {
        assert_eq!(sum(&[0.1, 0.2], &[]), Some(0.30000000000000004));
        assert_eq!(sum(&[1e100, 1.0, -1e100], &[]), Some(1.0));
        assert_eq!(sum(&[0.1, 0.2, -0.3], &[]), Some(2.7755575615628914e-17));
        assert_eq!(sum(&[-0.0], &[]).map(f64::to_bits), Some(0.0f64.to_bits()));
        assert_eq!(sum(&[-1.5], &[1]), Some(-0.5));
        assert_eq!(sum(&[f64::from_bits(1)], &[]), Some(f64::from_bits(1)));
        assert_eq!(sum(&[-f64::from_bits(3)], &[]), Some(-f64::from_bits(3)));
        assert_eq!(sum(&[f64::MAX], &[]), Some(f64::MAX));
        assert_eq!(sum(&[f64::MAX, f64::MAX], &[]), None);
        assert_eq!(sum(&[f64::MAX, -f64::MAX, 2.5], &[]), Some(2.5));
        // 2^53 + 1 is a tie between 2^53 and 2^53 + 2: even wins.
        assert_eq!(sum(&[], &[1 << 53, 1]), Some(9007199254740992.0));
        assert_eq!(sum(&[], &[1 << 53, 3]), Some(9007199254740996.0));
        assert_eq!(
            sum(&[0.5], &[i128::from(i64::MAX)]),
            Some(9.223372036854776e18)
        );
    }
}
