//! The `map` stage: replaces each event with the named outputs of its expressions (see the
//! module doc of `operators` for the exact rule).

use std::collections::BTreeMap;

use super::compile::{compile_expr, CompileError};
use super::expr::{CelEnv, Expr};
use super::object::Obj;

/// A compiled `map` stage.
#[derive(Debug)]
pub(crate) struct Map {
    /// The spec field it came from, for dead letters (`pipeline[i].map`).
    field: String,
    /// Each output's name and expression, in the spec's (byte) order.
    outputs: Vec<(String, Expr)>,
}

impl Map {
    /// The stage at spec field `field` with these outputs.
    pub(crate) fn compile(
        field: String,
        outputs: &BTreeMap<String, String>,
        env: &cel::Env,
    ) -> Result<Self, CompileError> {
        let outputs = outputs
            .iter()
            .map(|(name, source)| {
                let expr = compile_expr(&format!("{field}.{name}"), source, env)?;
                Ok((name.clone(), expr))
            })
            .collect::<Result<_, CompileError>>()?;
        Ok(Map { field, outputs })
    }

    /// The event's new object; an error is the dead letter's detail, naming the output
    /// that failed or is not JSON.
    #[inline]
    pub(crate) fn apply<'x>(&'x self, obj: &Obj<'x>, env: &CelEnv) -> Result<Obj<'x>, String> {
        let mut fields = Vec::with_capacity(self.outputs.len());
        for (name, expr) in &self.outputs {
            let value = expr
                .eval(obj, env)
                .and_then(|value| value.check_json().map(|()| value));
            match value {
                Ok(value) => fields.push((name.as_str(), value)),
                Err(message) => return Err(format!("{}.{name}: {message}", self.field)),
            }
        }
        Ok(Obj::Fields(fields))
    }
}
