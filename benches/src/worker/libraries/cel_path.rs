//! The filter-map job's expressions run by the `cel` interpreter alone: the same programs
//! the engine compiles (`weir_core::spec::compile_expression`), the same standard
//! environment, the fields handed over as variables converted on access; no native
//! fast path. One context per record serves the filter and every map output.

use super::decode::RawFields;
use super::field::Field;
use anyhow::bail;
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use std::sync::Arc;
use weir_core::spec::{JobSpec, Stage};

/// The compiled filter and map outputs (in name order, as the engine writes them).
pub struct CelExpressions {
    env: Arc<cel::Env>,
    filter: cel::Program,
    outputs: Vec<(String, cel::Program)>,
}

impl CelExpressions {
    /// Compiles a spec whose pipeline is one filter and one map, as the filter-map job's.
    pub fn from_spec(spec: &JobSpec) -> anyhow::Result<CelExpressions> {
        let compile = |source: &str| {
            weir_core::spec::compile_expression(source).map_err(|err| anyhow::anyhow!(err))
        };
        let [Stage::Filter(filter), Stage::Map(outputs)] = spec.pipeline.as_slice() else {
            bail!(
                "the cel path runs a filter then a map, not {:?}",
                spec.pipeline
            );
        };
        Ok(CelExpressions {
            env: Arc::new(cel::Env::stdlib()),
            filter: compile(filter)?,
            outputs: outputs
                .iter()
                .map(|(name, source)| Ok((name.clone(), compile(source)?)))
                .collect::<anyhow::Result<_>>()?,
        })
    }

    /// Runs the filter over `fields`, then the map: `Ok(None)` when the filter drops the
    /// event, else the output object's JSON. The error is an expression error's detail.
    pub fn run(&self, fields: &RawFields<'_>) -> Result<Option<Vec<u8>>, String> {
        let resolver = FieldResolver { fields };
        let mut context = cel::Context::with_env(Arc::clone(&self.env));
        context.set_variable_resolver(&resolver);
        match self.filter.execute(&context) {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => return Ok(None),
            Ok(other) => return Err(format!("a filter must yield a bool, not {other:?}")),
            Err(err) => return Err(err.to_string()),
        }
        let mut out = Vec::with_capacity(16 + 32 * self.outputs.len());
        out.push(b'{');
        for (i, (name, program)) in self.outputs.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json_str(&mut out, name)?;
            out.push(b':');
            let value = program
                .execute(&context)
                .map_err(|err| format!("{name}: {err}"))?;
            write_cel_json(&value, &mut out).map_err(|err| format!("{name}: {err}"))?;
        }
        out.push(b'}');
        Ok(Some(out))
    }
}

/// Gives the interpreter the located fields as variables, converted on access.
struct FieldResolver<'f, 'a> {
    fields: &'f RawFields<'a>,
}

impl VariableResolver for FieldResolver<'_, '_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let value = to_cel(&Field::from_raw(self.fields.get(variable)?).ok()?);
        let boxed: Box<dyn Val> = value.try_into().ok()?;
        Some(CowVal::Owned(boxed))
    }
}

fn to_cel(field: &Field<'_>) -> cel::Value {
    match field {
        Field::Null => cel::Value::Null,
        Field::Bool(b) => cel::Value::Bool(*b),
        Field::Int(i) => cel::Value::Int(*i),
        Field::Float(f) => cel::Value::Float(*f),
        Field::Str(s) => cel::Value::String(Arc::new(s.to_string())),
        Field::Tree(tree) => tree_to_cel(tree),
    }
}

fn tree_to_cel(tree: &serde_json::Value) -> cel::Value {
    match tree {
        serde_json::Value::Null => cel::Value::Null,
        serde_json::Value::Bool(b) => cel::Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => {
            cel::Value::List(Arc::new(items.iter().map(tree_to_cel).collect()))
        }
        serde_json::Value::Object(members) => {
            let map = members
                .iter()
                .map(|(k, v)| {
                    (
                        cel::objects::Key::String(Arc::new(k.clone())),
                        tree_to_cel(v),
                    )
                })
                .collect();
            cel::Value::Map(cel::objects::Map { map: Arc::new(map) })
        }
    }
}

/// Appends a CEL result as the engine writes JSON; a value with no JSON form is an error.
fn write_cel_json(value: &cel::Value, out: &mut Vec<u8>) -> Result<(), String> {
    match value {
        cel::Value::Null => out.extend_from_slice(b"null"),
        cel::Value::Bool(true) => out.extend_from_slice(b"true"),
        cel::Value::Bool(false) => out.extend_from_slice(b"false"),
        cel::Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        cel::Value::UInt(u) => out.extend_from_slice(itoa::Buffer::new().format(*u).as_bytes()),
        cel::Value::Float(f) if f.is_finite() => {
            serde_json::to_writer(&mut *out, f).map_err(|e| e.to_string())?
        }
        cel::Value::String(s) => write_json_str(out, s)?,
        cel::Value::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_cel_json(item, out)?;
            }
            out.push(b']');
        }
        cel::Value::Map(map) => {
            let mut entries = Vec::with_capacity(map.map.len());
            for (key, item) in map.map.iter() {
                match key {
                    cel::objects::Key::String(key) => entries.push((key.as_str(), item)),
                    other => return Err(format!("a map key {other:?} has no JSON form")),
                }
            }
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_str(out, key)?;
                out.push(b':');
                write_cel_json(item, out)?;
            }
            out.push(b'}');
        }
        other => return Err(format!("{other:?} has no JSON form")),
    }
    Ok(())
}

fn write_json_str(out: &mut Vec<u8>, text: &str) -> Result<(), String> {
    serde_json::to_writer(&mut *out, text).map_err(|e| e.to_string())
}
