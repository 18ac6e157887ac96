//! Evaluating a job's CEL expressions against the current object. Every expression is
//! compiled with the same function validation uses (`weir_core::spec::compile_expression`),
//! so what was accepted is what runs. Common shapes — a field path like `card_id` or
//! `a.b`, literals, comparisons, `&&`, `||`, `!`, `? :` and arithmetic — also get a
//! native form (the fast path) that reads fields in place and does not allocate; the
//! `cel` interpreter runs the rest. The native form gives exactly the results the
//! interpreter gives (the tests below check that on many generated expressions and
//! events): where the two could differ — an operator applied to a list or map — it hands
//! over to the interpreter. When the native form fails, the interpreter is run too, for
//! its error message, so dead letters read the same whichever path ran.
//!
//! Depth: the interpreter recurses once per syntax-tree level, with frames of up to ~4 KiB
//! in release builds and ~40 KiB in debug builds. Validation bounds bracket nesting (32)
//! and length (4 KiB), but a flat chain like `a + a + ... + a` within that length is
//! ~2,000 levels deep: enough to overflow any normal thread. So expressions deeper than
//! [`EXPRESSION_DEPTH_MAX`] levels are refused by `compile_expression` (at submit time and
//! when the pipeline is compiled), and
//! evaluation never needs more than ~1.3 MiB of stack even in a debug build: a normal
//! 2 MiB thread (tokio's, a test's) is enough. A test evaluates the deepest expression of
//! every costly shape on a thread with a 1.5 MiB stack.

use super::datum::Datum;
use super::object::Obj;
use cel::common::ast::{Expr as Ast, LiteralValue};
use cel::common::value::CowVal;
use cel::context::VariableResolver;
use cel::parser::Expression;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::sync::Arc;

pub use weir_core::spec::cel::EXPRESSION_DEPTH_MAX;

/// The CEL environment expressions run in: the standard library, built once per pipeline.
pub(crate) type CelEnv = Arc<cel::Env>;

/// A new standard environment.
pub(crate) fn cel_env() -> CelEnv {
    Arc::new(cel::Env::stdlib())
}

/// Why an expression cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExprCompileError {
    /// It does not compile, or is deeper than [`EXPRESSION_DEPTH_MAX`].
    Invalid(String),
}

/// A compiled expression.
#[derive(Debug)]
pub(crate) struct Expr {
    program: cel::Program,
    native: Option<Node>,
}

impl Expr {
    /// Compiles `source`.
    pub(crate) fn compile(source: &str, env: &cel::Env) -> Result<Expr, ExprCompileError> {
        let program =
            weir_core::spec::compile_expression(source).map_err(ExprCompileError::Invalid)?;
        let native = translate(program.expression(), env);
        Ok(Expr { program, native })
    }

    /// Whether the expression has a native form.
    #[cfg(test)]
    pub(crate) fn is_native(&self) -> bool {
        self.native.is_some()
    }

    /// Evaluates the expression on `obj`; the error is a message for a dead letter.
    pub(crate) fn eval<'x>(&'x self, obj: &Obj<'x>, env: &CelEnv) -> Result<Datum<'x>, String> {
        if let Some(native) = &self.native {
            match eval_node(native, obj) {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(Failed)) => {
                    // The native form failed; the interpreter says why in its own words.
                    return match self.eval_interpreted(obj, env) {
                        Err(message) => Err(message),
                        Ok(_) => {
                            debug_assert!(false, "native and interpreted results differ");
                            Err("the expression failed".to_string())
                        }
                    };
                }
                Err(HandOver) => {}
            }
        }
        self.eval_interpreted(obj, env)
    }

    /// The text of the integer this expression reads, when it is a plain field of a record
    /// value holding an integer written exactly as the engine writes one (an optional
    /// minus, up to 18 digits, not `-0`): a key's text without parsing the number and
    /// formatting it again into a new string, per event.
    pub(crate) fn integer_field_text<'x>(&'x self, obj: &Obj<'x>) -> Option<&'x str> {
        let (Some(Node::Path(path)), Obj::Source(doc)) = (&self.native, obj) else {
            return None;
        };
        let (prefix, len) = path.prefixes.first()?;
        if *len != path.segments.len() {
            return None;
        }
        let raw = doc.get(prefix)?;
        let digits = raw.strip_prefix('-').unwrap_or(raw);
        let canonical = !digits.is_empty()
            && digits.len() <= 18
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits.len() == 1 || !digits.starts_with('0'))
            && raw != "-0";
        canonical.then_some(raw)
    }

    /// Evaluates the expression with the interpreter alone.
    pub(crate) fn eval_interpreted<'x>(
        &self,
        obj: &Obj<'x>,
        env: &CelEnv,
    ) -> Result<Datum<'x>, String> {
        let resolver = ObjResolver { obj };
        let mut context = cel::Context::with_env(Arc::clone(env));
        context.set_variable_resolver(&resolver);
        match self.program.execute(&context) {
            Ok(value) => Datum::from_cel(value),
            Err(err) => Err(err.to_string()),
        }
    }
}

/// Gives the interpreter the current object's fields as variables, converted on access.
struct ObjResolver<'o, 'x> {
    obj: &'o Obj<'x>,
}

impl VariableResolver for ObjResolver<'_, '_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let value = self.obj.get(variable)?.to_cel();
        let boxed: Box<dyn cel::common::value::Val> = value.try_into().ok()?;
        Some(CowVal::Owned(boxed))
    }
}

/// The native form of an expression.
#[derive(Debug)]
enum Node {
    Const(Datum<'static>),
    Path(Path),
    Not(Box<Node>),
    Neg(Box<Node>),
    Binary(BinaryOp, Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Cond(Box<Node>, Box<Node>, Box<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A qualified name like `a.b.c`. As in the interpreter, the longest prefix that names a
/// field wins (a field literally called `a.b` before field `b` of field `a`), and the rest
/// are selected from its value.
#[derive(Debug)]
struct Path {
    segments: Vec<String>,
    /// The joined prefixes, longest first, with how many segments each spans.
    prefixes: Vec<(String, usize)>,
}

/// The native form of `expr`, if every node of it has one.
fn translate(expr: &Expression, env: &cel::Env) -> Option<Node> {
    match &expr.expr {
        Ast::Literal(literal) => Some(Node::Const(match literal {
            LiteralValue::Boolean(b) => Datum::Bool(*b.inner()),
            LiteralValue::Int(i) => Datum::Int(*i.inner()),
            LiteralValue::UInt(u) => Datum::UInt(*u.inner()),
            LiteralValue::Double(d) => Datum::Float(*d.inner()),
            LiteralValue::String(s) => Datum::Str(Cow::Owned(s.inner().to_string())),
            LiteralValue::Null => Datum::Null,
            LiteralValue::Bytes(_) => return None,
        })),
        Ast::Ident(_) | Ast::Select(_) => translate_path(expr, env).map(Node::Path),
        Ast::Call(call) if call.target.is_none() => {
            let arg = |i: usize| translate(&call.args[i], env).map(Box::new);
            let op = match (call.func_name.as_str(), call.args.len()) {
                ("_&&_", 2) => return Some(Node::And(arg(0)?, arg(1)?)),
                ("_||_", 2) => return Some(Node::Or(arg(0)?, arg(1)?)),
                ("!_", 1) => return Some(Node::Not(arg(0)?)),
                ("-_", 1) => return Some(Node::Neg(arg(0)?)),
                ("_?_:_", 3) => return Some(Node::Cond(arg(0)?, arg(1)?, arg(2)?)),
                ("_+_", 2) => BinaryOp::Add,
                ("_-_", 2) => BinaryOp::Sub,
                ("_*_", 2) => BinaryOp::Mul,
                ("_/_", 2) => BinaryOp::Div,
                ("_%_", 2) => BinaryOp::Rem,
                ("_==_", 2) => BinaryOp::Eq,
                ("_!=_", 2) => BinaryOp::Ne,
                ("_<_", 2) => BinaryOp::Lt,
                ("_<=_", 2) => BinaryOp::Le,
                ("_>_", 2) => BinaryOp::Gt,
                ("_>=_", 2) => BinaryOp::Ge,
                _ => return None,
            };
            Some(Node::Binary(op, arg(0)?, arg(1)?))
        }
        _ => None,
    }
}

fn translate_path(expr: &Expression, env: &cel::Env) -> Option<Path> {
    let mut segments = Vec::new();
    let mut node = expr;
    loop {
        match &node.expr {
            Ast::Ident(name) => {
                segments.push(name.clone());
                break;
            }
            Ast::Select(select) if !select.test => {
                segments.push(select.field.clone());
                node = &select.operand;
            }
            _ => return None,
        }
    }
    segments.reverse();
    let whole = segments.join(".");
    // A leading dot makes a name absolute, and a name that is also a type (`int`, `map`)
    // resolves to that type when no field has it: leave both to the interpreter.
    if whole.starts_with('.') || env.types().find_type(&whole).is_some() {
        return None;
    }
    let prefixes = (1..=segments.len())
        .rev()
        .map(|len| (segments[..len].join("."), len))
        .collect();
    Some(Path { segments, prefixes })
}

/// A CEL error in the native form; the interpreter is asked for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Failed;

/// The native form cannot decide: let the interpreter evaluate the whole expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HandOver;

type Outcome<'x> = Result<Result<Datum<'x>, Failed>, HandOver>;

fn eval_node<'x>(node: &'x Node, obj: &Obj<'x>) -> Outcome<'x> {
    match node {
        Node::Const(Datum::Str(text)) => Ok(Ok(Datum::Str(Cow::Borrowed(text.as_ref())))),
        Node::Const(value) => Ok(Ok(value.clone())),
        Node::Path(path) => Ok(load(path, obj)),
        Node::Not(operand) => Ok(match eval_node(operand, obj)? {
            Ok(Datum::Bool(b)) => Ok(Datum::Bool(!b)),
            Ok(value) if is_container(&value) => return Err(HandOver),
            _ => Err(Failed),
        }),
        Node::Neg(operand) => Ok(match eval_node(operand, obj)? {
            Ok(Datum::Int(i)) => i.checked_neg().map(Datum::Int).ok_or(Failed),
            Ok(Datum::Float(f)) => Ok(Datum::Float(-f)),
            Ok(value) if is_container(&value) => return Err(HandOver),
            _ => Err(Failed),
        }),
        Node::Binary(op, lhs, rhs) => {
            // The interpreter stops at the left operand's error.
            let Ok(lhs) = eval_node(lhs, obj)? else {
                return Ok(Err(Failed));
            };
            let Ok(rhs) = eval_node(rhs, obj)? else {
                return Ok(Err(Failed));
            };
            if is_container(&lhs) || is_container(&rhs) {
                return Err(HandOver);
            }
            Ok(binary(*op, lhs, rhs))
        }
        Node::And(lhs, rhs) => logical(false, lhs, rhs, obj),
        Node::Or(lhs, rhs) => logical(true, lhs, rhs, obj),
        Node::Cond(condition, then, otherwise) => match eval_node(condition, obj)? {
            Ok(Datum::Bool(true)) => eval_node(then, obj),
            Ok(Datum::Bool(false)) => eval_node(otherwise, obj),
            _ => Ok(Err(Failed)),
        },
    }
}

/// `&&` (absorbing `false`) and `||` (absorbing `true`) as the interpreter evaluates
/// them: the absorbing value on either side wins even over an error on the other side;
/// otherwise an error (or a non-bool) on either side is an error.
fn logical<'x>(absorbing: bool, lhs: &'x Node, rhs: &'x Node, obj: &Obj<'x>) -> Outcome<'x> {
    let left = match eval_node(lhs, obj)? {
        Ok(Datum::Bool(b)) => Ok(b),
        _ => Err(Failed),
    };
    if left == Ok(absorbing) {
        return Ok(Ok(Datum::Bool(absorbing)));
    }
    let right = match eval_node(rhs, obj)? {
        Ok(Datum::Bool(b)) => b,
        Ok(_) | Err(Failed) => return Ok(Err(Failed)),
    };
    Ok(match left {
        Ok(_) => Ok(Datum::Bool(right)),
        Err(Failed) if right == absorbing => Ok(Datum::Bool(absorbing)),
        Err(Failed) => Err(Failed),
    })
}

fn is_container(value: &Datum<'_>) -> bool {
    matches!(value, Datum::Raw(_) | Datum::List(_) | Datum::Map(_))
}

fn load<'x>(path: &Path, obj: &Obj<'x>) -> Result<Datum<'x>, Failed> {
    for (prefix, len) in &path.prefixes {
        if let Some(mut value) = obj.get(prefix) {
            for segment in &path.segments[*len..] {
                value = select(value, segment)?;
            }
            return Ok(value);
        }
    }
    Err(Failed)
}

fn select<'x>(value: Datum<'x>, field: &str) -> Result<Datum<'x>, Failed> {
    match value {
        Datum::Raw(raw) if raw.starts_with('{') => super::json::object_get(raw, field)
            .map(Datum::from_raw)
            .ok_or(Failed),
        Datum::Map(entries) => entries
            .into_iter()
            .find(|(key, _)| key == field)
            .map(|(_, value)| value)
            .ok_or(Failed),
        _ => Err(Failed),
    }
}

fn binary<'x>(op: BinaryOp, lhs: Datum<'x>, rhs: Datum<'x>) -> Result<Datum<'x>, Failed> {
    use Datum::{Float, Int, Str, UInt};
    Ok(match op {
        BinaryOp::Eq => Datum::Bool(equals(&lhs, &rhs)),
        BinaryOp::Ne => Datum::Bool(!equals(&lhs, &rhs)),
        BinaryOp::Lt => Datum::Bool(compare(&lhs, &rhs)? == Ordering::Less),
        BinaryOp::Le => Datum::Bool(compare(&lhs, &rhs)? != Ordering::Greater),
        BinaryOp::Gt => Datum::Bool(compare(&lhs, &rhs)? == Ordering::Greater),
        BinaryOp::Ge => Datum::Bool(compare(&lhs, &rhs)? != Ordering::Less),
        BinaryOp::Add => match (lhs, rhs) {
            (Int(a), Int(b)) => Int(a.checked_add(b).ok_or(Failed)?),
            (UInt(a), UInt(b)) => UInt(a.checked_add(b).ok_or(Failed)?),
            (Float(a), Float(b)) => Float(a + b),
            (Str(a), Str(b)) => Str(Cow::Owned(a.into_owned() + &b)),
            _ => return Err(Failed),
        },
        BinaryOp::Sub => match (lhs, rhs) {
            (Int(a), Int(b)) => Int(a.checked_sub(b).ok_or(Failed)?),
            (UInt(a), UInt(b)) => UInt(a.checked_sub(b).ok_or(Failed)?),
            (Float(a), Float(b)) => Float(a - b),
            _ => return Err(Failed),
        },
        BinaryOp::Mul => match (lhs, rhs) {
            (Int(a), Int(b)) => Int(a.checked_mul(b).ok_or(Failed)?),
            (UInt(a), UInt(b)) => UInt(a.checked_mul(b).ok_or(Failed)?),
            (Float(a), Float(b)) => Float(a * b),
            _ => return Err(Failed),
        },
        // checked_div and checked_rem fail on zero and on i64::MIN / -1, as CEL does.
        BinaryOp::Div => match (lhs, rhs) {
            (Int(a), Int(b)) => Int(a.checked_div(b).ok_or(Failed)?),
            (UInt(a), UInt(b)) => UInt(a.checked_div(b).ok_or(Failed)?),
            (Float(a), Float(b)) => Float(a / b),
            _ => return Err(Failed),
        },
        BinaryOp::Rem => match (lhs, rhs) {
            (Int(a), Int(b)) => Int(a.checked_rem(b).ok_or(Failed)?),
            (UInt(a), UInt(b)) => UInt(a.checked_rem(b).ok_or(Failed)?),
            _ => return Err(Failed),
        },
    })
}

/// CEL equality of two scalars: numbers compare by value across int, uint and double (a
/// double never equals NaN); other kinds equal only their own kind.
fn equals(lhs: &Datum<'_>, rhs: &Datum<'_>) -> bool {
    match (lhs, rhs) {
        (Datum::Null, Datum::Null) => true,
        (Datum::Bool(a), Datum::Bool(b)) => a == b,
        (Datum::Str(a), Datum::Str(b)) => a == b,
        _ => compare_numbers(lhs, rhs) == Some(Ok(Ordering::Equal)),
    }
}

/// CEL ordering of two scalars: numbers across kinds, strings by bytes, bools; anything
/// else (null included, or NaN) fails.
fn compare(lhs: &Datum<'_>, rhs: &Datum<'_>) -> Result<Ordering, Failed> {
    match (lhs, rhs) {
        (Datum::Str(a), Datum::Str(b)) => Ok(a.as_ref().cmp(b.as_ref())),
        (Datum::Bool(a), Datum::Bool(b)) => Ok(a.cmp(b)),
        _ => compare_numbers(lhs, rhs).unwrap_or(Err(Failed)),
    }
}

/// The order of two numbers as the interpreter finds it (an int and a double compare as
/// two doubles); `None` when either is not a number, `Some(Err)` for NaN.
fn compare_numbers(lhs: &Datum<'_>, rhs: &Datum<'_>) -> Option<Result<Ordering, Failed>> {
    use Datum::{Float, Int, UInt};
    let floats = |a: f64, b: f64| a.partial_cmp(&b).ok_or(Failed);
    Some(match (lhs, rhs) {
        (Int(a), Int(b)) => Ok(a.cmp(b)),
        (Int(a), UInt(b)) => Ok(u64::try_from(*a).map_or(Ordering::Less, |a| a.cmp(b))),
        (Int(a), Float(b)) => floats(*a as f64, *b),
        (UInt(a), UInt(b)) => Ok(a.cmp(b)),
        (UInt(a), Int(b)) => Ok(i64::try_from(*a).map_or(Ordering::Greater, |a| a.cmp(b))),
        (UInt(a), Float(b)) => floats(*a as f64, *b),
        (Float(a), Float(b)) => floats(*a, *b),
        (Float(a), Int(b)) => floats(*a, *b as f64),
        (Float(a), UInt(b)) => floats(*a, *b as f64),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::json::index_object;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    fn compile(source: &str) -> Expr {
        Expr::compile(source, &cel_env()).unwrap_or_else(|err| panic!("{source}: {err:?}"))
    }

    fn eval_on(source: &str, object: &str) -> Result<Datum<'static>, String> {
        let expr = compile(source);
        let mut spans = Vec::new();
        let doc = index_object(object.as_bytes(), &mut spans).unwrap();
        expr.eval(&Obj::Source(doc), &cel_env())
            .map(Datum::into_owned)
    }

    #[test]
    fn integer_fields_lend_their_text_only_when_it_is_the_written_form() {
        let text_of = |source: &str, object: &str| -> (Option<String>, Result<String, String>) {
            let expr = compile(source);
            let mut spans = Vec::new();
            let doc = index_object(object.as_bytes(), &mut spans).unwrap();
            let obj = Obj::Source(doc);
            let general = expr
                .eval(&obj, &cel_env())
                .and_then(Datum::into_key_text)
                .map(|text| text.into_owned());
            (expr.integer_field_text(&obj).map(str::to_string), general)
        };
        for (source, object) in [
            ("id", r#"{"id": 0}"#),
            ("id", r#"{"id": -5}"#),
            ("id", r#"{"id": 123456789012345678}"#),
            ("a.b", r#"{"a.b": 42, "a": {"b": 7}}"#),
        ] {
            let (fast, general) = text_of(source, object);
            assert_eq!(
                fast.as_deref().map(Ok),
                Some(general.as_deref()),
                "{object}"
            );
        }
        for (source, object) in [
            ("id", r#"{"id": 1234567890123456789}"#),
            ("id", r#"{"id": -0}"#),
            ("id", r#"{"id": 1.5}"#),
            ("id", r#"{"id": 1e3}"#),
            ("id", r#"{"id": "12"}"#),
            ("id", r#"{"other": 12}"#),
            ("a.b", r#"{"a": {"b": 7}}"#),
            ("id + 1", r#"{"id": 12}"#),
        ] {
            assert_eq!(text_of(source, object).0, None, "{source} over {object}");
        }
        assert_eq!(text_of("id", r#"{"id": -0}"#).1.as_deref(), Ok("0"));
    }

    #[test]
    fn common_shapes_are_native() {
        for source in [
            "card_id",
            "a.b.c",
            "amount > 0 && status == 'succeeded'",
            "!(x < 1.5) || y != null",
            "a * 2 + b / 3 - c % 4",
            "-a",
            "t ? a : b",
            "3u + u",
        ] {
            assert!(compile(source).is_native(), "{source}");
        }
        for source in [
            "size(s)",
            "has(a.b)",
            "s.startsWith('x')",
            "a in [1]",
            "[a]",
            "b'x'",
            "int",
        ] {
            assert!(!compile(source).is_native(), "{source}");
        }
    }

    #[test]
    fn reads_fields_as_cel_does() {
        let object = r#"{"a":{"b":1},"a.b":2,"s":"x\u00e9","l":[1,2],"big":1e3,"int":5}"#;
        assert_eq!(eval_on("a.b", object), Ok(Datum::Int(2)));
        assert_eq!(
            eval_on("a", object).unwrap(),
            Datum::Map(vec![("b".into(), Datum::Int(1))])
        );
        assert_eq!(eval_on("s + '!'", object), Ok(Datum::Str("xé!".into())));
        assert_eq!(eval_on("big == 1000", object), Ok(Datum::Bool(true)));
        assert_eq!(eval_on("l == [1, 2]", object), Ok(Datum::Bool(true)));
        assert_eq!(eval_on("int", object), Ok(Datum::Int(5)));
        assert!(eval_on("missing", object).unwrap_err().contains("missing"));
        assert!(eval_on("a.c", object).is_err());
        assert!(eval_on("s.b", object).is_err());
    }

    #[test]
    fn refuses_trees_deeper_than_the_limit() {
        let chain = |n: usize| format!("a{}", " + a".repeat(n - 1));
        // n terms chained to the left: n - 1 additions deep, plus the leaf.
        assert!(Expr::compile(&chain(EXPRESSION_DEPTH_MAX), &cel_env()).is_ok());
        assert!(matches!(
            Expr::compile(&chain(EXPRESSION_DEPTH_MAX + 1), &cel_env()),
            Err(ExprCompileError::Invalid(m)) if m.contains("33 levels deep")
        ));
        // The longest chain validation accepts is refused, not evaluated.
        let longest = chain(weir_core::spec::cel::EXPRESSION_LEN_MAX_BYTES / 4);
        assert!(matches!(
            Expr::compile(&longest, &cel_env()),
            Err(ExprCompileError::Invalid(m)) if m.contains("levels deep")
        ));
    }

    /// The deepest expression of a shape that compiles: `build(n)` for the largest `n`.
    fn deepest(build: impl Fn(usize) -> String) -> String {
        let mut best = None;
        for n in 1..200 {
            let source = build(n);
            match Expr::compile(&source, &cel_env()) {
                Ok(_) => best = Some(source),
                Err(_) => break,
            }
        }
        best.expect("even the shallowest expression failed to compile")
    }

    /// The stack evaluation may use, at most, so that a 2 MiB thread keeps half a MiB for
    /// whatever drives the pipeline.
    const EVAL_STACK_BUDGET_BYTES: usize = 1536 * 1024;

    #[test]
    fn the_deepest_expressions_evaluate_within_the_stack_budget() {
        let shapes: Vec<(&str, String)> = vec![
            (
                "native chain",
                deepest(|n| format!("a{}", " + a".repeat(n))),
            ),
            (
                "call chain",
                deepest(|n| format!("int(a){}", " + int(a)".repeat(n))),
            ),
            (
                "nested calls",
                deepest(|n| format!("{}a{}", "int(".repeat(n), ")".repeat(n))),
            ),
            (
                "nested conditionals",
                deepest(|n| format!("{}int(a){}", "t ? (".repeat(n), ") : 0".repeat(n))),
            ),
            (
                "nested lists",
                deepest(|n| format!("size({}a{})", "[".repeat(n), "]".repeat(n))),
            ),
            (
                "nested maps",
                deepest(|n| format!("size({}a{})", "{'k': ".repeat(n), "}".repeat(n))),
            ),
            (
                "nested comprehensions",
                deepest(|n| format!("{}a{}", "[1].map(q, ".repeat(n), ")".repeat(n))),
            ),
            (
                "nested exists",
                deepest(|n| format!("{}t{}", "[1].exists(q, ".repeat(n), ")".repeat(n))),
            ),
            (
                "selection chain",
                deepest(|n| format!("has(o{})", ".o".repeat(n))),
            ),
            ("index chain", deepest(|n| format!("l{}", "[0]".repeat(n)))),
        ];
        let object = r#"{"a":1,"t":true,"o":{"o":{"o":{}}},"l":[[[[1]]]]}"#;
        let handle = std::thread::Builder::new()
            .stack_size(EVAL_STACK_BUDGET_BYTES)
            .spawn(move || {
                let env = cel_env();
                for (name, source) in &shapes {
                    let expr = compile(source);
                    let mut spans = Vec::new();
                    let doc = index_object(object.as_bytes(), &mut spans).unwrap();
                    // Errors are fine (an index out of range, say); finishing is the test.
                    let _ = expr.eval(&Obj::Source(doc), &env);
                    let _ = expr.eval_interpreted(&Obj::Source(doc), &env);
                    let depth = weir_core::spec::cel::expression_depth(expr.program.expression());
                    eprintln!("{name}: depth {depth}");
                    assert!(depth <= EXPRESSION_DEPTH_MAX, "{name}");
                }
            })
            .unwrap();
        handle.join().unwrap();
    }

    /// Generates a random expression over the fields of [`random_object`].
    fn random_expr(rng: &mut SmallRng, depth: u32, out: &mut String) {
        const ATOMS: &[&str] = &[
            "i",
            "j",
            "f",
            "g",
            "s",
            "r",
            "t",
            "n",
            "u",
            "o.x",
            "o.y.z",
            "o.w",
            "m",
            "arr",
            "o",
            "`a.b`",
            "a.b",
            "0",
            "1",
            "-1",
            "7",
            "9223372036854775807",
            "-9223372036854775808",
            "0.0",
            "-0.0",
            "1.5",
            "2.0",
            "1e300",
            "3u",
            "0u",
            "'x'",
            "'é'",
            "''",
            "true",
            "false",
            "null",
        ];
        const BINARY: &[&str] = &[
            "+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=", "&&", "||",
        ];
        let choice = if depth == 0 { 0 } else { rng.gen_range(0..10) };
        match choice {
            0..=3 => {
                let atom = ATOMS[rng.gen_range(0..ATOMS.len())];
                // Backquotes are not CEL: the dotted field is only reachable as `a.b`.
                out.push_str(if atom == "`a.b`" { "a.b" } else { atom });
            }
            4 => {
                out.push_str(["!", "-"][rng.gen_range(0..2)]);
                out.push('(');
                random_expr(rng, depth - 1, out);
                out.push(')');
            }
            5 => {
                out.push('(');
                random_expr(rng, depth - 1, out);
                out.push_str(") ? (");
                random_expr(rng, depth - 1, out);
                out.push_str(") : (");
                random_expr(rng, depth - 1, out);
                out.push(')');
            }
            _ => {
                out.push('(');
                random_expr(rng, depth - 1, out);
                out.push_str(") ");
                out.push_str(BINARY[rng.gen_range(0..BINARY.len())]);
                out.push_str(" (");
                random_expr(rng, depth - 1, out);
                out.push(')');
            }
        }
    }

    /// A random object with fields of every kind, each sometimes missing.
    fn random_object(rng: &mut SmallRng) -> String {
        let ints = [
            "0",
            "1",
            "-1",
            "2",
            "7",
            "9223372036854775807",
            "-9223372036854775808",
            "-0",
        ];
        let floats = [
            "0.0",
            "-0.0",
            "1.5",
            "2.0",
            "1e300",
            "-2.5e-3",
            "9007199254740993.0",
            "1",
        ];
        let strings = [r#""""#, r#""x""#, r#""é""#, r#""a\"b""#, r#""\u00e9""#];
        let mut fields = Vec::new();
        let mut add = |rng: &mut SmallRng, name: &str, values: &[&str]| {
            if rng.gen_bool(0.9) {
                fields.push(format!(
                    "\"{name}\":{}",
                    values[rng.gen_range(0..values.len())]
                ));
            }
        };
        add(rng, "i", &ints);
        add(rng, "j", &ints);
        add(rng, "f", &floats);
        add(rng, "g", &floats);
        add(rng, "s", &strings);
        add(rng, "r", &strings);
        add(rng, "t", &["true", "false"]);
        add(rng, "n", &["null", "0", "true"]);
        add(rng, "u", &["18446744073709551615", "3", "true"]);
        add(
            rng,
            "o",
            &[
                r#"{"x":1,"y":{"z":"s"}}"#,
                r#"{"x":2.5}"#,
                "[1]",
                "3",
                r#"{"x":1,"x":2}"#,
            ],
        );
        add(rng, "arr", &["[1,2]", "[]", r#"[{"a":1}]"#]);
        add(rng, "a", &[r#"{"b":1}"#, "5"]);
        add(rng, "a.b", &["9", r#""dotted""#]);
        format!("{{{}}}", fields.join(","))
    }

    /// Equality that tells -0.0 from 0.0 and lets NaN equal NaN.
    fn same(a: &Datum<'_>, b: &Datum<'_>) -> bool {
        match (a, b) {
            (Datum::Float(x), Datum::Float(y)) => {
                x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
            }
            (Datum::List(x), Datum::List(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
            }
            (Datum::Map(x), Datum::Map(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| a.0 == b.0 && same(&a.1, &b.1))
            }
            _ => a == b,
        }
    }

    #[test]
    fn the_native_form_agrees_with_the_interpreter() {
        let env = cel_env();
        let mut rng = SmallRng::seed_from_u64(2024);
        let (mut compared, mut handed_over, mut failed) = (0, 0, 0);
        for _ in 0..3_000 {
            let mut source = String::new();
            let depth = rng.gen_range(1..5);
            random_expr(&mut rng, depth, &mut source);
            let Ok(expr) = Expr::compile(&source, &env) else {
                continue;
            };
            let native = expr
                .native
                .as_ref()
                .unwrap_or_else(|| panic!("not native: {source}"));
            for _ in 0..8 {
                let object = random_object(&mut rng);
                let mut spans = Vec::new();
                let doc = index_object(object.as_bytes(), &mut spans).unwrap();
                // The same object as built fields, as after a map stage.
                let built: Vec<(&str, Datum<'_>)> = [
                    "i", "j", "f", "g", "s", "r", "t", "n", "u", "o", "arr", "a", "a.b",
                ]
                .iter()
                .filter_map(|name| doc.get(name).map(|raw| (*name, Datum::from_raw(raw))))
                .collect();
                for obj in [Obj::Source(doc), Obj::Fields(built)] {
                    let interpreted = expr.eval_interpreted(&obj, &env);
                    match eval_node(native, &obj) {
                        Err(HandOver) => handed_over += 1,
                        Ok(Ok(value)) => {
                            let theirs = interpreted.unwrap_or_else(|err| {
                                panic!("{source} on {object}: native {value:?}, interpreter {err}")
                            });
                            let ours = value.into_owned();
                            assert!(
                                same(&ours, &theirs),
                                "{source} on {object}: native {ours:?}, interpreter {theirs:?}"
                            );
                            compared += 1;
                        }
                        Ok(Err(Failed)) => {
                            assert!(
                                interpreted.is_err(),
                                "{source} on {object}: native failed, interpreter {interpreted:?}"
                            );
                            failed += 1;
                        }
                    }
                }
            }
        }
        eprintln!("compared {compared}, failed {failed}, handed over {handed_over}");
        assert!(compared > 10_000, "compared {compared}");
        assert!(failed > 5_000, "failed {failed}");
        assert!(handed_over < compared / 5, "handed over {handed_over}");
    }
}
