//! JSON Schema of the signaling protocol, generated from the message types with `schemars`.
//!
//! `docs/protocol.schema.json` is the output of [`protocol_schema`], and a test in `tests/`
//! fails when the committed file differs from it.

use schemars::generate::SchemaSettings;
use serde_json::{json, Value};

use crate::{ClientFrame, ServerFrame};

/// Builds the JSON Schema (draft 2020-12) of every frame on the wire.
///
/// `$defs/ClientFrame` describes what a client sends and `$defs/ServerFrame` what the server
/// sends. The root accepts either. Client and server messages share some `type` values (`offer`,
/// `answer`, `candidate`, `chat`), so the root uses `anyOf`, and a validator that checks one
/// direction should use that direction's definition.
pub fn protocol_schema() -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let client = generator.subschema_for::<ClientFrame>();
    let server = generator.subschema_for::<ServerFrame>();
    let definitions = generator.take_definitions(true);
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Switchyard signaling protocol",
        "description": "One JSON text frame of the signaling protocol, in either direction. \
            Generated from the types in crates/switchyard-proto; docs/protocol.md describes \
            the sequences.",
        "anyOf": [client, server],
        "$defs": definitions,
    })
}
