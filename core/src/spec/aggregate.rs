//! The calls an `aggregate` stage may write, like `count()` or `sum(amount)`. They are not
//! CEL: an aggregate folds many events into one value, which a CEL expression over a single
//! event cannot say. So the spec keeps the text, and this module reads it into an
//! [`AggregateCall`] whose argument, when there is one, is plain CEL over each event.

use super::cel::compile_expression;
use std::fmt;

/// The functions an aggregate stage may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggregateFunction {
    /// `count()`: the number of events in the window.
    Count,
    /// `sum(x)`: the sum of `x` over the window's events.
    Sum,
    /// `min(x)`: the smallest `x` in the window.
    Min,
    /// `max(x)`: the largest `x` in the window.
    Max,
    /// `avg(x)`: the mean of `x` over the window's events.
    Avg,
}

impl AggregateFunction {
    /// Every function, in the order error messages list them.
    pub const ALL: [AggregateFunction; 5] = [
        AggregateFunction::Count,
        AggregateFunction::Sum,
        AggregateFunction::Min,
        AggregateFunction::Max,
        AggregateFunction::Avg,
    ];

    /// The name a spec writes.
    pub const fn name(self) -> &'static str {
        match self {
            AggregateFunction::Count => "count",
            AggregateFunction::Sum => "sum",
            AggregateFunction::Min => "min",
            AggregateFunction::Max => "max",
            AggregateFunction::Avg => "avg",
        }
    }

    /// The function a spec names, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|function| function.name() == name)
    }

    /// Whether the function takes an argument (all but `count`).
    pub const fn takes_argument(self) -> bool {
        !matches!(self, AggregateFunction::Count)
    }
}

impl fmt::Display for AggregateFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One aggregate output read from its spec text: the function and, for all but `count()`,
/// the CEL expression evaluated on each event and fed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateCall {
    /// The function called.
    pub function: AggregateFunction,
    /// The argument's CEL source, trimmed; `None` exactly when the function is `count`.
    pub argument: Option<String>,
}

/// Reads an aggregate call like `count()`, `sum(amount)` or `max(price * quantity)`,
/// compiling its argument with [`compile_expression`]. The error is a one-line message.
pub fn parse_aggregate_call(src: &str) -> Result<AggregateCall, String> {
    let text = src.trim();
    let (Some(open), true) = (text.find('('), text.ends_with(')')) else {
        return Err(format!(
            "`{text}` is not an aggregate call; expected one of {}",
            usage()
        ));
    };
    let name = text[..open].trim();
    let Some(function) = AggregateFunction::from_name(name) else {
        return Err(format!(
            "unknown aggregate function `{name}`; expected one of {}",
            usage()
        ));
    };
    // The argument is everything between the first `(` and the last `)`. Text like
    // `sum(a) + max(b)` leaves `a) + max(b` as the argument, which CEL then rejects.
    let argument = text[open + 1..text.len() - 1].trim();
    match (function.takes_argument(), argument.is_empty()) {
        (false, true) => Ok(AggregateCall {
            function,
            argument: None,
        }),
        (false, false) => Err(format!("{function}() takes no argument")),
        (true, true) => Err(format!(
            "{function}() takes one argument, the field or expression to aggregate"
        )),
        (true, false) => {
            compile_expression(argument)
                .map_err(|err| format!("argument of {function}(): {err}"))?;
            Ok(AggregateCall {
                function,
                argument: Some(argument.to_string()),
            })
        }
    }
}

fn usage() -> String {
    AggregateFunction::ALL
        .iter()
        .map(|function| match function.takes_argument() {
            true => format!("{function}(x)"),
            false => format!("{function}()"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(function: AggregateFunction, argument: Option<&str>) -> AggregateCall {
        AggregateCall {
            function,
            argument: argument.map(str::to_string),
        }
    }

    #[test]
    fn reads_every_function() {
        use AggregateFunction::*;
        let cases = [
            ("count()", call(Count, None)),
            (" count( ) ", call(Count, None)),
            ("sum(amount)", call(Sum, Some("amount"))),
            ("min(x)", call(Min, Some("x"))),
            ("max( amount )", call(Max, Some("amount"))),
            (
                "avg(price * (1 + tax))",
                call(Avg, Some("price * (1 + tax)")),
            ),
            ("sum(order.total)", call(Sum, Some("order.total"))),
        ];
        for (src, expected) in cases {
            assert_eq!(parse_aggregate_call(src), Ok(expected), "{src}");
        }
    }

    #[test]
    fn rejects_misuse() {
        let cases = [
            ("count(x)", "takes no argument"),
            ("sum()", "takes one argument"),
            ("avg( )", "takes one argument"),
            ("median(x)", "unknown aggregate function `median`"),
            ("Count()", "unknown aggregate function"),
            ("amount", "not an aggregate call"),
            ("sum(amount", "not an aggregate call"),
            ("", "not an aggregate call"),
            ("sum(a) + max(b)", "invalid CEL"),
            ("sum(a, b)", "invalid CEL"),
            ("max(amount >)", "invalid CEL"),
        ];
        for (src, needle) in cases {
            let err = parse_aggregate_call(src).unwrap_err();
            assert!(err.contains(needle), "{src}: {err}");
        }
    }
}
