//! The reference documents are tested against the code: docs/CLI.md holds the argument
//! tables rendered from the command-line definitions (`weir` and `weir-sim`), every route
//! the API serves is documented in docs/HTTP_API.md, and no file of the project cites a file
//! outside the repository. `WEIR_UPDATE_DOCS=1` rewrites the generated part of docs/CLI.md.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use clap::{Args, CommandFactory};
use std::path::{Path, PathBuf};

const BEGIN: &str = "<!-- begin generated: cargo test -p weir-api --test docs_reference -->";
const END: &str = "<!-- end generated -->";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn generated_cli_reference() -> String {
    let mut weir = weir_api::cli::Cli::command();
    let mut sim = weir_simulation::cli::SimArgs::augment_args(
        clap::Command::new("weir-sim")
            .about("The simulation binary `weir sim` runs, with the same arguments."),
    );
    // Value names and the like are filled in when a command is built.
    weir.build();
    sim.build();
    format!(
        "{}\n{}",
        weir_api::cli::reference::markdown(&weir),
        weir_api::cli::reference::markdown(&sim)
    )
}

#[test]
fn the_cli_reference_is_the_code() {
    let path = repo().join("docs/CLI.md");
    let doc = std::fs::read_to_string(&path).expect("docs/CLI.md");
    let (Some(begin), Some(end)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("docs/CLI.md lacks its generated section markers");
    };
    let current = &doc[begin + BEGIN.len()..end];
    let wanted = format!("\n\n{}\n", generated_cli_reference().trim_end());
    if current != wanted {
        if std::env::var_os("WEIR_UPDATE_DOCS").is_some() {
            let updated = format!("{}{BEGIN}{wanted}{}", &doc[..begin], &doc[end..]);
            std::fs::write(&path, updated).expect("write docs/CLI.md");
            return;
        }
        panic!(
            "docs/CLI.md does not match the command-line definitions; run \
             WEIR_UPDATE_DOCS=1 cargo test -p weir-api --test docs_reference"
        );
    }
}

/// (method, path) of every route in the API's router source.
fn routes() -> Vec<(String, String)> {
    let source = std::fs::read_to_string(repo().join("coordinator/src/http/mod.rs")).unwrap();
    // Only the router's own body: other `.route(` calls (none today) are not routes served.
    let start = source.find("pub fn router(").expect("the router function");
    let body = &source[start..];
    let body = &body[..body.find("\n}\n").unwrap_or(body.len())];
    let flat: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = Vec::new();
    for piece in flat.split(".route(").skip(1) {
        let Some(path) = piece.split('"').nth(1) else {
            continue;
        };
        // The handlers up to the route's closing parenthesis: `get(..).post(..)`.
        let mut depth = 1;
        let mut end = piece.len();
        for (i, c) in piece.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        for method in ["get", "post", "put", "delete", "patch"] {
            let called = piece[..end].contains(&format!(" {method}("))
                || piece[..end].contains(&format!(".{method}("))
                || piece[..end].contains(&format!(", {method}("));
            if called {
                out.push((method.to_uppercase(), path.to_string()));
            }
        }
    }
    out
}

#[test]
fn every_route_is_in_the_http_reference() {
    let doc = std::fs::read_to_string(repo().join("docs/HTTP_API.md")).expect("docs/HTTP_API.md");
    let routes = routes();
    assert!(routes.len() >= 15, "found only {routes:?}");
    let missing: Vec<String> = routes
        .iter()
        .map(|(m, p)| format!("`{m} {p}`"))
        .filter(|r| !doc.contains(r.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/HTTP_API.md does not document {missing:?}"
    );
}

#[test]
fn no_file_cites_a_file_outside_the_repository() {
    let listed = std::process::Command::new("git")
        .args(["ls-files", "-co", "--exclude-standard"])
        .current_dir(repo())
        .output()
        .expect("git ls-files");
    let mut citing = Vec::new();
    for file in String::from_utf8_lossy(&listed.stdout).lines() {
        let Ok(text) = std::fs::read_to_string(repo().join(file)) else {
            continue; // binary or removed
        };
        // Spelled in two halves so that this file does not cite it either.
        let outside = ["CONTRACT", ".md"].concat();
        let quoted = ["(CONTRACT", ":"].concat();
        if text.contains(&outside)
            || text.contains(&quoted)
            || text.contains(&["../", "shared/"].concat())
        {
            citing.push(file.to_string());
        }
    }
    assert!(
        citing.is_empty(),
        "these cite files outside the repository: {citing:?}"
    );
}
