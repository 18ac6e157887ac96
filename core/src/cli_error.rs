//! One sentence from a clap error, shared by the `weir` and `weir-sim` binaries: clap's
//! first line alone ("the following required arguments were not provided:") names no
//! argument, so the message is taken up to its usage and tips, on one line.

/// clap's rendered error as one line, without its `error:` prefix, usage and tips.
pub fn one_sentence(rendered: &str) -> String {
    let mut parts = Vec::new();
    for line in rendered.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("tip:") || line.starts_with("For more") {
            break;
        }
        if !line.is_empty() {
            parts.push(line.trim_start_matches("error: ").to_string());
        }
    }
    if parts.is_empty() {
        "invalid arguments".into()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::one_sentence;

    #[test]
    fn a_missing_argument_is_named() {
        let rendered = "error: the following required arguments were not provided:\n  \
                        --data-dir <DATA_DIR>\n\nUsage: weir coordinator --data-dir <DATA_DIR>\n\n\
                        For more information, try '--help'.\n";
        assert_eq!(
            one_sentence(rendered),
            "the following required arguments were not provided: --data-dir <DATA_DIR>"
        );
        assert_eq!(one_sentence(""), "invalid arguments");
    }
}
