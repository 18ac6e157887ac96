//! Compiling a job spec's parts for the engine: [`CompileError`], and the helpers every
//! stage's `compile` shares (an expression named by its spec field, a duration in ms).

use super::expr::{Expr, ExprCompileError};
use weir_core::spec::SpecError;

/// Why a job spec cannot run as a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// The spec breaks a rule of job specs.
    #[error("invalid job spec: {0}")]
    InvalidSpec(#[from] SpecError),
    /// An expression does not compile (validation normally catches this first).
    #[error("{field}: {message}")]
    Expression { field: String, message: String },
}

/// A spec duration in ms, saturating (validation bounds every duration far below).
pub(crate) fn millis(duration: weir_core::spec::SpecDuration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The expression at spec field `field`, compiled; an error names the field.
pub(crate) fn compile_expr(
    field: &str,
    source: &str,
    env: &cel::Env,
) -> Result<Expr, CompileError> {
    Expr::compile(source, env).map_err(|err| match err {
        ExprCompileError::Invalid(message) => CompileError::Expression {
            field: field.to_string(),
            message,
        },
    })
}
