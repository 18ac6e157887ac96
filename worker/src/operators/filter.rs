//! The `filter` stage: keeps the events for which its expression is true (see the module
//! doc of `operators` for the exact rule).

use super::compile::{compile_expr, CompileError};
use super::datum::Datum;
use super::expr::{CelEnv, Expr};
use super::object::Obj;

/// A compiled `filter` stage.
#[derive(Debug)]
pub(crate) struct Filter {
    /// The spec field it came from, for dead letters (`pipeline[i].filter`).
    field: String,
    expr: Expr,
}

impl Filter {
    /// The stage at spec field `field` with expression `source`.
    pub(crate) fn compile(
        field: String,
        source: &str,
        env: &cel::Env,
    ) -> Result<Self, CompileError> {
        Ok(Filter {
            expr: compile_expr(&field, source, env)?,
            field,
        })
    }

    /// Whether the event goes on; an error is the dead letter's detail (the expression
    /// failed or did not yield a bool).
    #[inline]
    pub(crate) fn keeps(&self, obj: &Obj<'_>, env: &CelEnv) -> Result<bool, String> {
        match self.expr.eval(obj, env) {
            Ok(Datum::Bool(keep)) => Ok(keep),
            Ok(other) => Err(format!(
                "{}: a filter must yield a bool, not a {}",
                self.field,
                other.type_name()
            )),
            Err(message) => Err(format!("{}: {message}", self.field)),
        }
    }
}
