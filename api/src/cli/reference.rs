//! The command-line reference (docs/CLI.md) rendered from the argument definitions
//! themselves, so the document cannot drift from the code: a test compares the two, and
//! `WEIR_UPDATE_DOCS=1 cargo test -p weir-api --test docs_reference` rewrites it.

use clap::{Arg, Command};
use std::fmt::Write;

/// Markdown for `command` and every subcommand below it, headed by its full name.
pub fn markdown(command: &Command) -> String {
    let mut out = String::new();
    render(command, command.get_name(), &mut out);
    out
}

fn render(command: &Command, path: &str, out: &mut String) {
    let _ = writeln!(out, "### `{path}`\n");
    if let Some(about) = command.get_long_about().or(command.get_about()) {
        let _ = writeln!(out, "{}\n", about.to_string().trim());
    }
    let args: Vec<&Arg> = command
        .get_arguments()
        .filter(|a| !a.is_hide_set() && a.get_id() != "help" && a.get_id() != "version")
        .collect();
    if !args.is_empty() {
        let _ = writeln!(out, "| argument | default | meaning |\n| --- | --- | --- |");
        for arg in args {
            let _ = writeln!(out, "| {} | {} | {} |", name(arg), default(arg), help(arg));
        }
        out.push('\n');
    }
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        render(sub, &format!("{path} {}", sub.get_name()), out);
    }
}

fn name(arg: &Arg) -> String {
    let value = arg
        .get_value_names()
        .and_then(|v| v.first())
        .map(|v| format!(" <{v}>"))
        .unwrap_or_default();
    let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
    let shown = match arg.get_long() {
        Some(long) if takes_value => format!("--{long}{value}"),
        Some(long) => format!("--{long}"),
        None => format!("<{}>", arg.get_id().as_str().to_uppercase()),
    };
    let env = arg
        .get_env()
        .map(|e| format!(" (env `{}`)", e.to_string_lossy()))
        .unwrap_or_default();
    format!("`{shown}`{env}")
}

fn default(arg: &Arg) -> String {
    let values: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if values.is_empty() {
        if arg.is_required_set() {
            "required".into()
        } else {
            String::new()
        }
    } else {
        format!("`{}`", values.join(","))
    }
}

fn help(arg: &Arg) -> String {
    let text = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let mut text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let possible: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| format!("`{}`", v.get_name()))
        .collect();
    if !possible.is_empty() && arg.get_num_args().is_some_and(|n| n.takes_values()) {
        let _ = write!(text, " One of {}.", possible.join(", "));
    }
    text.replace('|', "\\|")
}
