//! Seeded, reproducible generator of realistic OpenCode JSON storage trees (and of OpenTelemetry
//! span files, [`spans`], and Claude Code transcripts, [`transcripts`]).
//!
//! This crate owns one thing: turning a [`GeneratorConfig`] into the files opencode 1.1.4x–1.1.65
//! writes under `$XDG_DATA_HOME/opencode/storage/` — projects, sessions (with `task` delegation to
//! child sessions, nested up to a configured depth), user and assistant messages, their parts (steps,
//! reasoning, text, tool calls with realistic inputs/outputs/metadata, patches), todo lists and session
//! diffs, plus optional deliberately corrupted files. Tests, benchmarks and `ducktail demo` use it.
//!
//! Entry points: [`plan`] yields the files lazily in a plausible write order (memory stays flat for
//! millions of files: one root session tree is buffered at a time); [`generate`] writes that plan
//! under a data directory and returns a [`GeneratedTree`] summary.
//!
//! Invariants:
//! * The same configuration gives byte-identical output: one ChaCha8 stream, a simulated clock that
//!   only moves forward, no hash-map iteration order, no wall clock.
//! * Documents are printed exactly like `JSON.stringify(value, null, 2)` (2-space indent, no trailing
//!   newline, keys in opencode's order).
//! * Every message's `cost` is the sum of its `step-finish` costs and its `tokens` are the last
//!   step's tokens, as opencode writes them.
//!
//! This crate never reads a tree back, knows nothing about DuckDB or actix, and performs no I/O
//! outside [`generate`], [`spans::generate_spans`] and [`transcripts::generate_claude_transcripts`].
//!
//! # Layout
//! * `lib.rs` — configuration, [`Plan`], [`generate`].
//! * `tree.rs` — the generator core (sessions, messages, parts, delegation, bad files).
//! * `content.rs` — word lists, models, code snippets and tool outputs.
//! * `ids.rs` — opencode identifiers.
//! * `json.rs` — ordered JSON values and the `JSON.stringify` printer.
//! * `spans.rs` — OpenTelemetry span Parquet files in the Junjo layout ([`spans::generate_spans`]),
//!   with split traces, duplicates and orphans.
//! * `transcripts.rs` — Claude Code JSON Lines transcripts
//!   ([`transcripts::generate_claude_transcripts`]): one `assistant` line per content block
//!   repeating its response's id and usage, tool results, bookkeeping lines, compactions; one
//!   transcript grown to a size, and carried on a line at a time for following it live.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

mod content;
mod ids;
mod json;
pub mod spans;
pub mod transcripts;
mod tree;

use tree::Generator;

/// What to generate. Every field has a sensible default (see [`Default`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorConfig {
    /// Seed of the random stream: the same config always produces the same bytes.
    pub seed: u64,
    /// Approximate total number of files: generation stops after the root session tree that
    /// crosses this count (remaining bad files are then appended).
    pub target_files: usize,
    /// Number of deliberately bad files, spread through the plan (0 = none).
    pub bad_files: usize,
    /// Every Nth tool part gets a large output (0 = never).
    pub large_output_every: usize,
    /// Size in bytes of a large tool output.
    pub large_output_bytes: usize,
    /// Maximum nesting of `task` → child session → `task` …; 0 disables delegation.
    pub max_delegation_depth: usize,
    /// Epoch milliseconds at which the first session is created.
    pub base_time_ms: i64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 42,
            target_files: 1_000,
            bad_files: 0,
            large_output_every: 200,
            large_output_bytes: 256 * 1024,
            max_delegation_depth: 3,
            // 2026-01-05T09:00:00Z
            base_time_ms: 1_767_603_600_000,
        }
    }
}

/// One file of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// Path relative to the data directory; always starts with `storage/`.
    pub relative_path: PathBuf,
    /// The exact bytes to write.
    pub contents: Vec<u8>,
    /// One of [`KINDS`].
    pub kind: &'static str,
}

/// Every value [`GeneratedFile::kind`] can take.
pub const KINDS: [&str; 7] = ["project", "session", "message", "part", "todo", "session_diff", "bad"];

/// Summary of a tree written by [`generate`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GeneratedTree {
    /// Files written, bad files included.
    pub total_files: usize,
    /// Files written per [`GeneratedFile::kind`].
    pub files_by_kind: BTreeMap<&'static str, usize>,
    /// Session files (root and child).
    pub sessions: usize,
    /// Sessions without a `parentID`.
    pub root_sessions: usize,
    /// Paths (relative to the data directory) of the deliberately bad files.
    pub bad_files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Projects,
    Sessions,
    TrailingBadFiles,
    Done,
}

/// The lazy stream of files returned by [`plan`].
///
/// Files come in a plausible write order: projects first, then per root session its session file,
/// then per message the message file followed by its parts; a child session (with all its messages)
/// appears where its `task` call runs, before the `task` part itself; a session's todo and diff files
/// follow its last message. Bad files are spread evenly through the stream.
pub struct Plan {
    generator: Generator,
    buffer: VecDeque<GeneratedFile>,
    stage: Stage,
    target_files: usize,
    bad_files: usize,
    emitted: usize,
    bad_emitted: usize,
}

impl Plan {
    /// Number of sessions generated so far (all of them once the plan is exhausted).
    pub fn sessions(&self) -> usize {
        self.generator.sessions
    }

    /// Number of root sessions generated so far (all of them once the plan is exhausted).
    pub fn root_sessions(&self) -> usize {
        self.generator.root_sessions
    }

    /// Bad file number `bad_emitted` is due once this many files were emitted.
    fn next_bad_at(&self) -> usize {
        (self.bad_emitted + 1).saturating_mul(self.target_files) / (self.bad_files + 1)
    }

    fn emit(&mut self, file: GeneratedFile) -> Option<GeneratedFile> {
        self.emitted += 1;
        Some(file)
    }
}

impl Iterator for Plan {
    type Item = GeneratedFile;

    fn next(&mut self) -> Option<GeneratedFile> {
        loop {
            if self.stage != Stage::Done && self.bad_emitted < self.bad_files && self.emitted >= self.next_bad_at() {
                self.bad_emitted += 1;
                let bad = self.generator.bad_file();
                return self.emit(bad);
            }
            if let Some(file) = self.buffer.pop_front() {
                return self.emit(file);
            }
            match self.stage {
                Stage::Projects => {
                    self.buffer.extend(self.generator.project_files());
                    self.stage = Stage::Sessions;
                }
                // Any non-zero target gets at least one session, even when the projects alone reach it.
                Stage::Sessions if self.emitted < self.target_files || (self.target_files > 0 && self.generator.root_sessions == 0) => {
                    self.generator.root_session(&mut self.buffer)
                }
                Stage::Sessions => self.stage = Stage::TrailingBadFiles,
                Stage::TrailingBadFiles if self.bad_emitted < self.bad_files => {
                    self.bad_emitted += 1;
                    let bad = self.generator.bad_file();
                    return self.emit(bad);
                }
                Stage::TrailingBadFiles | Stage::Done => {
                    self.stage = Stage::Done;
                    return None;
                }
            }
        }
    }
}

/// The files of the tree described by `config`, generated lazily in write order.
pub fn plan(config: &GeneratorConfig) -> Plan {
    Plan {
        generator: Generator::new(config),
        buffer: VecDeque::new(),
        stage: Stage::Projects,
        target_files: config.target_files,
        bad_files: config.bad_files,
        emitted: 0,
        bad_emitted: 0,
    }
}

/// Writes [`plan`]`(config)` under `data_dir` (creating directories) and summarises what was written.
///
/// Existing files at the same paths are overwritten; nothing else under `data_dir` is touched.
pub fn generate(data_dir: &Path, config: &GeneratorConfig) -> std::io::Result<GeneratedTree> {
    let mut tree = GeneratedTree::default();
    let mut plan = plan(config);
    let mut last_directory: Option<PathBuf> = None;
    for file in &mut plan {
        let path = data_dir.join(&file.relative_path);
        if let Some(directory) = path.parent() {
            // Parts of one message are consecutive, so remembering the last directory saves most calls.
            if last_directory.as_deref() != Some(directory) {
                std::fs::create_dir_all(directory)?;
                last_directory = Some(directory.to_path_buf());
            }
        }
        std::fs::write(&path, &file.contents)?;
        tree.total_files += 1;
        *tree.files_by_kind.entry(file.kind).or_default() += 1;
        if file.kind == "bad" {
            tree.bad_files.push(file.relative_path);
        }
    }
    tree.sessions = plan.sessions();
    tree.root_sessions = plan.root_sessions();
    Ok(tree)
}

#[cfg(test)]
mod tests;
