//! The accumulators behind `count()`, `sum(x)`, `min(x)`, `max(x)` and `avg(x)`. Each one
//! gives the same result whatever order its inputs arrive in and however session windows
//! merge, so a reference evaluator can compute results from the set of events alone:
//! - integers (CEL int and uint) are summed exactly;
//! - a sum with any double input is the exact mathematical sum of all inputs (integers
//!   exactly, doubles at their exact binary value) rounded once to the nearest double,
//!   ties to even — Python's `float(sum(map(Fraction, xs)))` — kept exact in fixed point;
//! - min and max compare doubles in IEEE total order (so `-0.0` is below `0.0`).

use super::datum::Datum;
use super::exact::ExactFloatSum;
use std::cmp::Ordering;
use weir_core::spec::AggregateFunction;

/// One aggregate input: an integer (exact) or a finite double.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Input {
    Int(i128),
    Float(f64),
}

impl Input {
    /// The value of an aggregate argument; the error is a dead-letter detail.
    pub(crate) fn from_datum(value: &Datum<'_>) -> Result<Input, String> {
        match value {
            Datum::Int(i) => Ok(Input::Int(i128::from(*i))),
            Datum::UInt(u) => Ok(Input::Int(i128::from(*u))),
            Datum::Float(f) if f.is_finite() => Ok(Input::Float(*f)),
            Datum::Float(f) => Err(format!("{f} is not a finite number")),
            other => Err(format!("a {} is not a number", other.type_name())),
        }
    }
}

/// The running state of one aggregate of one window.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Accumulator {
    Count(u64),
    Sum(ExactSum),
    Avg(ExactSum),
    Min(Extreme),
    Max(Extreme),
}

impl Accumulator {
    /// An accumulator that has seen nothing.
    pub(crate) fn new(function: AggregateFunction) -> Accumulator {
        match function {
            AggregateFunction::Count => Accumulator::Count(0),
            AggregateFunction::Sum => Accumulator::Sum(ExactSum::default()),
            AggregateFunction::Avg => Accumulator::Avg(ExactSum::default()),
            AggregateFunction::Min => Accumulator::Min(Extreme::default()),
            AggregateFunction::Max => Accumulator::Max(Extreme::default()),
        }
    }

    /// Whether this accumulates `function`.
    pub(crate) fn is_of(&self, function: AggregateFunction) -> bool {
        matches!(
            (self, function),
            (Accumulator::Count(_), AggregateFunction::Count)
                | (Accumulator::Sum(_), AggregateFunction::Sum)
                | (Accumulator::Avg(_), AggregateFunction::Avg)
                | (Accumulator::Min(_), AggregateFunction::Min)
                | (Accumulator::Max(_), AggregateFunction::Max)
        )
    }

    /// Adds one event; `input` is `None` exactly for `count()`.
    pub(crate) fn add(&mut self, input: Option<Input>) {
        match (self, input) {
            (Accumulator::Count(count), _) => *count = count.saturating_add(1),
            (Accumulator::Sum(sum) | Accumulator::Avg(sum), Some(input)) => sum.add(input),
            (Accumulator::Min(extreme), Some(input)) => extreme.add(input, Ordering::Less),
            (Accumulator::Max(extreme), Some(input)) => extreme.add(input, Ordering::Greater),
            (_, None) => debug_assert!(false, "an aggregate with an argument got none"),
        }
    }

    /// Adds everything `other` has seen (session windows merging).
    pub(crate) fn merge(&mut self, other: &Accumulator) {
        match (self, other) {
            (Accumulator::Count(a), Accumulator::Count(b)) => *a = a.saturating_add(*b),
            (Accumulator::Sum(a), Accumulator::Sum(b))
            | (Accumulator::Avg(a), Accumulator::Avg(b)) => a.merge(b),
            (Accumulator::Min(a), Accumulator::Min(b)) => a.merge(b, Ordering::Less),
            (Accumulator::Max(a), Accumulator::Max(b)) => a.merge(b, Ordering::Greater),
            _ => debug_assert!(false, "merging accumulators of different functions"),
        }
    }

    /// The aggregate's value: count an integer; sum, min and max integers while every
    /// input was an integer (a double when the result is outside i64), else doubles; avg a
    /// double. A double beyond the double range is null.
    pub(crate) fn result(&self) -> Datum<'static> {
        match self {
            Accumulator::Count(count) => Datum::Int(i64::try_from(*count).unwrap_or(i64::MAX)),
            Accumulator::Sum(sum) => match sum.result() {
                SumValue::Int(int) => int_datum(int),
                SumValue::Float(float) => float_datum(float),
            },
            Accumulator::Avg(sum) => {
                let total = match sum.result() {
                    SumValue::Int(int) => int as f64,
                    SumValue::Float(float) => float,
                };
                float_datum(total / sum.count as f64)
            }
            Accumulator::Min(extreme) => extreme.result(Ordering::Less),
            Accumulator::Max(extreme) => extreme.result(Ordering::Greater),
        }
    }
}

fn int_datum(int: i128) -> Datum<'static> {
    match i64::try_from(int) {
        Ok(int) => Datum::Int(int),
        Err(_) => Datum::Float(int as f64),
    }
}

fn float_datum(float: f64) -> Datum<'static> {
    if float.is_finite() {
        Datum::Float(float)
    } else {
        Datum::Null
    }
}

/// An exact sum: integers in an i128, doubles in an [`ExactFloatSum`].
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ExactSum {
    pub(crate) count: u64,
    pub(crate) int_sum: i128,
    pub(crate) has_float: bool,
    pub(crate) floats: ExactFloatSum,
}

/// The value of an [`ExactSum`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum SumValue {
    Int(i128),
    Float(f64),
}

impl ExactSum {
    fn add(&mut self, input: Input) {
        self.count = self.count.saturating_add(1);
        match input {
            Input::Int(int) => self.int_sum += int,
            Input::Float(float) => {
                self.has_float = true;
                self.floats.add_f64(float);
            }
        }
    }

    fn merge(&mut self, other: &ExactSum) {
        self.count = self.count.saturating_add(other.count);
        self.int_sum += other.int_sum;
        self.has_float |= other.has_float;
        self.floats.merge(&other.floats);
    }

    /// Integers alone sum to an integer; with any double, the exact total of everything
    /// rounds once to a double (infinite beyond the double range).
    fn result(&self) -> SumValue {
        if self.has_float {
            SumValue::Float(self.floats.round_with(self.int_sum))
        } else {
            SumValue::Int(self.int_sum)
        }
    }
}

/// The smallest (or largest) input: the integer one and the double one kept apart, so
/// that a result of integers alone stays exact.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Extreme {
    pub(crate) int: Option<i128>,
    pub(crate) float: Option<f64>,
}

impl Extreme {
    /// Keeps `input` if it is further in direction `wanted` than what was kept.
    fn add(&mut self, input: Input, wanted: Ordering) {
        match input {
            Input::Int(int) => {
                if self.int.is_none_or(|kept| int.cmp(&kept) == wanted) {
                    self.int = Some(int);
                }
            }
            Input::Float(float) => {
                if self
                    .float
                    .is_none_or(|kept| float.total_cmp(&kept) == wanted)
                {
                    self.float = Some(float);
                }
            }
        }
    }

    fn merge(&mut self, other: &Extreme, wanted: Ordering) {
        if let Some(int) = other.int {
            self.add(Input::Int(int), wanted);
        }
        if let Some(float) = other.float {
            self.add(Input::Float(float), wanted);
        }
    }

    /// The extreme in direction `wanted`. Converting integers to doubles keeps their
    /// order, so with both kinds the extreme of all inputs as doubles is the extreme of
    /// the two kept ones.
    fn result(&self, wanted: Ordering) -> Datum<'static> {
        match (self.int, self.float) {
            (Some(int), None) => int_datum(int),
            (None, Some(float)) => Datum::Float(float),
            (Some(int), Some(float)) => {
                let int = int as f64;
                Datum::Float(if int.total_cmp(&float) == wanted {
                    int
                } else {
                    float
                })
            }
            (None, None) => Datum::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    fn sum_of(inputs: &[Input]) -> Datum<'static> {
        let mut acc = Accumulator::new(AggregateFunction::Sum);
        for input in inputs {
            acc.add(Some(*input));
        }
        acc.result()
    }

    #[test]
    fn integer_sums_are_exact_and_stay_integers() {
        assert_eq!(sum_of(&[Input::Int(1), Input::Int(2)]), Datum::Int(3));
        let big = i128::from(i64::MAX);
        assert_eq!(
            sum_of(&[Input::Int(big), Input::Int(big), Input::Int(-big)]),
            Datum::Int(i64::MAX)
        );
        // Beyond i64, the nearest double.
        assert_eq!(
            sum_of(&[Input::Int(big), Input::Int(1)]),
            Datum::Float(9223372036854775808.0)
        );
    }

    #[test]
    fn float_sums_are_correctly_rounded() {
        assert_eq!(
            sum_of(&[Input::Float(0.1), Input::Float(0.2), Input::Float(0.3)]),
            Datum::Float(0.6)
        );
        assert_eq!(
            sum_of(&[Input::Float(1e100), Input::Float(1.0), Input::Float(-1e100)]),
            Datum::Float(1.0)
        );
        // Integers join exactly: 2^53 + 1 is not a double, but the sum is.
        assert_eq!(
            sum_of(&[Input::Int(1 << 53), Input::Int(1), Input::Float(1.0)]),
            Datum::Float(9007199254740994.0)
        );
        assert_eq!(
            sum_of(&[Input::Float(f64::MAX), Input::Float(f64::MAX)]),
            Datum::Null
        );
        // Only the total counts, not what a running sum would have passed through.
        assert_eq!(
            sum_of(&[
                Input::Float(f64::MAX),
                Input::Float(f64::MAX),
                Input::Float(-f64::MAX)
            ]),
            Datum::Float(f64::MAX)
        );
    }

    #[test]
    fn results_do_not_depend_on_order_or_merging() {
        let mut rng = SmallRng::seed_from_u64(11);
        for _ in 0..300 {
            let inputs: Vec<Input> = (0..rng.gen_range(1..30))
                .map(|_| match rng.gen_range(0..3) {
                    0 => Input::Int(rng.gen_range(-1_000_000_000_000i128..1_000_000_000_000)),
                    1 => Input::Float(rng.gen_range(-1e6..1e6)),
                    _ => {
                        Input::Float(rng.gen_range(-1.0..1.0) * 10f64.powi(rng.gen_range(-20..20)))
                    }
                })
                .collect();
            for function in AggregateFunction::ALL {
                let mut forward = Accumulator::new(function);
                inputs.iter().for_each(|i| forward.add(Some(*i)));
                let mut backward = Accumulator::new(function);
                inputs.iter().rev().for_each(|i| backward.add(Some(*i)));
                let split = rng.gen_range(0..=inputs.len());
                let mut left = Accumulator::new(function);
                let mut right = Accumulator::new(function);
                inputs[..split].iter().for_each(|i| left.add(Some(*i)));
                inputs[split..].iter().for_each(|i| right.add(Some(*i)));
                right.merge(&left);
                let expected = forward.result();
                assert!(same(&backward.result(), &expected), "{function}");
                assert!(same(&right.result(), &expected), "{function}");
            }
        }
    }

    /// Equality that tells -0.0 from 0.0.
    fn same(a: &Datum<'_>, b: &Datum<'_>) -> bool {
        match (a, b) {
            (Datum::Float(x), Datum::Float(y)) => x.to_bits() == y.to_bits(),
            _ => a == b,
        }
    }

    #[test]
    fn min_and_max_mix_integers_and_doubles() {
        let run = |function, inputs: &[Input]| {
            let mut acc = Accumulator::new(function);
            inputs.iter().for_each(|i| acc.add(Some(*i)));
            acc.result()
        };
        let ints = [Input::Int(3), Input::Int(-2), Input::Int(7)];
        assert_eq!(run(AggregateFunction::Min, &ints), Datum::Int(-2));
        assert_eq!(run(AggregateFunction::Max, &ints), Datum::Int(7));
        let mixed = [Input::Int(3), Input::Float(2.5), Input::Int(7)];
        assert_eq!(run(AggregateFunction::Min, &mixed), Datum::Float(2.5));
        assert_eq!(run(AggregateFunction::Max, &mixed), Datum::Float(7.0));
        let zeros = [Input::Float(0.0), Input::Float(-0.0)];
        assert!(same(
            &run(AggregateFunction::Min, &zeros),
            &Datum::Float(-0.0)
        ));
        assert!(same(
            &run(AggregateFunction::Max, &zeros),
            &Datum::Float(0.0)
        ));
        let int_zero = [Input::Int(0), Input::Float(-0.0)];
        assert!(same(
            &run(AggregateFunction::Max, &int_zero),
            &Datum::Float(0.0)
        ));
        assert_eq!(
            run(AggregateFunction::Avg, &[Input::Int(1), Input::Int(2)]),
            Datum::Float(1.5)
        );
        assert_eq!(run(AggregateFunction::Count, &ints), Datum::Int(3));
    }

    #[test]
    fn arguments_must_be_finite_numbers() {
        assert_eq!(Input::from_datum(&Datum::Int(2)), Ok(Input::Int(2)));
        assert_eq!(
            Input::from_datum(&Datum::UInt(u64::MAX)),
            Ok(Input::Int(i128::from(u64::MAX)))
        );
        assert!(Input::from_datum(&Datum::Float(f64::NAN)).is_err());
        assert!(Input::from_datum(&Datum::Str("1".into())).is_err());
        assert!(Input::from_datum(&Datum::Null).is_err());
        assert!(Input::from_datum(&Datum::Bool(true)).is_err());
    }
}
