//! Golden files for format tests: each crate pins the exact bytes of its persisted and
//! wire formats in files under its `tests/golden/`, so that a changed encoding fails a
//! test until it is regenerated on purpose (set [`UPDATE_ENV`]) and reviewed as a format
//! change. Only tests use it (the `golden-files` feature, turned on by dev-dependencies;
//! the deployed `weir` is built without it).

#![allow(clippy::disallowed_methods)] // test support: reads and writes the golden files

use std::path::Path;

/// Set to regenerate the golden files from the code instead of checking against them.
pub const UPDATE_ENV: &str = "WEIR_UPDATE_GOLDEN";

/// Checks `bytes` against the golden file `dir/name` (or writes it there first, under
/// [`UPDATE_ENV`]) and returns the file's bytes, for the decoding half of a test.
///
/// # Panics
/// When the file is missing or differs from `bytes`: that is the test failing.
pub fn check(dir: &Path, name: &str, bytes: &[u8]) -> Vec<u8> {
    let path = dir.join(name);
    if std::env::var_os(UPDATE_ENV).is_some() {
        std::fs::write(&path, bytes)
            .unwrap_or_else(|e| panic!("{}: {e} (writing it)", path.display()));
    }
    let file = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with {UPDATE_ENV}=1 to create it)",
            path.display()
        )
    });
    assert!(
        file == bytes,
        "{name}: the encoding changed; if on purpose, regenerate with {UPDATE_ENV}=1, review \
         it as a format change and bump the format version if older data no longer reads\n\
         now:\n{}",
        String::from_utf8_lossy(bytes)
    );
    file
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matching_file_passes_and_a_different_one_fails() {
        let dir = std::env::temp_dir().join(format!("weir-golden-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a"), b"one").unwrap();
        assert_eq!(check(&dir, "a", b"one"), b"one");
        let differs = std::panic::catch_unwind(|| check(&dir, "a", b"two"));
        let missing = std::panic::catch_unwind(|| check(&dir, "b", b"one"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(differs.is_err() && missing.is_err());
    }
}
