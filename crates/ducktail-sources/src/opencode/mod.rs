//! OpenCode's JSON storage tree (versions 0.6 – 1.1.65, and the files 1.2+ still writes there).
//!
//! # Layout
//! - [`layout`] decides from a path alone which of the six known file kinds a file is.
//! - [`scan`] walks a storage root and lists those files with their stamps.
//! - [`decode`] reads one file and turns it into records, tolerating every quirk OpenCode's
//!   non-atomic writes and five format generations produce.

pub mod decode;
pub mod layout;
pub mod scan;

pub use decode::{decode_bytes, decode_file, DecodeLimits};
pub use layout::classify;
pub use scan::{scan_storage, stamp_of, storage_root, ScanError, ScannedFile, StorageScan};

#[cfg(test)]
mod fixture_tests;
