//! `docs/protocol.schema.json` matches the schema generated from the message types in
//! `switchyard-proto`, so `cargo test --workspace` fails when a message changes and its schema
//! does not.
//!
//! The check compares parsed JSON, so only a difference in content fails it. With
//! `UPDATE_SCHEMA=1` the test writes the generated schema to the file instead of comparing.

use std::path::PathBuf;

use serde_json::Value;
use switchyard_proto::schema::protocol_schema;

const REGENERATE: &str =
    "UPDATE_SCHEMA=1 cargo test -p switchyard-e2e --test protocol_schema_is_current";

#[test]
fn committed_schema_matches_generated() {
    let path = schema_path();
    let generated = protocol_schema();

    if std::env::var_os("UPDATE_SCHEMA").is_some_and(|value| value == "1") {
        let mut text = serde_json::to_string_pretty(&generated).expect("a JSON value serializes");
        text.push('\n');
        std::fs::write(&path, text)
            .unwrap_or_else(|error| panic!("writing {} failed: {error}", path.display()));
        return;
    }

    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "reading {} failed: {error}; generate it with `{REGENERATE}`",
            path.display()
        )
    });
    let committed: Value = serde_json::from_str(&text).unwrap_or_else(|error| {
        panic!(
            "{} is not valid JSON: {error}; regenerate it with `{REGENERATE}`",
            path.display()
        )
    });
    assert!(
        committed == generated,
        "{} differs from the schema generated from switchyard-proto; regenerate it with \
         `{REGENERATE}`",
        path.display()
    );
}

fn schema_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.schema.json")
}
