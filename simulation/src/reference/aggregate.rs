//! Aggregate accumulators: what one window remembers of its events for one aggregate
//! output, and the value it finally writes. Accumulators merge (for sessions), and nothing
//! here depends on the order inputs arrive in.

use super::exact_sum::ExactSum;
use super::json::Json;
use weir_core::spec::AggregateFunction;

/// One aggregate input: an int or uint (kept exactly), or a finite double.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    Integer(i128),
    Double(f64),
}

impl Number {
    fn to_f64(self) -> f64 {
        match self {
            // `as` rounds to the nearest double, ties to even.
            Number::Integer(i) => i as f64,
            Number::Double(d) => d,
        }
    }
}

/// Everything any aggregate function needs, whichever it is: simple beats clever here.
#[derive(Debug, Clone, Default)]
pub(crate) struct Accumulator {
    count: u64,
    /// Whether every input so far was an int or uint.
    all_integers: bool,
    /// The sum of the integer inputs.
    integer_sum: i128,
    integer_min: Option<i128>,
    integer_max: Option<i128>,
    /// The exact sum of every input.
    exact_sum: ExactSum,
    /// The extremes of every input converted to double, in IEEE total order.
    double_min: Option<f64>,
    double_max: Option<f64>,
}

impl Accumulator {
    pub(crate) fn new() -> Self {
        Accumulator {
            all_integers: true,
            ..Accumulator::default()
        }
    }

    /// Adds one event; `input` is `None` for `count()`.
    pub(crate) fn add(&mut self, input: Option<Number>) {
        self.count += 1;
        let Some(number) = input else {
            return;
        };
        match number {
            Number::Integer(i) => {
                self.integer_sum += i;
                self.integer_min = Some(self.integer_min.map_or(i, |m| m.min(i)));
                self.integer_max = Some(self.integer_max.map_or(i, |m| m.max(i)));
                self.exact_sum.add_int(i);
            }
            Number::Double(d) => {
                self.all_integers = false;
                self.exact_sum.add_double(d);
            }
        }
        let d = number.to_f64();
        self.double_min = Some(total_min(self.double_min, d));
        self.double_max = Some(total_max(self.double_max, d));
    }

    /// Folds `other` (a merged session's) into this one.
    pub(crate) fn merge(&mut self, other: &Accumulator) {
        self.count += other.count;
        self.all_integers &= other.all_integers;
        self.integer_sum += other.integer_sum;
        if let Some(i) = other.integer_min {
            self.integer_min = Some(self.integer_min.map_or(i, |m| m.min(i)));
        }
        if let Some(i) = other.integer_max {
            self.integer_max = Some(self.integer_max.map_or(i, |m| m.max(i)));
        }
        self.exact_sum.add(&other.exact_sum);
        if let Some(d) = other.double_min {
            self.double_min = Some(total_min(self.double_min, d));
        }
        if let Some(d) = other.double_max {
            self.double_max = Some(total_max(self.double_max, d));
        }
    }

    /// The value `function` writes for the window.
    pub(crate) fn result(&self, function: AggregateFunction) -> Json {
        match function {
            AggregateFunction::Count => Json::Int(self.count as i64),
            AggregateFunction::Sum => match self.all_integers {
                true => integer_json(self.integer_sum),
                false => self.exact_sum.to_f64().map_or(Json::Null, Json::Double),
            },
            AggregateFunction::Min => self.extreme(self.integer_min, self.double_min),
            AggregateFunction::Max => self.extreme(self.integer_max, self.double_max),
            AggregateFunction::Avg => {
                let sum = match self.all_integers {
                    true => Some(self.integer_sum as f64),
                    false => self.exact_sum.to_f64(),
                };
                sum.map_or(Json::Null, |s| Json::Double(s / self.count as f64))
            }
        }
    }

    fn extreme(&self, integer: Option<i128>, double: Option<f64>) -> Json {
        match (self.all_integers, integer, double) {
            (true, Some(i), _) => integer_json(i),
            (_, _, Some(d)) => Json::Double(d),
            // A window holds at least one event, so this is unreachable in practice.
            _ => Json::Null,
        }
    }
}

/// An integer result: an integer when it fits i64, else the nearest double.
fn integer_json(value: i128) -> Json {
    match i64::try_from(value) {
        Ok(i) => Json::Int(i),
        Err(_) => Json::Double(value as f64),
    }
}

fn total_min(current: Option<f64>, d: f64) -> f64 {
    match current {
        Some(m) if m.total_cmp(&d).is_le() => m,
        _ => d,
    }
}

fn total_max(current: Option<f64>, d: f64) -> f64 {
    match current {
        Some(m) if m.total_cmp(&d).is_ge() => m,
        _ => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(inputs: &[Number]) -> Accumulator {
        let mut acc = Accumulator::new();
        inputs.iter().for_each(|n| acc.add(Some(*n)));
        acc
    }

    #[test]
    fn integers_stay_integers() {
        let acc = fold(&[Number::Integer(3), Number::Integer(-5)]);
        assert_eq!(acc.result(AggregateFunction::Count), Json::Int(2));
        assert_eq!(acc.result(AggregateFunction::Sum), Json::Int(-2));
        assert_eq!(acc.result(AggregateFunction::Min), Json::Int(-5));
        assert_eq!(acc.result(AggregateFunction::Max), Json::Int(3));
        assert_eq!(acc.result(AggregateFunction::Avg), Json::Double(-1.0));
        let big = fold(&[Number::Integer(i64::MAX.into()), Number::Integer(1)]);
        assert_eq!(
            big.result(AggregateFunction::Sum),
            Json::Double(9.223372036854776e18)
        );
    }

    #[test]
    fn one_double_makes_doubles_and_zero_signs_order() {
        let acc = fold(&[
            Number::Double(-0.0),
            Number::Integer(0),
            Number::Double(0.0),
        ]);
        let Json::Double(min) = acc.result(AggregateFunction::Min) else {
            panic!()
        };
        assert_eq!(min.to_bits(), (-0.0f64).to_bits());
        let Json::Double(max) = acc.result(AggregateFunction::Max) else {
            panic!()
        };
        assert_eq!(max.to_bits(), 0.0f64.to_bits());
        let Json::Double(sum) = acc.result(AggregateFunction::Sum) else {
            panic!()
        };
        assert_eq!(sum.to_bits(), 0.0f64.to_bits());
    }

    #[test]
    fn merging_equals_adding() {
        let inputs = [
            Number::Integer(4),
            Number::Double(0.1),
            Number::Double(-2.5),
            Number::Integer(-9),
        ];
        let whole = fold(&inputs);
        let mut left = fold(&inputs[..2]);
        left.merge(&fold(&inputs[2..]));
        for function in AggregateFunction::ALL {
            assert_eq!(left.result(function), whole.result(function), "{function}");
        }
    }
}
