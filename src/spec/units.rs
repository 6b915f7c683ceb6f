//! Value types of the spec that TOML has no native form for: durations, byte sizes, octal
//! file modes, and non-negative counts. Each is a `Deserialize` newtype, so a bad value fails
//! inside serde and the TOML error carries the value's span; the messages follow the
//! "expected ..., found ..." shape of `error.rs`.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Unexpected, Visitor};

/// A duration written as a string: `"150ms"`, `"30s"`, `"5m"`, `"1h"` (humantime syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

/// A byte count: a string with a unit (`"512MiB"`, `"2GB"`) or a plain integer of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

/// File mode bits written as an octal string: `"0600"`, at most `"0777"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

/// A non-negative integer. Ranges narrower than `u64` are checked during validation, where
/// the rule ("an integer >= 1") can be said in the user's words rather than as `u32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count(pub u64);

/// Parses a duration string; the error is the user-facing "expected ..., found ..." text.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|_| format!("expected a duration like \"150ms\", \"30s\", \"5m\" or \"1h\", found {s:?}"))
}

/// Parses a size string with a unit (`"512MiB"`, `"2GB"`) or bare digits (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("expected a size like \"512MiB\", \"2GB\" or a number of bytes, found {s:?}");
    let t = s.trim();
    // bytesize accepts a lone unit ("MiB") as zero bytes and saturates on overflow; both
    // would silently turn a typo into a limit, so require a leading digit and refuse the cap.
    if !t.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(bad());
    }
    match t.parse::<bytesize::ByteSize>() {
        Ok(b) if b.as_u64() != u64::MAX => Ok(b.as_u64()),
        _ => Err(bad()),
    }
}

/// Parses an octal mode string such as `"0600"` or `"660"`.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let bad = || format!("expected an octal file mode like \"0600\" (at most \"0777\"), found {s:?}");
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(bad());
    }
    match u32::from_str_radix(s, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(bad()),
    }
}

/// Formats a byte count the way `pitd --check` and error messages show it (`512.0 MiB`).
pub fn show_size(bytes: u64) -> String {
    bytesize::ByteSize(bytes).to_string()
}

/// Formats a duration the way it would be written in the spec (`30s`, `1m 30s`).
pub fn show_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A visitor for string-only units: everything but a string is a type error whose message
/// comes from `expecting`.
struct StrVisitor<T> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
}

impl<T> Visitor<'_> for StrVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor {
            expecting: "a duration string like \"30s\"",
            parse: parse_duration,
        })
        .map(Dur)
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Integers are refused on purpose: `600` and `0o600` are different numbers in TOML,
        // and a string keeps the octal reading that chmod users expect.
        d.deserialize_str(StrVisitor {
            expecting: "an octal mode string like \"0600\"",
            parse: parse_mode,
        })
        .map(Mode)
    }
}

/// Parses a unit string to a number, or says what was expected.
type ParseNum = fn(&str) -> Result<u64, String>;

/// Accepts non-negative integers, and strings when `parse` is given (sizes).
struct NumVisitor {
    expecting: &'static str,
    parse: Option<ParseNum>,
}

impl Visitor<'_> for NumVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        match self.parse {
            Some(parse) => parse(v).map_err(E::custom),
            None => Err(E::invalid_type(Unexpected::Str(v), &self)),
        }
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumVisitor {
            expecting: "a size like \"512MiB\" or a number of bytes",
            parse: Some(parse_size),
        })
        .map(Size)
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumVisitor {
            expecting: "a non-negative integer",
            parse: None,
        })
        .map(Count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_humantime_syntax() {
        let ok = [
            ("150ms", Duration::from_millis(150)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("1m 30s", Duration::from_secs(90)),
            ("1.5h", Duration::from_secs(5400)),
            ("0s", Duration::ZERO),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for text in ["", "30", "soon", "-1s", "1h30", "30 parsecs"] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.starts_with("expected a duration"), "{text}: {err}");
            assert!(err.ends_with(&format!("found {text:?}")), "{text}: {err}");
        }
    }

    #[test]
    fn sizes_parse_with_si_and_iec_units_or_as_bytes() {
        let ok = [
            ("512MiB", 512 << 20),
            ("512 MiB", 512 << 20),
            ("2GB", 2_000_000_000),
            ("1GiB", 1 << 30),
            ("1.5KiB", 1536),
            ("4096", 4096),
            ("0", 0),
        ];
        for (text, want) in ok {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
        for text in ["", "MiB", "-1MiB", "12 parsecs", "lots", "99999999999999EiB"] {
            let err = parse_size(text).unwrap_err();
            assert!(err.starts_with("expected a size"), "{text}: {err}");
        }
    }

    #[test]
    fn modes_are_octal_strings_up_to_0777() {
        let ok = [("0600", 0o600), ("660", 0o660), ("0777", 0o777), ("0", 0)];
        for (text, want) in ok {
            assert_eq!(parse_mode(text), Ok(want), "{text}");
        }
        for text in ["", "0800", "1777", "07777", "rw-", "0x1ff", "-600"] {
            assert!(parse_mode(text).is_err(), "{text}");
        }
    }

    #[derive(Deserialize, Debug)]
    struct Doc {
        d: Option<Dur>,
        s: Option<Size>,
        m: Option<Mode>,
        c: Option<Count>,
    }

    fn de(text: &str) -> Result<Doc, String> {
        toml::from_str(text).map_err(|e| e.message().to_string())
    }

    #[test]
    fn newtypes_deserialize_from_toml_and_reject_wrong_types() {
        let doc = de("d = \"2s\"\ns = 10\nm = \"0640\"\nc = 3").unwrap();
        assert_eq!(doc.d, Some(Dur(Duration::from_secs(2))));
        assert_eq!(doc.s, Some(Size(10)));
        assert_eq!(doc.m, Some(Mode(0o640)));
        assert_eq!(doc.c, Some(Count(3)));
        assert_eq!(de("s = \"1KiB\"").unwrap().s, Some(Size(1024)));

        let cases = [
            (
                "d = 30",
                "invalid type: integer `30`, expected a duration string like \"30s\"",
            ),
            (
                "m = 600",
                "invalid type: integer `600`, expected an octal mode string like \"0600\"",
            ),
            ("c = -1", "invalid value: integer `-1`, expected a non-negative integer"),
            (
                "c = \"3\"",
                "invalid type: string \"3\", expected a non-negative integer",
            ),
            (
                "s = -5",
                "invalid value: integer `-5`, expected a size like \"512MiB\" or a number of bytes",
            ),
            (
                "s = \"x\"",
                "expected a size like \"512MiB\", \"2GB\" or a number of bytes, found \"x\"",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(de(text).unwrap_err(), want, "{text}");
        }
    }
}
