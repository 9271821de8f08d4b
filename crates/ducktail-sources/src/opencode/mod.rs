//! OpenCode's storage: the JSON tree (versions 0.6 – 1.1.65, and the files 1.2+ still writes
//! there) and the SQLite database of 1.2+.
//!
//! # Layout
//! - [`layout`] decides from a path alone which of the six known file kinds a file is.
//! - [`scan`] walks a storage root and lists those files with their stamps.
//! - [`decode`] reads one file and turns it into records, tolerating every quirk OpenCode's
//!   non-atomic writes and five format generations produce.
//! - [`sqlite`] reads OpenCode ≥ 1.2's `opencode.db` incrementally, read-only, decoding its
//!   message and part documents with the same code as the JSON files.

pub mod decode;
pub mod layout;
pub mod scan;
pub mod sqlite;

pub use decode::{decode_bytes, decode_document, decode_file, DecodeLimits};
pub use layout::classify;
pub use scan::{scan_folder, scan_storage, scan_storage_streaming, scan_threads, stamp_of, storage_root, ScanError, ScannedFile, StorageScan};

#[cfg(test)]
mod fixture_tests;
