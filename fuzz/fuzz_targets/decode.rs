//! Fuzzes the OpenCode decoders: a file's bytes (`decode_bytes`) and a database row's document
//! (`decode_document`), for every kind. The first input byte picks the kind; the rest is the
//! content. Besides "never panics", it checks what the store relies on: a decoded record's raw
//! document is valid JSON, and no stored text is longer than the cap.
//!
//! ```text
//! cargo fuzz run decode fuzz/corpus/decode fuzz/seeds/decode -- -max_total_time=1800
//! ```
#![no_main]

use std::path::Path;

use ducktail_model::{FileKind, FileOutcome, Records};
use ducktail_sources::opencode::{decode_bytes, decode_document, DecodeLimits};
use libfuzzer_sys::fuzz_target;

/// Small caps, so the cutting paths run on small inputs.
const LIMITS: DecodeLimits = DecodeLimits { max_text_bytes: 48, max_file_bytes: 1 << 20 };

fuzz_target!(|data: &[u8]| {
    let Some((selector, content)) = data.split_first() else { return };
    let kind = FileKind::ALL[usize::from(*selector) % FileKind::ALL.len()];
    check(&decode_bytes(kind, Path::new("/storage/part/msg_fuzz/prt_fuzz.json"), content, &LIMITS));
    if let Ok(text) = std::str::from_utf8(content) {
        let ids = [("id", "prt_fuzz"), ("sessionID", "ses_fuzz"), ("messageID", "msg_fuzz")];
        check(&decode_document(kind, &ids, text, &LIMITS));
    }
});

fn check(outcome: &FileOutcome) {
    let FileOutcome::Decoded(records) = outcome else { return };
    let (raw, texts): (Option<&ducktail_model::RawDocument>, Vec<&Option<String>>) = match records {
        Records::Project(project) => (Some(&project.raw), vec![]),
        Records::Session(session) => (Some(&session.raw), vec![]),
        Records::Message(message) => (Some(&message.raw), vec![]),
        Records::Part { part, .. } => (Some(&part.raw), vec![&part.text, &part.tool_input, &part.tool_output, &part.tool_error]),
        Records::Todos { .. } | Records::FileDiffs { .. } => (None, vec![]),
    };
    if let Some(raw) = raw {
        if let Err(error) = serde_json::from_str::<serde_json::Value>(&raw.json) {
            panic!("raw document is not valid JSON ({error}): {}", raw.json);
        }
    }
    for text in texts.into_iter().flatten() {
        assert!(text.len() <= LIMITS.max_text_bytes, "a stored text exceeds the cap: {} bytes", text.len());
    }
}
