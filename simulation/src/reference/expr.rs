//! CEL over the current object: each top-level field a variable, JSON mapped to CEL and
//! results mapped back, both by the spec's tables. The `cel` crate resolves a qualified
//! name `a.b` to a variable literally named `a.b` before field `b` of variable `a`, so
//! binding every field under its full name (dots included) gives the spec's rule.

use super::json::{self, Json};
use super::ReferenceError;
use cel::objects::{Key, Map};
use cel::{Context, Env, Program, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The longest key text (`key_by`, `dedupe`), in bytes (the spec's `KEY_LEN_MAX_BYTES`).
pub(crate) const KEY_LEN_MAX_BYTES: usize = 4096;

/// One compiled expression and its source, for messages.
pub(crate) struct Expr {
    source: String,
    program: Program,
}

impl Expr {
    /// Compiles `source` with the function spec validation uses, so the reference refuses
    /// exactly the texts a spec may not carry.
    pub(crate) fn compile(source: &str) -> Result<Expr, ReferenceError> {
        let program = weir_core::spec::compile_expression(source).map_err(|message| {
            ReferenceError::BadExpression {
                expression: source.to_string(),
                message,
            }
        })?;
        Ok(Expr {
            source: source.to_string(),
            program,
        })
    }

    /// Evaluates the expression over `object`; the error is an `expression_error` detail.
    pub(crate) fn eval(
        &self,
        env: &Arc<Env>,
        object: &BTreeMap<String, Json>,
    ) -> Result<Value, String> {
        let mut context = Context::with_env(Arc::clone(env));
        for (name, value) in object {
            context.add_variable_from_value(name.clone(), to_cel(value));
        }
        self.program
            .execute(&context)
            .map_err(|err| format!("`{}`: {err}", self.source))
    }
}

/// JSON to CEL: null, bool, int, double, string, list, map with string keys.
pub(crate) fn to_cel(value: &Json) -> Value {
    match value {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Int(i) => Value::Int(*i),
        Json::UInt(u) => Value::UInt(*u),
        Json::Double(d) => Value::Float(*d),
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(items) => Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Json::Object(fields) => {
            let map: HashMap<Key, Value> = fields
                .iter()
                .map(|(name, item)| (Key::String(Arc::new(name.clone())), to_cel(item)))
                .collect();
            Value::Map(Map::from(map))
        }
    }
}

/// CEL to JSON: null, bool, int, uint, finite double, string, and lists and maps (string
/// keys only) of these; anything else is an `expression_error`, whose detail this is.
pub(crate) fn to_json(value: &Value) -> Result<Json, String> {
    Ok(match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::Int(*i),
        Value::UInt(u) => Json::UInt(*u),
        Value::Float(d) if d.is_finite() => Json::Double(*d),
        Value::Float(d) => return Err(format!("{d} has no JSON form")),
        Value::String(s) => Json::String(s.as_ref().clone()),
        Value::List(items) => Json::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Value::Map(map) => {
            let mut fields = BTreeMap::new();
            for (key, item) in map.map.iter() {
                let Key::String(name) = key else {
                    return Err(format!("map key {key:?} is not a string"));
                };
                fields.insert(name.as_ref().clone(), to_json(item)?);
            }
            Json::Object(fields)
        }
        other => return Err(format!("a {} has no JSON form", other.type_of())),
    })
}

/// The key text of a value: a string as it is, anything else its compact JSON.
pub(crate) fn key_text(value: &Value) -> Result<String, String> {
    let text = match value {
        Value::String(s) => s.as_ref().clone(),
        other => {
            let bytes = json::to_bytes(&to_json(other)?);
            String::from_utf8(bytes).map_err(|_| "key text is not UTF-8".to_string())?
        }
    };
    if text.len() > KEY_LEN_MAX_BYTES {
        return Err(format!(
            "key text is {} bytes long; the limit is {KEY_LEN_MAX_BYTES}",
            text.len()
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(text: &str) -> BTreeMap<String, Json> {
        match json::parse(text.as_bytes()).unwrap() {
            Json::Object(fields) => fields,
            other => panic!("{other:?}"),
        }
    }

    fn eval(source: &str, text: &str) -> Result<Value, String> {
        let env = Arc::new(Env::stdlib());
        Expr::compile(source).unwrap().eval(&env, &object(text))
    }

    #[test]
    fn a_dotted_field_wins_over_a_nested_one() {
        assert_eq!(
            eval("a.b", r#"{"a.b": 1, "a": {"b": 2}}"#),
            Ok(Value::Int(1))
        );
        assert_eq!(eval("a.b", r#"{"a": {"b": 2}}"#), Ok(Value::Int(2)));
    }

    #[test]
    fn a_missing_field_is_an_error() {
        assert!(eval("nope > 1", r#"{"a": 1}"#).is_err());
    }

    #[test]
    fn no_arithmetic_across_int_and_double() {
        assert!(eval("amount * 100", r#"{"amount": 1.5}"#).is_err());
        assert_eq!(
            eval("amount > 1", r#"{"amount": 1.5}"#),
            Ok(Value::Bool(true))
        );
    }

    #[test]
    fn key_texts() {
        let cases = [
            (Value::String(Arc::new("7".into())), "7"),
            (Value::Int(7), "7"),
            (Value::Float(2.0), "2.0"),
            (Value::Bool(true), "true"),
            (Value::Null, "null"),
        ];
        for (value, text) in cases {
            assert_eq!(key_text(&value).unwrap(), text);
        }
        let list = eval("[1, 'a']", "{}").unwrap();
        assert_eq!(key_text(&list).unwrap(), r#"[1,"a"]"#);
        assert!(key_text(&Value::Float(f64::NAN)).is_err());
        assert!(key_text(&Value::Bytes(Arc::new(vec![1]))).is_err());
    }
}
