//! Compiling the CEL expressions a job spec carries (filters, map outputs, dedupe keys,
//! key_by and aggregate arguments). Validation compiles every expression at submit time so
//! a typo is a 400 naming the stage, not a stream of dead letters; the worker compiles the
//! same text with the same function, so what was accepted is exactly what runs.
//!
//! The `cel` crate's parser recurses deeply: in a debug build one level of brackets costs it
//! about 150 KiB of stack, so a modest `((((...))))` would overflow a 2 MiB tokio or test
//! thread and abort the process. Compiling therefore runs on a thread of its own with a
//! stack sized for the bounds below, which hold for any input.

use ::cel::common::ast::{EntryExpr, Expr};
use ::cel::parser::Expression;
use std::thread;

/// The longest expression a spec may carry, in bytes. It bounds the parser's work and the
/// depth of long operator chains; real filters and projections are far shorter.
pub const EXPRESSION_LEN_MAX_BYTES: usize = 4096;

/// The deepest nesting of sub-expressions (brackets, calls, list and map literals) allowed,
/// well under the parser's own limit of 96, to bound the stack compiling needs.
pub const EXPRESSION_NESTING_MAX: u16 = 32;

/// The deepest syntax tree an expression may have, counting every node on the longest
/// path from the root (after macro expansion): `a` is 1 deep, `a + b` 2, `a + b + c` 3.
/// The interpreter recurses once per level, so this bounds the stack evaluation needs; a
/// flat chain like `a + a + ... + a` has no brackets but is as deep as it is long.
pub const EXPRESSION_DEPTH_MAX: usize = 32;

/// The stack of the compiling thread. Measured in a debug build: 32 levels of the costliest
/// nesting need under 8 MiB, a maximal operator chain under 8 MiB; this leaves room to spare.
/// Only the pages touched are ever committed.
const COMPILE_STACK_BYTES: usize = 64 * 1024 * 1024;

/// Compiles one CEL expression with the standard environment.
///
/// The error is one line, fit for an API error message: the parser's complaints joined, each
/// with its line and column in `src`.
pub fn compile_expression(src: &str) -> Result<::cel::Program, String> {
    if src.len() > EXPRESSION_LEN_MAX_BYTES {
        return Err(format!(
            "expression is {} bytes long; the limit is {EXPRESSION_LEN_MAX_BYTES}",
            src.len()
        ));
    }
    if src.trim().is_empty() {
        return Err("expression is empty".to_string());
    }
    thread::scope(|scope| {
        let compiler = thread::Builder::new()
            .name("weir-cel-compile".to_string())
            .stack_size(COMPILE_STACK_BYTES)
            .spawn_scoped(scope, || compile_on_this_thread(src))
            .map_err(|err| format!("could not start the expression compiler: {err}"))?;
        compiler
            .join()
            .map_err(|_| "the expression compiler failed on this expression".to_string())?
    })
}

/// Compiles `src` on the calling thread, which must have [`COMPILE_STACK_BYTES`] of stack.
fn compile_on_this_thread(src: &str) -> Result<::cel::Program, String> {
    // `Program::compile` offers no nesting limit of its own choosing, so a first parse with
    // the tighter limit rejects deep input before it builds the program.
    ::cel::parser::Parser::new()
        .max_recursion_depth(EXPRESSION_NESTING_MAX)
        .parse(src)
        .map_err(|errors| describe(&errors))?;
    let program = ::cel::Program::compile(src).map_err(|errors| describe(&errors))?;
    let depth = expression_depth(program.expression());
    if depth > EXPRESSION_DEPTH_MAX {
        return Err(format!(
            "the expression is {depth} levels deep; the limit is {EXPRESSION_DEPTH_MAX}"
        ));
    }
    Ok(program)
}

/// The depth of a syntax tree, found without recursion (the tree may be deep: that is
/// what is being measured).
pub fn expression_depth<'e>(root: &'e Expression) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(root, 1usize)];
    while let Some((node, depth)) = pending.pop() {
        deepest = deepest.max(depth);
        let mut push = |child: &'e Expression| pending.push((child, depth + 1));
        match &node.expr {
            Expr::Call(call) => {
                if let Some(target) = &call.target {
                    push(target);
                }
                call.args.iter().for_each(&mut push);
            }
            Expr::Select(select) => push(&select.operand),
            Expr::List(list) => list.elements.iter().for_each(&mut push),
            Expr::Map(map) => {
                for entry in &map.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(entry) => {
                            push(&entry.key);
                            push(&entry.value);
                        }
                        EntryExpr::StructField(field) => push(&field.value),
                    }
                }
            }
            Expr::Struct(structure) => {
                for entry in &structure.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(entry) => {
                            push(&entry.key);
                            push(&entry.value);
                        }
                        EntryExpr::StructField(field) => push(&field.value),
                    }
                }
            }
            Expr::Comprehension(comprehension) => {
                push(&comprehension.iter_range);
                push(&comprehension.accu_init);
                push(&comprehension.loop_cond);
                push(&comprehension.loop_step);
                push(&comprehension.result);
            }
            Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
    deepest
}

fn describe(errors: &::cel::ParseErrors) -> String {
    if errors.errors.is_empty() {
        return "invalid CEL expression".to_string();
    }
    // The parser reports its nesting limit as a debug dump followed by knock-on errors;
    // one plain sentence says it better.
    if errors
        .errors
        .iter()
        .any(|error| error.msg.contains("Recursion limit"))
    {
        return format!(
            "invalid CEL expression: nested deeper than {EXPRESSION_NESTING_MAX} levels"
        );
    }
    let parts: Vec<String> = errors
        .errors
        .iter()
        .map(|error| {
            let message = error.msg.split_whitespace().collect::<Vec<_>>().join(" ");
            format!(
                "{message} (line {}, column {})",
                error.pos.0,
                error.pos.1.max(1)
            )
        })
        .collect();
    format!("invalid CEL expression: {}", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_the_contract_expressions() {
        for src in [
            "amount > 0 && status == 'succeeded'",
            "card_id",
            "event_id",
            "count >= 5",
            "key + ':' + string(window_start) + string(window_end)",
            "has(meta.region) ? meta.region : 'unknown'",
            "items.exists(i, i.price > 100)",
        ] {
            assert!(compile_expression(src).is_ok(), "{src}");
        }
    }

    #[test]
    fn rejects_syntax_errors_with_a_one_line_message() {
        for src in [
            "",
            "   ",
            "amount >",
            "(",
            ")",
            "'unterminated",
            "a.",
            "a b",
            "1 +* 2",
            "if",
        ] {
            let err = compile_expression(src).err().unwrap_or_default();
            assert!(!err.is_empty(), "{src:?} compiled");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn bounds_hostile_input() {
        let long = "a".repeat(EXPRESSION_LEN_MAX_BYTES + 1);
        assert!(compile_expression(&long).unwrap_err().contains("limit"));

        // Deep nesting of any kind is rejected, never overflowing the stack.
        let depth = EXPRESSION_LEN_MAX_BYTES / 2 - 1;
        for (open, close) in [("(", ")"), ("[", "]"), ("{1:", "}"), ("f(", ")")] {
            let nested = open.repeat(depth) + "1" + &close.repeat(depth);
            let nested = &nested[..nested.len().min(EXPRESSION_LEN_MAX_BYTES)];
            let err = compile_expression(nested).unwrap_err();
            assert!(!err.is_empty(), "{open}");
        }
        // Long flat chains are refused for their depth (the interpreter recurses once per
        // level), never overflowing the stack; the parser balances `&&` chains and folds
        // repeated negation, so those stay shallow and legal.
        for (first, link) in [("1", "+1"), ("a", ".a"), ("a", "&&a"), ("-", "-")] {
            let chain =
                first.to_string() + &link.repeat((EXPRESSION_LEN_MAX_BYTES - 2) / link.len());
            let chain = chain.trim_end_matches('-').to_string() + "1";
            let chain = if first == "-" {
                chain
            } else {
                chain[..chain.len() - 1].to_string()
            };
            assert!(chain.len() <= EXPRESSION_LEN_MAX_BYTES);
            match compile_expression(&chain) {
                Ok(_) => assert!(matches!(link, "&&a" | "-"), "{first}{link}..."),
                Err(e) => assert!(e.contains("levels deep"), "{first}{link}...: {e}"),
            }
        }
    }

    #[test]
    fn nesting_is_limited_to_its_documented_depth() {
        let nested = |depth: u16| {
            let depth = usize::from(depth);
            "(".repeat(depth) + "1" + &")".repeat(depth)
        };
        assert!(compile_expression(&nested(EXPRESSION_NESTING_MAX - 1)).is_ok());
        let err = compile_expression(&nested(EXPRESSION_NESTING_MAX + 1)).unwrap_err();
        assert!(err.contains("nested deeper than 32 levels"), "{err}");
    }

    #[test]
    fn programs_can_move_between_threads() {
        fn is_send<T: Send>(_: &T) {}
        let program = compile_expression("amount > 0").unwrap();
        is_send(&program);
    }
}
