//! Which OpenCode storage file a path is, decided from its place under `storage/` alone.

use std::ffi::OsStr;
use std::path::{Component, Path};

use ducktail_model::FileKind;

/// The known top-level folders of `storage/`, the kind of file each holds, and how many path
/// components (folders plus the file itself) a file of that kind has below the storage root.
pub const LAYOUTS: [(&str, FileKind, usize); 6] = [
    ("project", FileKind::Project, 2),
    ("session", FileKind::Session, 3),
    ("message", FileKind::Message, 3),
    ("part", FileKind::Part, 3),
    ("todo", FileKind::Todo, 2),
    ("session_diff", FileKind::SessionDiff, 2),
];

/// Classifies `path` (a file below `storage_root`) as one of the six OpenCode layouts and returns
/// its kind and the record id its file name claims:
///
/// | layout | kind |
/// |---|---|
/// | `project/<projectID>.json` | [`FileKind::Project`] |
/// | `session/<projectID>/<sessionID>.json` | [`FileKind::Session`] |
/// | `message/<sessionID>/<messageID>.json` | [`FileKind::Message`] |
/// | `part/<messageID>/<partID>.json` | [`FileKind::Part`] |
/// | `todo/<sessionID>.json` | [`FileKind::Todo`] |
/// | `session_diff/<sessionID>.json` | [`FileKind::SessionDiff`] |
///
/// Anything else is `None`: other depths, names not ending in `.json` (so `*.tmp` and the bare
/// `migration` file), hidden names (the `.oc-*` temp files of forks that write atomically),
/// unknown top-level folders (plugins, `quarantine/`, `session_share/`, `permission/`) and paths
/// outside `storage_root`. So are paths below `storage_root` that are not valid UTF-8: OpenCode
/// never writes them, and `file_index.file_path` could only hold a lossy copy, so a restart would
/// no longer recognise the file it indexed.
pub fn classify(storage_root: &Path, path: &Path) -> Option<(FileKind, String)> {
    let relative = path.strip_prefix(storage_root).ok()?;
    relative.to_str()?;
    // At most three components are ever valid, so collect them without allocating.
    let mut names: [&OsStr; 3] = [OsStr::new(""); 3];
    let mut count = 0;
    for component in relative.components() {
        let Component::Normal(name) = component else {
            return None;
        };
        if count == names.len() {
            return None;
        }
        names[count] = name;
        count += 1;
    }
    if count < 2 {
        return None;
    }
    let (kind, depth) = layout_of_folder(names[0])?;
    if count != depth {
        return None;
    }
    if depth == 3 && !is_id_folder_name(names[1]) {
        return None;
    }
    let record_id = record_id_of_file_name(names[depth - 1])?;
    Some((kind, record_id))
}

/// The kind and depth of files below a top-level folder of `storage/`, if it is a known one.
pub fn layout_of_folder(name: &OsStr) -> Option<(FileKind, usize)> {
    let name = name.to_str()?;
    LAYOUTS.iter().find(|(folder, _, _)| *folder == name).map(|&(_, kind, depth)| (kind, depth))
}

/// The record id a storage file name claims (`<id>.json` → `<id>`), or `None` when the name is
/// not one OpenCode writes: not ending in `.json`, hidden (temp files), or with an empty stem.
pub fn record_id_of_file_name(name: &OsStr) -> Option<String> {
    // Not UTF-8: skipped (see `classify`).
    let name = name.to_str()?;
    let stem = name.strip_suffix(".json")?;
    if stem.is_empty() || stem.starts_with('.') {
        return None;
    }
    Some(stem.to_owned())
}

/// Whether a folder between the top-level folder and the file can hold OpenCode files: its name
/// is an id, so it is neither empty nor hidden.
pub fn is_id_folder_name(name: &OsStr) -> bool {
    name.to_str().is_some_and(|name| !name.is_empty() && !name.starts_with('.'))
}

/// The name of the folder a file sits in (lossily decoded): the project id of a session file,
/// the session id of a message file, the message id of a part file.
pub fn parent_folder_name(path: &Path) -> Option<String> {
    let name = path.parent()?.file_name()?;
    Some(name.to_string_lossy().into_owned())
}

/// The file's stem (lossily decoded): the session id of todo and session_diff files.
pub fn file_stem(path: &Path) -> Option<String> {
    record_id_of_file_name(path.file_name()?).or_else(|| Some(path.file_stem()?.to_string_lossy().into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    use std::path::PathBuf;

    fn classify_relative(relative: &str) -> Option<(FileKind, String)> {
        let root = Path::new("/data/opencode/storage");
        classify(root, &root.join(relative))
    }

    #[test]
    fn the_six_layouts_classify() {
        let cases = [
            ("project/global.json", FileKind::Project, "global"),
            ("session/global/ses_1.json", FileKind::Session, "ses_1"),
            ("message/ses_1/msg_1.json", FileKind::Message, "msg_1"),
            ("part/msg_1/prt_1.json", FileKind::Part, "prt_1"),
            ("todo/ses_1.json", FileKind::Todo, "ses_1"),
            ("session_diff/ses_1.json", FileKind::SessionDiff, "ses_1"),
        ];
        for (relative, kind, id) in cases {
            assert_eq!(classify_relative(relative), Some((kind, id.to_owned())), "{relative}");
        }
    }

    #[test]
    fn everything_else_is_not_classified() {
        let rejected = [
            "migration",
            "project",
            "project/global.json.tmp",
            "project/.oc-global.json.123.1700000000.tmp",
            "project/.hidden.json",
            "project/.json",
            "project/global.JSON",
            "project/global",
            "project/sub/global.json",
            "session/ses_1.json",
            "session/global/ses_1.json/x.json",
            "session/.oc-tmp/ses_1.json",
            "session/global/ses_1.tmp",
            "message/msg_1.json",
            "message/ses_1/extra/msg_1.json",
            "part/msg_1.json",
            "part/ses_1/msg_1/prt_1.json",
            "todo/ses_1/x.json",
            "session_diff/ses_1/x.json",
            "quarantine/1700000000/part/msg_1/prt_1.json",
            "session_share/ses_1.json",
            "share/ses_1.json",
            "permission/global.json",
            "agent-usage-reminder/ses_1.json",
            "Project/global.json",
        ];
        for relative in rejected {
            assert_eq!(classify_relative(relative), None, "{relative}");
        }
    }

    #[test]
    fn paths_outside_the_root_or_with_dot_dot_are_not_classified() {
        let root = Path::new("/data/opencode/storage");
        assert_eq!(classify(root, Path::new("/elsewhere/project/x.json")), None);
        assert_eq!(classify(root, &root.join("project/../project/x.json")), None);
        assert_eq!(classify(root, root), None);
    }

    #[test]
    fn a_relative_root_works_like_an_absolute_one() {
        assert_eq!(classify(Path::new("storage"), Path::new("storage/todo/ses_1.json")), Some((FileKind::Todo, "ses_1".to_owned())));
    }

    #[test]
    fn odd_but_legal_names_keep_their_id() {
        assert_eq!(classify_relative("session/my project/ses \"quoted\" 'x'.json"), Some((FileKind::Session, "ses \"quoted\" 'x'".to_owned())));
        assert_eq!(classify_relative("part/msg_1/prt.with.dots.json"), Some((FileKind::Part, "prt.with.dots".to_owned())));
    }

    #[test]
    fn non_utf8_names_below_the_root_are_skipped() {
        let root = PathBuf::from("/data/storage");
        let mut name = b"prt_\xff".to_vec();
        name.extend_from_slice(b".json");
        let bad_file = root.join("part").join("msg_1").join(OsString::from_vec(name));
        assert_eq!(classify(&root, &bad_file), None);
        let bad_folder = root.join("part").join(OsString::from_vec(b"msg_\xfe".to_vec())).join("prt_1.json");
        assert_eq!(classify(&root, &bad_folder), None);
        // The root itself may be anything (a user's home directory).
        let odd_root = PathBuf::from(OsString::from_vec(b"/home/\xff/storage".to_vec()));
        assert_eq!(classify(&odd_root, &odd_root.join("part/msg_1/prt_1.json")), Some((FileKind::Part, "prt_1".to_owned())));
    }

    #[test]
    fn helpers_read_folder_and_stem() {
        let path = Path::new("/s/part/msg_1/prt_1.json");
        assert_eq!(parent_folder_name(path).as_deref(), Some("msg_1"));
        assert_eq!(file_stem(path).as_deref(), Some("prt_1"));
        assert_eq!(file_stem(Path::new("/s/todo/odd")).as_deref(), Some("odd"));
    }
}
