//! `SpecError`, the one error type of the spec boundary, and the wording of its messages.
//! Every invalid-spec error reads `file:line:column: key.path: message`, where the message
//! says what was expected and what was found; serde's stock wording is reshaped here so
//! type errors and our own rules read the same way.

use std::io;
use std::ops::Range;
use std::path::PathBuf;

use thiserror::Error;

use super::locate::Locator;
use super::raw::REFUSED_KEYS;

#[derive(Debug, Error)]
pub enum SpecError {
    /// The file could not be read at all.
    #[error("cannot read spec {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },

    /// The file was read but is not a valid spec.
    #[error("{}:{line}:{column}: {}{message}", file.display(), key_prefix(.key))]
    Invalid {
        /// The spec's path as the caller gave it.
        file: PathBuf,
        line: usize,
        column: usize,
        /// The dotted key path, e.g. `pools.echo.size`; `None` for TOML syntax errors.
        key: Option<String>,
        message: String,
    },
}

fn key_prefix(key: &Option<String>) -> String {
    key.as_ref().map_or_else(String::new, |k| format!("{k}: "))
}

/// What validation returns: the value, or the first problem found.
pub type Result<T> = std::result::Result<T, Problem>;

/// An error found in the text, not yet given a line, column or key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub span: Range<usize>,
    pub message: String,
    /// Point at the key rather than its value: for rules about a key being present at all.
    pub at_key: bool,
    /// Name this key path instead of the one found at the span: for a key that was not
    /// written, reported at the table that lacks it.
    pub key: Option<String>,
}

impl Problem {
    /// A problem with a value, reported at the value.
    pub fn value(span: Range<usize>, message: impl Into<String>) -> Self {
        Problem {
            span,
            message: message.into(),
            at_key: false,
            key: None,
        }
    }

    /// A problem with a key's presence, reported at the key.
    pub fn key(span: Range<usize>, message: impl Into<String>) -> Self {
        Problem {
            at_key: true,
            ..Problem::value(span, message)
        }
    }

    /// From a TOML syntax or deserialization error in `text`.
    pub fn from_toml(err: &toml::de::Error, text: &str) -> Self {
        let span = err.span().unwrap_or(0..0);
        let message = match (err.message(), text.get(span.clone())) {
            // The document cannot be walked for a key path then, so name the key here.
            ("duplicate key", Some(key)) => format!("expected each key once, found `{key}` again"),
            (message, _) => reword(message),
        };
        Problem::value(span, message)
    }

    pub fn into_error(self, locator: &Locator, file: PathBuf) -> SpecError {
        let at = locator.locate(&self.span, self.at_key);
        SpecError::Invalid {
            file,
            line: at.line,
            column: at.column,
            key: self.key.or(at.key),
            message: self.message,
        }
    }
}

/// Reshapes serde's stock messages into "expected ..., found ..." in TOML's vocabulary.
/// serde words them as `invalid type: {found}, expected {expected}` and
/// `unknown field `{name}`, expected one of `a`, `b``; anything else passes through.
pub fn reword(message: &str) -> String {
    let message = message.trim().replace('\n', "; ");
    if let Some(rest) = message.strip_prefix("unknown field ") {
        return unknown_key(rest);
    }
    let reshaped = ["invalid type: ", "invalid value: "].iter().find_map(|prefix| {
        let rest = message.strip_prefix(prefix)?;
        let (found, expected) = rest.split_once(", expected ")?;
        Some(format!(
            "expected {}, found {}",
            toml_words(expected),
            toml_words(found)
        ))
    });
    reshaped.unwrap_or(message)
}

/// `rest` is "`name`, expected one of `a`, `b`" (or "expected `a` or `b`", "there are no
/// fields"): every backquoted word after the first is an allowed key.
fn unknown_key(rest: &str) -> String {
    let mut quoted: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    // Keys the parser accepts only to refuse them with a better message are not offered.
    if quoted.len() > 1 {
        quoted.retain(|k| !REFUSED_KEYS.contains(k));
    }
    match quoted.split_first() {
        Some((name, [])) => format!("unknown key `{name}`, this table takes no keys"),
        Some((name, allowed)) => {
            let hint = closest(name, allowed).map_or_else(String::new, |k| format!("; did you mean `{k}`?"));
            format!("unknown key `{name}`, expected one of: {}{hint}", allowed.join(", "))
        }
        None => format!("unknown key {rest}"),
    }
}

/// The allowed key `name` is most likely a misspelling of: the nearest by edit distance,
/// if it is within a third of the name's length (at least 1, and less than the whole name),
/// and the only one that near.
fn closest<'a>(name: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let len = name.chars().count();
    let limit = (len / 3).max(1).min(len.saturating_sub(1));
    let mut scored: Vec<(usize, &str)> = allowed
        .iter()
        .map(|&k| (edit_distance(name, k), k))
        .filter(|&(d, _)| d <= limit)
        .collect();
    scored.sort();
    match scored.as_slice() {
        [(best, k), rest @ ..] if rest.first().is_none_or(|(next, _)| next > best) => Some(k),
        _ => None,
    }
}

/// Insertions, deletions, substitutions and swaps of two neighbours needed to turn `a`
/// into `b` (the optimal string alignment distance), over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // Three rows: the one before the previous is needed for swaps.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut row = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        row[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (prev[j] + 1).min(row[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(before[j - 2] + 1);
            }
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut row);
    }
    prev[b.len()]
}

/// serde speaks of sequences, maps and structs; a TOML user knows arrays and tables. Only
/// whole phrases are mapped, since a found value may itself contain these words.
fn toml_words(s: &str) -> &str {
    match s {
        _ if s.starts_with("struct ") => "a table",
        "a sequence" => "an array",
        "a map" => "a table",
        "sequence" => "array",
        "map" => "table",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_character_edits() {
        let cases = [
            ("", "", 0),
            ("", "abc", 3),
            ("abc", "", 3),
            ("size", "size", 0),
            ("max_request", "max_requests", 1),
            ("concurency", "concurrency", 1),
            ("sise", "size", 1),
            ("szie", "size", 1),
            ("kitten", "sitting", 3),
            ("cwd", "env", 3),
            ("größe", "grösse", 2),
        ];
        for (a, b, want) in cases {
            assert_eq!(edit_distance(a, b), want, "{a} -> {b}");
            assert_eq!(edit_distance(b, a), want, "{b} -> {a}");
        }
    }

    #[test]
    fn an_unknown_key_names_the_closest_known_one() {
        let pool = [
            "app",
            "size",
            "max_requests",
            "max_requests_jitter",
            "max_rss",
            "max_age",
            "cwd",
            "env",
        ];
        let cases = [
            ("max_request", Some("max_requests")),
            ("max_requets", Some("max_requests")),
            ("szie", Some("size")),
            ("max_rs", Some("max_rss")),
            ("ap", Some("app")),
            // Too far from every key.
            ("frobnicate", None),
            ("x", None),
            ("max_ag", Some("max_age")),
            ("cwv", Some("cwd")),
            // Nothing of a one-letter name is left to recognise.
            ("b", None),
        ];
        for (name, want) in cases {
            assert_eq!(closest(name, &pool), want, "{name}");
        }
        // As near to two keys: no guess.
        assert_eq!(closest("abx", &["abc", "abd", "xyz"]), None);
        assert_eq!(closest("b", &["a"]), None);
        assert_eq!(
            reword("unknown field `max_request`, expected one of `size`, `max_requests`"),
            "unknown key `max_request`, expected one of: size, max_requests; did you mean `max_requests`?"
        );
    }

    #[test]
    fn serde_messages_are_reworded_as_expected_found() {
        let cases = [
            (
                "invalid type: integer `3`, expected a string",
                "expected a string, found integer `3`",
            ),
            (
                "invalid type: string \"python3 w.py\", expected a sequence",
                "expected an array, found string \"python3 w.py\"",
            ),
            (
                "invalid type: integer `1`, expected a map",
                "expected a table, found integer `1`",
            ),
            (
                "invalid type: sequence, expected a string",
                "expected a string, found array",
            ),
            (
                "invalid type: string \"a map\", expected u8",
                "expected u8, found string \"a map\"",
            ),
            (
                "invalid value: integer `-1`, expected a non-negative integer",
                "expected a non-negative integer, found integer `-1`",
            ),
            (
                "unknown field `foo`, expected one of `initial`, `max`, `reset_after`",
                "unknown key `foo`, expected one of: initial, max, reset_after",
            ),
            (
                "unknown field `b`, expected `a` or `c`",
                "unknown key `b`, expected one of: a, c",
            ),
            ("unknown field `b`, expected `a`", "unknown key `b`, expected one of: a"),
            (
                "unknown field `stack`, expected one of `nofile`, `as`, `rss`",
                "unknown key `stack`, expected one of: nofile, as",
            ),
            (
                "unknown field `b`, there are no fields",
                "unknown key `b`, this table takes no keys",
            ),
            ("duplicate key", "duplicate key"),
            ("expected a duration, found \"x\"", "expected a duration, found \"x\""),
            ("line one\nline two\n", "line one; line two"),
        ];
        for (serde, ours) in cases {
            assert_eq!(reword(serde), ours, "{serde}");
        }
    }

    #[test]
    fn invalid_spec_errors_show_file_line_column_key_and_message() {
        let err = SpecError::Invalid {
            file: "demo.toml".into(),
            line: 7,
            column: 8,
            key: Some("pools.echo.size".into()),
            message: "expected an integer >= 1, found 0".into(),
        };
        assert_eq!(
            err.to_string(),
            "demo.toml:7:8: pools.echo.size: expected an integer >= 1, found 0"
        );
        let syntax = SpecError::Invalid {
            file: "demo.toml".into(),
            line: 1,
            column: 5,
            key: None,
            message: "string values must be quoted".into(),
        };
        assert_eq!(syntax.to_string(), "demo.toml:1:5: string values must be quoted");
    }

    #[test]
    fn read_errors_name_the_file() {
        let err = SpecError::Read {
            path: "/nowhere/pitd.toml".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert_eq!(err.to_string(), "cannot read spec /nowhere/pitd.toml: entity not found");
    }
}
