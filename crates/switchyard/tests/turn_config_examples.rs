//! Every example relay config in the repository's `turn-config/` directory loads with the
//! binary's TURN config loader and passes the relay's validation, so the examples keep up with
//! the config format.

use std::path::{Path, PathBuf};

use switchyard::turn_config;

/// Minimum number of example files, so that a wrong path cannot pass with nothing checked.
const MIN_EXAMPLES: usize = 6;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../turn-config")
}

/// Returns every `.toml` file under `dir`, subdirectories included, sorted.
fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()));
    for entry in entries {
        let path = entry.expect("read a directory entry").path();
        if path.is_dir() {
            files.extend(toml_files(&path));
        } else if path
            .extension()
            .is_some_and(|extension| extension == "toml")
        {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Returns the error and its sources, separated by colons.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[test]
fn examples_load_and_validate() {
    let files = toml_files(&examples_dir());
    assert!(
        files.len() >= MIN_EXAMPLES,
        "expected at least {MIN_EXAMPLES} examples, found {files:?}"
    );
    for path in &files {
        let config =
            turn_config::load(path).unwrap_or_else(|error| panic!("{}", error_chain(&error)));
        config
            .validate()
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    }
}

#[test]
fn example_relays_share_one_secret() {
    let dir = examples_dir().join("three-relays");
    let files = toml_files(&dir);
    assert_eq!(files.len(), 3, "{files:?}");

    let secrets: Vec<Vec<String>> = files
        .iter()
        .map(|path| turn_config::load(path).unwrap().static_auth_secrets)
        .collect();
    assert!(!secrets[0].is_empty());
    assert_eq!(secrets[1], secrets[0]);
    assert_eq!(secrets[2], secrets[0]);
}
