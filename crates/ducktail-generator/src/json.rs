//! An ordered JSON value and a printer that reproduces `JSON.stringify(value, null, 2)` byte for byte.
//!
//! opencode writes every document with key order as built and 2-space indentation, without a trailing
//! newline. `serde_json::Value` sorts keys unless a feature is enabled somewhere in the build graph, so
//! the generator keeps its own tiny value type and printer to stay byte-identical regardless of features.

use std::io::Write as _;

/// A JSON document whose object keys keep their insertion order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(&'static str, Json)>),
}

/// Builds a [`Json::Obj`] from `key => value` pairs, converting each value with `Json::from`.
macro_rules! obj {
    ($($key:literal => $value:expr),* $(,)?) => {
        $crate::json::Json::Obj(vec![$(($key, $crate::json::Json::from($value))),*])
    };
}
pub(crate) use obj;

impl Json {
    /// Appends `key` to an object; a no-op on any other value (callers only ever pass objects).
    pub(crate) fn set(&mut self, key: &'static str, value: impl Into<Json>) {
        if let Json::Obj(fields) = self {
            fields.push((key, value.into()));
        }
    }

    /// Prints the value exactly as `JSON.stringify(value, null, 2)` does.
    pub(crate) fn to_pretty(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        write_value(self, 0, &mut out);
        out
    }
}

/// Appends the value as `JSON.stringify(value)` prints it: no whitespace, keys in order (one JSON
/// Lines record, without its newline).
pub(crate) fn write_compact(value: &Json, out: &mut Vec<u8>) {
    match value {
        Json::Arr(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_compact(item, out);
            }
            out.push(b']');
        }
        Json::Obj(fields) => {
            out.push(b'{');
            for (index, (key, item)) in fields.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_compact(item, out);
            }
            out.push(b'}');
        }
        scalar => write_value(scalar, 0, out),
    }
}

fn write_indent(depth: usize, out: &mut Vec<u8>) {
    out.extend(std::iter::repeat_n(b' ', depth * 2));
}

fn write_value(value: &Json, depth: usize, out: &mut Vec<u8>) {
    match value {
        Json::Null => out.extend_from_slice(b"null"),
        Json::Bool(true) => out.extend_from_slice(b"true"),
        Json::Bool(false) => out.extend_from_slice(b"false"),
        Json::Int(number) => {
            let _ = write!(out, "{number}");
        }
        // Rust's `Display` for f64 is the shortest round-trip form without exponent, like JS for the
        // magnitudes the generator produces (costs ≥ 1e-6); integral values print without `.0`, as in JS.
        Json::Float(number) if number.is_finite() => {
            let _ = write!(out, "{number}");
        }
        Json::Float(_) => out.extend_from_slice(b"null"),
        Json::Str(text) => write_string(text, out),
        Json::Arr(items) if items.is_empty() => out.extend_from_slice(b"[]"),
        Json::Arr(items) => {
            out.extend_from_slice(b"[\n");
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.extend_from_slice(b",\n");
                }
                write_indent(depth + 1, out);
                write_value(item, depth + 1, out);
            }
            out.push(b'\n');
            write_indent(depth, out);
            out.push(b']');
        }
        Json::Obj(fields) if fields.is_empty() => out.extend_from_slice(b"{}"),
        Json::Obj(fields) => {
            out.extend_from_slice(b"{\n");
            for (index, (key, item)) in fields.iter().enumerate() {
                if index > 0 {
                    out.extend_from_slice(b",\n");
                }
                write_indent(depth + 1, out);
                write_string(key, out);
                out.extend_from_slice(b": ");
                write_value(item, depth + 1, out);
            }
            out.push(b'\n');
            write_indent(depth, out);
            out.push(b'}');
        }
    }
}

/// Escapes like `JSON.stringify`: `"`, `\`, the short escapes, other control characters as `\u00xx`.
fn write_string(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut run_start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run_start..index]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.extend_from_slice(escape);
        }
        run_start = index + 1;
    }
    out.extend_from_slice(&bytes[run_start..]);
    out.push(b'"');
}

impl From<&str> for Json {
    fn from(value: &str) -> Self {
        Json::Str(value.to_owned())
    }
}

impl From<String> for Json {
    fn from(value: String) -> Self {
        Json::Str(value)
    }
}

impl From<&String> for Json {
    fn from(value: &String) -> Self {
        Json::Str(value.clone())
    }
}

impl From<bool> for Json {
    fn from(value: bool) -> Self {
        Json::Bool(value)
    }
}

impl From<i32> for Json {
    fn from(value: i32) -> Self {
        Json::Int(i64::from(value))
    }
}

impl From<i64> for Json {
    fn from(value: i64) -> Self {
        Json::Int(value)
    }
}

impl From<u64> for Json {
    fn from(value: u64) -> Self {
        Json::Int(i64::try_from(value).unwrap_or(i64::MAX))
    }
}

impl From<usize> for Json {
    fn from(value: usize) -> Self {
        Json::Int(i64::try_from(value).unwrap_or(i64::MAX))
    }
}

impl From<f64> for Json {
    fn from(value: f64) -> Self {
        Json::Float(value)
    }
}

impl From<Vec<Json>> for Json {
    fn from(value: Vec<Json>) -> Self {
        Json::Arr(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_json_stringify_with_two_spaces() {
        let value = obj! {
            "id" => "prt_1",
            "empty" => Json::Arr(vec![]),
            "none" => Json::Obj(vec![]),
            "cost" => 0.000398,
            "zero" => 0.0,
            "list" => vec![Json::from(1), Json::from("a\"b\\c\n\u{1b}")],
        };
        let printed = String::from_utf8(value.to_pretty()).unwrap();
        assert_eq!(
            printed,
            "{\n  \"id\": \"prt_1\",\n  \"empty\": [],\n  \"none\": {},\n  \"cost\": 0.000398,\n  \"zero\": 0,\n  \"list\": [\n    1,\n    \"a\\\"b\\\\c\\n\\u001b\"\n  ]\n}"
        );
        let reparsed: serde_json::Value = serde_json::from_str(&printed).unwrap();
        assert_eq!(reparsed["list"][1], "a\"b\\c\n\u{1b}");
    }

    #[test]
    fn compact_printing_has_no_whitespace_and_keeps_key_order() {
        let value = obj! { "b" => 1, "a" => vec![Json::from("x y"), Json::Null], "c" => Json::Obj(vec![]) };
        let mut printed = Vec::new();
        write_compact(&value, &mut printed);
        assert_eq!(String::from_utf8(printed).unwrap(), r#"{"b":1,"a":["x y",null],"c":{}}"#);
    }
}
