//! Listing transcripts and reading one from its cursor.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ducktail_model::transcript::{SkippedLine, TranscriptCursor, TranscriptStretch, FINGERPRINT_BYTES};
use ducktail_model::FileStamp;
use serde_json::Value;

use super::{DecodeContext, StretchOutput, TranscriptFormat};
use crate::opencode::stamp_of;

/// How much one read takes in.
#[derive(Debug, Clone, Copy)]
pub struct StretchLimits {
    /// A read stops after the line that crosses this many bytes, so a large file is committed in
    /// pieces (each with its cursor) instead of held whole in memory.
    pub stretch_bytes: u64,
    /// A longer line is skipped and recorded (`decode.max_line_bytes`).
    pub max_line_bytes: u64,
}

impl Default for StretchLimits {
    fn default() -> Self {
        StretchLimits { stretch_bytes: 16 * 1024 * 1024, max_line_bytes: 64 * 1024 * 1024 }
    }
}

/// 64-bit FNV-1a: a fixed, documented hash, so fingerprints and line hashes stored in the
/// database stay comparable across builds.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// What [`list_transcripts`] found under a root.
#[derive(Debug, Default)]
pub struct TranscriptListing {
    /// Every transcript, with its stamp, in no particular order.
    pub files: Vec<(PathBuf, FileStamp)>,
    /// Folders that could not be read (permissions, too many open files): what they hold is
    /// unknown, not gone.
    pub unreadable: Vec<PathBuf>,
}

/// Every transcript of `format` under `root`, with its stamp. Symbolic links are not followed.
///
/// std's `read_dir` rather than walkdir: std's `DirEntry::metadata` stats a name relative to
/// the directory it has open (`statx` on the directory's descriptor), where walkdir's stats the
/// whole path again, a lookup of every folder on the way. On a 10,000-transcript tree the
/// listing is most of what a look at an unchanged tree costs (see `docs/benchmarks.md`).
pub fn list_transcripts(format: &dyn TranscriptFormat, root: &Path) -> TranscriptListing {
    let mut listing = TranscriptListing::default();
    let mut folders: Vec<PathBuf> = format.folders(root).into_iter().filter(|folder| folder.is_dir()).collect();
    // One directory open at a time, however deep the tree.
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            listing.unreadable.push(folder);
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            // The entry's own type: a symbolic link is neither a folder nor a file here.
            let Ok(file_type) = entry.file_type() else { continue };
            if file_type.is_dir() {
                folders.push(entry.path());
            } else if file_type.is_file() {
                let path = entry.path();
                if !format.is_transcript(&path) {
                    continue;
                }
                if let Ok(metadata) = entry.metadata() {
                    listing.files.push((path, stamp_of(&metadata)));
                }
            }
        }
    }
    listing
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC).open(path)
}

fn fingerprint(file: &mut dyn Source, upto: u64) -> std::io::Result<u64> {
    let length = upto.min(FINGERPRINT_BYTES as u64) as usize;
    let mut head = vec![0u8; length];
    file.seek(SeekFrom::Start(0))?;
    file.read_exact(&mut head)?;
    Ok(fnv1a(&head))
}

/// What a read goes through: the file itself, or a compressed file's content.
trait Source: Read + Seek {}

impl<T: Read + Seek> Source for T {}

/// Most bytes a compressed transcript may decompress to: it is held whole in memory while read.
pub const MAX_DECOMPRESSED_BYTES: u64 = 1 << 30;

/// Whether `path` is a compressed transcript (`….jsonl.zst`).
pub fn is_compressed(path: &Path) -> bool {
    path.extension().is_some_and(|extension| extension == "zst")
}

/// The content of a zstd-compressed file, up to [`MAX_DECOMPRESSED_BYTES`].
fn decompress(file: File) -> std::io::Result<Vec<u8>> {
    let mut content = Vec::new();
    zstd::stream::read::Decoder::new(file)?.take(MAX_DECOMPRESSED_BYTES + 1).read_to_end(&mut content)?;
    if content.len() as u64 > MAX_DECOMPRESSED_BYTES {
        return Err(std::io::Error::other(format!("it decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes; decompress it by hand to have it read")));
    }
    Ok(content)
}

/// Reads `path` from `known` (its cursor and decoder state from the last read), or from its start
/// when it is new, shorter than the cursor, another file (device and inode) or rewritten (the
/// first bytes changed). Reads whole lines only — a partial last line waits for its newline —
/// and stops after `limits.stretch_bytes`; call again while the cursor is short of the size.
pub fn read_stretch(
    format: &dyn TranscriptFormat,
    path: &Path,
    known: Option<(TranscriptCursor, Option<&str>)>,
    context: &DecodeContext,
    limits: StretchLimits,
) -> TranscriptStretch {
    let failed = |stamp: FileStamp, reason: String| TranscriptStretch {
        path: path.to_owned(),
        stamp,
        start_offset: 0,
        cursor: known.map(|(cursor, _)| cursor).unwrap_or_default(),
        decoder_state: known.and_then(|(_, state)| state.map(str::to_owned)),
        session_id: None,
        records: Vec::new(),
        lines: Vec::new(),
        skipped: Vec::new(),
        failure: Some(reason),
    };
    let file = match open(path) {
        Ok(file) => file,
        Err(error) => return failed(FileStamp::default(), format!("cannot open {}: {error}", path.display())),
    };
    let metadata = match file.metadata() {
        Ok(metadata) if metadata.is_file() => metadata,
        Ok(_) => return failed(FileStamp::default(), format!("{} is not a regular file", path.display())),
        Err(error) => return failed(FileStamp::default(), format!("cannot stat {}: {error}", path.display())),
    };
    let stamp = stamp_of(&metadata);
    let (device, inode) = (metadata.dev(), metadata.ino());
    // A compressed transcript is one the agent finished with: read whole, in one stretch, its
    // cursor counting decompressed bytes (the file's identity is the compressed file's).
    let (mut file, size, limits): (Box<dyn Source>, u64, StretchLimits) = if is_compressed(path) {
        match decompress(file) {
            Ok(content) => {
                let size = content.len() as u64;
                (Box::new(std::io::Cursor::new(content)), size, StretchLimits { stretch_bytes: u64::MAX, ..limits })
            }
            Err(error) => return failed(stamp, format!("cannot decompress {}: {error}", path.display())),
        }
    } else {
        (Box::new(file), metadata.len(), limits)
    };
    let file = &mut *file;
    let resume = known.filter(|(cursor, _)| {
        cursor.device == device
            && cursor.inode == inode
            && cursor.offset <= size
            && (cursor.offset == 0 || fingerprint(file, cursor.offset).is_ok_and(|hash| hash == cursor.fingerprint))
    });
    let (start, state) = match resume {
        Some((cursor, state)) => (cursor.offset, state),
        None => (0, None),
    };
    let mut decoder = format.decoder(path, state, context);
    let mut out = StretchOutput::new(context.limits.max_text_bytes);
    let mut skipped = Vec::new();
    let mut offset = start;
    if let Err(error) = read_lines(
        file,
        start,
        size,
        limits,
        &mut |line_offset, line| match line {
            Line::TooLong(length) => skipped.push(SkippedLine {
                offset: line_offset,
                reason: format!(
                    "line of {length} bytes is longer than sources.{}.max_line_bytes ({}); skipped (raise the limit to read it)",
                    format.source(),
                    limits.max_line_bytes
                ),
            }),
            Line::Text(bytes) => match std::str::from_utf8(bytes) {
                Err(error) => skipped.push(SkippedLine { offset: line_offset, reason: format!("not UTF-8: {error}") }),
                Ok(text) if text.trim().is_empty() => {}
                Ok(text) => match serde_json::from_str::<Value>(text) {
                    Ok(Value::Object(object)) => decoder.line(&object, text, line_offset, &mut out),
                    Ok(_) => skipped.push(SkippedLine { offset: line_offset, reason: "not a JSON object".to_owned() }),
                    Err(error) => skipped.push(SkippedLine { offset: line_offset, reason: format!("not JSON: {error}") }),
                },
            },
        },
        &mut offset,
    ) {
        return failed(stamp, format!("cannot read {}: {error}", path.display()));
    }
    let cursor_fingerprint = match fingerprint(file, offset) {
        Ok(hash) => hash,
        Err(error) => return failed(stamp, format!("cannot read {}: {error}", path.display())),
    };
    let session_id = decoder.session_id();
    let decoder_state = decoder.state();
    let (records, lines) = out.finish();
    TranscriptStretch {
        path: path.to_owned(),
        stamp,
        start_offset: start,
        cursor: TranscriptCursor { device, inode, offset, fingerprint: cursor_fingerprint },
        decoder_state,
        session_id,
        records,
        lines,
        skipped,
        failure: None,
    }
}

enum Line<'b> {
    Text(&'b [u8]),
    TooLong(u64),
}

/// Calls `each` for every whole line in `[start, size)`, stopping after the line that crosses
/// `limits.stretch_bytes`; `offset` ends just after the last whole line handled.
fn read_lines(
    file: &mut dyn Source,
    start: u64,
    size: u64,
    limits: StretchLimits,
    each: &mut dyn FnMut(u64, Line<'_>),
    offset: &mut u64,
) -> std::io::Result<()> {
    const BLOCK: usize = 1024 * 1024;
    file.seek(SeekFrom::Start(start))?;
    let mut pending: Vec<u8> = Vec::new();
    // A line longer than the limit is not held: its length is counted until its newline.
    let mut skipping: Option<(u64, u64)> = None;
    let mut position = start;
    let mut block = vec![0u8; BLOCK];
    *offset = start;
    while position < size && *offset - start < limits.stretch_bytes {
        let want = BLOCK.min((size - position) as usize);
        let got = file.read(&mut block[..want])?;
        if got == 0 {
            break;
        }
        let mut rest = &block[..got];
        position += got as u64;
        while !rest.is_empty() {
            let newline = memchr::memchr(b'\n', rest);
            let piece = &rest[..newline.unwrap_or(rest.len())];
            if let Some((line_start, length)) = skipping.as_mut() {
                *length += piece.len() as u64;
                if newline.is_some() {
                    each(*line_start, Line::TooLong(*length));
                    *offset = *line_start + *length + 1;
                    skipping = None;
                }
            } else if (pending.len() + piece.len()) as u64 > limits.max_line_bytes {
                skipping = Some((*offset, (pending.len() + piece.len()) as u64));
                pending.clear();
                if newline.is_some() {
                    let (line_start, length) = skipping.take().expect("just set");
                    each(line_start, Line::TooLong(length));
                    *offset = line_start + length + 1;
                }
            } else if newline.is_some() {
                if pending.is_empty() {
                    each(*offset, Line::Text(piece));
                } else {
                    pending.extend_from_slice(piece);
                    each(*offset, Line::Text(&pending));
                }
                *offset += (pending.len().max(piece.len()) + 1) as u64;
                pending.clear();
            } else {
                pending.extend_from_slice(piece);
            }
            rest = match newline {
                Some(at) => &rest[at + 1..],
                None => &[],
            };
            if *offset - start >= limits.stretch_bytes {
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines_of(content: &[u8], start: u64, limits: StretchLimits) -> (Vec<(u64, String)>, u64) {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(content).unwrap();
        let mut seen = Vec::new();
        let mut offset = 0;
        read_lines(
            &mut file,
            start,
            content.len() as u64,
            limits,
            &mut |at, line| {
                seen.push((
                    at,
                    match line {
                        Line::Text(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                        Line::TooLong(length) => format!("<{length} bytes>"),
                    },
                ))
            },
            &mut offset,
        )
        .unwrap();
        (seen, offset)
    }

    #[test]
    fn whole_lines_are_read_and_a_partial_last_line_waits() {
        let (lines, offset) = lines_of(b"{\"a\":1}\n{\"b\":2}\n{\"c\"", 0, StretchLimits::default());
        assert_eq!(lines, vec![(0, "{\"a\":1}".to_owned()), (8, "{\"b\":2}".to_owned())]);
        assert_eq!(offset, 16);
        let (lines, offset) = lines_of(b"{\"a\":1}\n{\"b\":2}\n", 8, StretchLimits::default());
        assert_eq!(lines, vec![(8, "{\"b\":2}".to_owned())]);
        assert_eq!(offset, 16);
    }

    #[test]
    fn a_line_longer_than_the_limit_is_skipped_with_its_offset_and_the_rest_is_read() {
        let limits = StretchLimits { max_line_bytes: 4, ..StretchLimits::default() };
        let (lines, offset) = lines_of(b"ab\nabcdefgh\ncd\n", 0, limits);
        assert_eq!(lines, vec![(0, "ab".to_owned()), (3, "<8 bytes>".to_owned()), (12, "cd".to_owned())]);
        assert_eq!(offset, 15);
    }

    #[test]
    fn a_read_stops_after_the_stretch_budget_on_a_line_boundary() {
        let limits = StretchLimits { stretch_bytes: 5, ..StretchLimits::default() };
        let (lines, offset) = lines_of(b"abc\ndef\nghi\n", 0, limits);
        assert_eq!(lines.len(), 2);
        assert_eq!(offset, 8);
    }

    #[test]
    fn lines_spanning_blocks_are_joined() {
        let long = "x".repeat(3 * 1024 * 1024);
        let content = format!("{long}\nshort\n");
        let (lines, offset) = lines_of(content.as_bytes(), 0, StretchLimits::default());
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].1.len(), long.len());
        assert_eq!(lines[1], (long.len() as u64 + 1, "short".to_owned()));
        assert_eq!(offset, content.len() as u64);
    }
}
