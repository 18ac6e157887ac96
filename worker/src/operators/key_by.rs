//! The `key_by` stage: the event's key (for windows, dedupe state and the output record)
//! becomes the key text of its expression; `dedupe` keys events by the same key text.

use std::borrow::Cow;

use super::compile::{compile_expr, CompileError};
use super::datum::Datum;
use super::expr::{CelEnv, Expr};
use super::limits::KEY_LEN_MAX_BYTES;
use super::object::Obj;

/// A compiled `key_by` stage.
#[derive(Debug)]
pub(crate) struct KeyBy {
    /// The spec field it came from, for dead letters (`pipeline[i].key_by`).
    field: String,
    expr: Expr,
}

impl KeyBy {
    /// The stage at spec field `field` with expression `source`.
    pub(crate) fn compile(
        field: String,
        source: &str,
        env: &cel::Env,
    ) -> Result<Self, CompileError> {
        Ok(KeyBy {
            expr: compile_expr(&field, source, env)?,
            field,
        })
    }

    /// The event's key; an error is the dead letter's detail.
    #[inline]
    pub(crate) fn key<'x>(&'x self, obj: &Obj<'x>, env: &CelEnv) -> Result<Cow<'x, str>, String> {
        key_text(&self.expr, obj, env).map_err(|message| format!("{}: {message}", self.field))
    }
}

/// An expression's value as a key: a string as it is, anything else as its JSON text.
pub(crate) fn key_text<'x>(
    expr: &'x Expr,
    obj: &Obj<'x>,
    env: &CelEnv,
) -> Result<Cow<'x, str>, String> {
    if let Some(text) = expr.integer_field_text(obj) {
        debug_assert_eq!(
            expr.eval(obj, env)
                .and_then(Datum::into_key_text)
                .as_deref(),
            Ok(text)
        );
        return Ok(Cow::Borrowed(text));
    }
    let text = expr.eval(obj, env)?.into_key_text()?;
    if text.len() > KEY_LEN_MAX_BYTES {
        return Err(format!(
            "the key is {} bytes long; the limit is {KEY_LEN_MAX_BYTES}",
            text.len()
        ));
    }
    Ok(text)
}
