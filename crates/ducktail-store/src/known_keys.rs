//! Which keys the tables may hold — record keys and `file_index` paths — so a batch of new files
//! skips the deletes that would find nothing to replace.
//!
//! A live batch replaces its records by key: one `DELETE … WHERE id IN (…)` per table before the
//! append, and its `file_index` rows by path the same way. Most live files are new (a part, a
//! message), and each of those deletes still scans its table's key column: at 10,000 files/s a
//! quarter of the writer's time went to record deletes that deleted nothing, and a sixth of a
//! 5,000-file batch to staging and replacing `file_index` rows no path had. [`KnownKeys`] answers
//! "may this key be stored?" from memory.
//!
//! It may say yes wrongly (a hash shared by two keys, a key whose rows were deleted since), which
//! costs one delete that finds nothing; it must never say no for a stored key, which would leave
//! two rows with one id, or fail the batch on `file_index`'s primary key. So it is loaded from the
//! tables themselves, and every key the writer inserts is added before the transaction commits
//! (`append_records` is the only place records are inserted; `write_batch_in_transaction` and
//! `record_span_files` the only places `file_index` rows are); keys are never removed, and a batch
//! that rolls back leaves its keys behind as harmless yeses.
//!
//! One `u64` per stored key: the 1M-file tree's database holds 1,997,843 keys and paths, loaded
//! by the daemon's first batch in 0.71-1.0 s (0.24 s for the records' keys alone); the daemon's
//! RSS after that batch 723-758 MB (717-725 with the records' keys alone, 690-691 without). A bulk load keeps none (its deletes run against rows
//! still in memory and cost 0.1 s per 100k files; a cold one knows its paths are new).

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use foldhash::{HashSet, HashSetExt};

use arrow_array::cast::AsArray;
use arrow_array::Array;
use arrow_schema::DataType;

/// Every stored record key with its key set's position in the writer's `REPLACED_BY_KEY`, and
/// every `file_index` path under [`PATH_CODE`].
const STORED_KEYS: &str = "
SELECT 0::UTINYINT, id FROM projects
UNION ALL SELECT 1::UTINYINT, id FROM sessions
UNION ALL SELECT 2::UTINYINT, id FROM messages
UNION ALL SELECT 3::UTINYINT, id FROM parts
UNION ALL SELECT DISTINCT 4::UTINYINT, session_id FROM todos
UNION ALL SELECT DISTINCT 5::UTINYINT, session_id FROM file_diffs
UNION ALL SELECT 6::UTINYINT, file_path FROM file_index
";

/// The code of `file_index` paths: the one after the writer's key sets.
const PATH_CODE: u8 = crate::writer::REPLACED_BY_KEY.len() as u8;

/// Hashes of the (key set, key) pairs the record tables may hold, and of the paths
/// `file_index` may hold.
pub(crate) struct KnownKeys {
    hasher: RandomState,
    hashes: HashSet<u64>,
}

impl KnownKeys {
    /// Every key the tables hold now, read through `connection`.
    pub(crate) fn load(connection: &duckdb::Connection) -> duckdb::Result<KnownKeys> {
        let mut known = KnownKeys { hasher: RandomState::default(), hashes: HashSet::new() };
        let mut statement = connection.prepare(STORED_KEYS)?;
        for batch in statement.query_arrow([])? {
            let (sets, keys) = (batch.column(0), batch.column(1));
            let sets = sets.as_primitive_opt::<arrow_array::types::UInt8Type>().expect("the key set column is a UTINYINT");
            for row in 0..batch.num_rows() {
                let key = match keys.data_type() {
                    DataType::Utf8View => keys.as_string_view().value(row),
                    DataType::LargeUtf8 => keys.as_string::<i64>().value(row),
                    _ => keys.as_string::<i32>().value(row),
                };
                let code = sets.value(row);
                known.hashes.insert(known.hash_code(code, key));
            }
        }
        Ok(known)
    }

    /// Keys held, counting hashes once.
    pub(crate) fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether `key` of `key_set` may be stored; false means it certainly is not.
    pub(crate) fn may_hold(&self, key_set: &str, key: &str) -> bool {
        match code_of(key_set) {
            Some(code) => self.hashes.contains(&self.hash_code(code, key)),
            None => true,
        }
    }

    /// Notes a key about to be stored.
    pub(crate) fn insert(&mut self, key_set: &str, key: &str) {
        if let Some(code) = code_of(key_set) {
            let hash = self.hash_code(code, key);
            self.hashes.insert(hash);
        }
    }

    /// Whether `file_index` may hold a row for `path`; false means it certainly does not.
    pub(crate) fn may_hold_path(&self, path: &str) -> bool {
        self.hashes.contains(&self.hash_code(PATH_CODE, path))
    }

    /// Notes a `file_index` path about to be stored.
    pub(crate) fn insert_path(&mut self, path: &str) {
        let hash = self.hash_code(PATH_CODE, path);
        self.hashes.insert(hash);
    }

    fn hash_code(&self, code: u8, key: &str) -> u64 {
        self.hasher.hash_one((code, key))
    }
}

fn code_of(key_set: &str) -> Option<u8> {
    crate::writer::REPLACED_BY_KEY.iter().position(|(set, _)| *set == key_set).map(|position| position as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_codes_of_the_stored_keys_are_the_writers_key_sets() {
        let sets: Vec<&str> = crate::writer::REPLACED_BY_KEY.iter().map(|(set, _)| *set).collect();
        assert_eq!(sets, ["project", "session", "message", "part", "todo", "session_diff"], "STORED_KEYS numbers them in this order");
        assert_eq!(PATH_CODE, 6, "STORED_KEYS numbers file_index paths after them");
    }

    #[test]
    fn a_key_is_known_in_its_own_set_only_and_an_unknown_set_is_always_maybe() {
        let store = crate::Store::open_in_memory().unwrap();
        store
            .connection
            .execute_batch("INSERT INTO parts (id, session_id, message_id, part_type, source) VALUES ('prt_1', 'ses_1', 'msg_1', 'text', 'opencode_json')")
            .unwrap();
        let mut known = KnownKeys::load(&store.connection).unwrap();
        assert!(known.may_hold("part", "prt_1"));
        assert!(!known.may_hold("message", "prt_1"), "another set's key");
        assert!(!known.may_hold("part", "prt_2"));
        known.insert("part", "prt_2");
        assert!(known.may_hold("part", "prt_2"));
        assert!(known.may_hold("no such set", "x"));
        assert_eq!(known.len(), 2);
    }

    #[test]
    fn a_stored_path_is_known_apart_from_the_record_keys() {
        let store = crate::Store::open_in_memory().unwrap();
        store
            .connection
            .execute_batch(
                "INSERT INTO file_index (file_path, source, kind, mtime_ns, size, status, attempts, indexed_at) \
                 VALUES ('/s/part/msg_1/prt_1.json', 'opencode_json', 'part', 0, 1, 'indexed', 0, now())",
            )
            .unwrap();
        let mut known = KnownKeys::load(&store.connection).unwrap();
        assert!(known.may_hold_path("/s/part/msg_1/prt_1.json"));
        assert!(!known.may_hold("part", "/s/part/msg_1/prt_1.json"), "a path is not a record key");
        assert!(!known.may_hold_path("/s/part/msg_1/prt_2.json"));
        known.insert_path("/s/part/msg_1/prt_2.json");
        assert!(known.may_hold_path("/s/part/msg_1/prt_2.json"));
    }
}
