//! Turns a byte span in the spec text into what a user can find: a 1-based line and column,
//! and the dotted key path (`pools.echo.restart.max`) of the innermost key or value that
//! contains it. serde reports only spans, so the path comes from a `toml_edit` parse of the
//! same text, whose keys and values keep their spans.

use std::ops::Range;

use toml_edit::{Document, Item, Key, TableLike, Value};

/// Where an error points, before it is given a file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub line: usize,
    pub column: usize,
    /// `None` when the text is not valid TOML, so no key can be named.
    pub key: Option<String>,
}

/// A key (or array element) found at an offset: its dotted path and the span of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: String,
    pub key_span: Range<usize>,
}

pub struct Locator<'a> {
    text: &'a str,
    doc: Option<Document<&'a str>>,
}

impl<'a> Locator<'a> {
    pub fn new(text: &'a str) -> Self {
        Locator {
            text,
            doc: Document::parse(text).ok(),
        }
    }

    /// The 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(self.text, offset.min(self.text.len()));
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    /// The innermost key whose entry contains `offset`.
    pub fn find(&self, offset: usize) -> Option<Found> {
        let root = self.doc.as_ref()?.as_table();
        find_in_table(root, "", offset)
    }

    /// Locates a span: at its start, or at the start of its key when `at_key` is set (for
    /// errors about a key's presence rather than its value).
    pub fn locate(&self, span: &Range<usize>, at_key: bool) -> Located {
        let found = self.find(span.start);
        let offset = match (&found, at_key) {
            (Some(f), true) => f.key_span.start,
            _ => span.start,
        };
        let (line, column) = self.line_column(offset);
        Located {
            line,
            column,
            key: found.map(|f| f.path),
        }
    }
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn contains(span: Option<Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
}

/// Whether `key` can be written unquoted in TOML: `[A-Za-z0-9_-]+`.
pub fn is_bare_key(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Appends `key` to a dotted path, quoted as TOML would need it (`pools."a b"`).
fn join(prefix: &str, key: &str) -> String {
    let key = if is_bare_key(key) {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

fn find_in_table(table: &dyn TableLike, prefix: &str, offset: usize) -> Option<Found> {
    table.iter().find_map(|(name, item)| {
        let (key, _) = table.get_key_value(name)?;
        find_in_entry(key, item, &join(prefix, name), offset)
    })
}

fn find_in_entry(key: &Key, item: &Item, path: &str, offset: usize) -> Option<Found> {
    let key_span = key.span().unwrap_or(0..0);
    let here = || Found {
        path: path.to_string(),
        key_span: key_span.clone(),
    };
    match item {
        Item::None => None,
        Item::Value(value) => {
            // The entry runs from the key to the end of the value, so an offset on the key
            // or the `=` belongs to it as well.
            let end = value.span().map_or(key_span.end, |s| s.end);
            if !contains(Some(key_span.start..end), offset) {
                return None;
            }
            find_in_value(value, path, &key_span, offset).or_else(|| Some(here()))
        }
        // A `[header]` table's entries lie outside its header span, so always look inside
        // before deciding whether the header itself (or a dotted key) was meant.
        Item::Table(t) => find_in_table(t, path, offset)
            .or_else(|| (contains(t.span(), offset) || contains(key.span(), offset)).then(here)),
        Item::ArrayOfTables(tables) => tables.iter().enumerate().find_map(|(i, t)| {
            let path = format!("{path}[{i}]");
            find_in_table(t, &path, offset).or_else(|| {
                contains(t.span(), offset).then(|| Found {
                    path,
                    key_span: key_span.clone(),
                })
            })
        }),
    }
}

fn find_in_value(value: &Value, path: &str, key_span: &Range<usize>, offset: usize) -> Option<Found> {
    match value {
        Value::InlineTable(t) => find_in_table(t, path, offset),
        Value::Array(array) => array.iter().enumerate().find_map(|(i, v)| {
            if !contains(v.span(), offset) {
                return None;
            }
            let path = format!("{path}[{i}]");
            find_in_value(v, &path, key_span, offset).or_else(|| {
                Some(Found {
                    path,
                    key_span: key_span.clone(),
                })
            })
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The path and line:column found at the first occurrence of `needle`.
    fn at(text: &str, needle: &str) -> (Option<String>, usize, usize) {
        let offset = text.find(needle).expect("needle in text");
        let loc = Locator::new(text).locate(&(offset..offset + needle.len()), false);
        (loc.key, loc.line, loc.column)
    }

    fn path(text: &str, needle: &str) -> Option<String> {
        at(text, needle).0
    }

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let text = "a = 1\n\n  bé = \"x\"\nc = 2";
        let loc = Locator::new(text);
        assert_eq!(loc.line_column(0), (1, 1));
        assert_eq!(loc.line_column(4), (1, 5));
        assert_eq!(loc.line_column(6), (2, 1));
        let q = text.find('"').unwrap();
        assert_eq!(loc.line_column(q), (3, 8));
        assert_eq!(loc.line_column(text.find("c =").unwrap()), (4, 1));
        assert_eq!(loc.line_column(text.len()), (4, 6));
    }

    #[test]
    fn key_paths_name_the_innermost_key() {
        let text = "\
[daemon]
control_mode = \"0600\"

[pools.echo]
size = 0
env = { A = 1, B = \"x\" }
command = [\"python3\", 7]

[pools.echo.restart]
initial = \"oops\"

[pools.web]
restart.max = \"1s\"
rlimits = { nofile = 9 }
";
        assert_eq!(path(text, "\"0600\""), Some("daemon.control_mode".into()));
        assert_eq!(path(text, "0\n"), Some("pools.echo.size".into()));
        assert_eq!(path(text, "1, B"), Some("pools.echo.env.A".into()));
        assert_eq!(path(text, "\"x\""), Some("pools.echo.env.B".into()));
        assert_eq!(path(text, "7]"), Some("pools.echo.command[1]".into()));
        assert_eq!(path(text, "\"1s\""), Some("pools.web.restart.max".into()));
        assert_eq!(path(text, "\"oops\""), Some("pools.echo.restart.initial".into()));
        assert_eq!(path(text, "9"), Some("pools.web.rlimits.nofile".into()));
        assert_eq!(path(text, "echo]"), Some("pools.echo".into()));
        assert_eq!(
            at(text, "\"oops\""),
            (Some("pools.echo.restart.initial".into()), 10, 11)
        );
    }

    #[test]
    fn inline_pool_tables_and_array_of_tables_are_walked() {
        let text = "pools = { a = { size = 2, restart = { max = \"x\" } } }\n[[t]]\nv = 1\n[[t]]\nv = 2\n";
        assert_eq!(path(text, "2,"), Some("pools.a.size".into()));
        assert_eq!(path(text, "\"x\""), Some("pools.a.restart.max".into()));
        assert_eq!(path(text, "2\n"), Some("t[1].v".into()));
        assert_eq!(
            path("[pools.\"a b\"]\nsize = 1\n", "1"),
            Some("pools.\"a b\".size".into())
        );
    }

    #[test]
    fn at_key_points_at_the_key_instead_of_the_value() {
        let text = "[pools.a]\nmax_rss   = \"1GiB\"\n";
        let start = text.find("\"1GiB\"").unwrap();
        let loc = Locator::new(text).locate(&(start..start + 6), true);
        assert_eq!((loc.line, loc.column), (2, 1));
        assert_eq!(loc.key.as_deref(), Some("pools.a.max_rss"));
    }

    #[test]
    fn invalid_toml_has_a_position_but_no_key() {
        let loc = Locator::new("a = \n").locate(&(4..4), false);
        assert_eq!((loc.line, loc.column, loc.key), (1, 5, None));
    }
}
