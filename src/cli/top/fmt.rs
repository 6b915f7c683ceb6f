//! Small text formatters of `pitctl top`: sizes, memory figures, rates, bars, event lines.
//! Pure functions, each safe for any input (zero widths, zero maxima, negative rates).

use crate::proto::event::Event;
use crate::proto::status::{Measured, PoolStatus};

/// Compact IEC size ("12.0M"); "-" for zero, which status reports before the first sample.
pub fn bytes(n: u64) -> String {
    if n == 0 {
        "-".into()
    } else {
        bytesize::ByteSize(n).display().iec_short().to_string()
    }
}

/// A signed rate in bytes per second: "+1.5M/s", "-200B/s", "0/s".
pub fn growth(per_s: i64) -> String {
    let sign = match per_s.signum() {
        1 => "+",
        -1 => "-",
        _ => return "0/s".into(),
    };
    format!("{sign}{}/s", bytes(per_s.unsigned_abs()))
}

/// `value` as a bar of `width` cells, full at `max`.
pub fn bar(value: u64, max: u64, width: usize) -> String {
    let filled = if max == 0 {
        0
    } else {
        ((value as f64 / max as f64) * width as f64).round().min(width as f64) as usize
    };
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

/// The head of the memory column: the metric the pools show beside RSS ("PSS/USS" when
/// they differ); `None` when no pool shows one.
pub fn memory_head(pools: &[PoolStatus]) -> Option<&'static str> {
    let mut shown = pools.iter().filter_map(PoolStatus::shown_metric);
    let first = shown.next()?;
    Some(if shown.all(|m| m == first) {
        first.label()
    } else {
        "PSS/USS"
    })
}

/// A worker's figure in the memory column: its pool's shown metric, "-" where the pool has none.
pub fn memory_cell(pool: &PoolStatus, process: &(impl Measured + ?Sized)) -> String {
    pool.shown_metric()
        .map_or("-".into(), |m| bytes(pool.figure(process, m)))
}

/// An event as one line with the time of day only: the pane is narrow and shows recent ones.
pub fn short_event(ev: &Event) -> String {
    let full = crate::cli::events::line(ev);
    // RFC 3339 "2026-05-01T12:00:03.123Z": keep "12:00:03".
    match ev.ts.get(11..19) {
        Some(time) if ev.ts.as_bytes().get(10) == Some(&b'T') => full.replacen(&ev.ts, time, 1),
        _ => full,
    }
}

/// Cuts `text` into at most `lines` pieces of at most `width` characters, at spaces where it
/// can; the last piece ends with "..." when text was left out.
pub fn wrap(text: &str, width: usize, lines: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut start = 0;
    while start < chars.len() && out.len() < lines && width > 0 {
        let rest = &chars[start..];
        let cut = if rest.len() <= width {
            rest.len()
        } else {
            // A space at most one past the width ends a piece that fits exactly.
            rest[..=width]
                .iter()
                .rposition(|c| *c == ' ')
                .filter(|&i| i > 0)
                .unwrap_or(width)
        };
        out.push(rest[..cut].iter().collect::<String>());
        start += cut;
        while chars.get(start) == Some(&' ') {
            start += 1;
        }
    }
    if start < chars.len()
        && let Some(last) = out.last_mut()
    {
        let keep = last.chars().count().min(width.saturating_sub(3));
        *last = last.chars().take(keep).chain("...".chars()).take(width).collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_signed_and_per_second() {
        assert_eq!(growth(0), "0/s");
        assert_eq!(growth(1536 * 1024), "+1.5M/s");
        assert_eq!(growth(-2048), "-2.0K/s");
    }

    #[test]
    fn bar_fills_in_proportion_and_survives_zero() {
        assert_eq!(bar(5, 10, 4), "██░░");
        assert_eq!(bar(10, 10, 4), "████");
        assert_eq!(bar(3, 0, 3), "░░░");
        assert_eq!(bar(1, 1, 0), "");
    }

    #[test]
    fn wrap_breaks_at_spaces() {
        assert_eq!(wrap("one two three", 8, 3), ["one two", "three"]);
        assert_eq!(wrap("one two three", 7, 3), ["one two", "three"]);
        assert_eq!(wrap("one two three four", 9, 2), ["one two", "three..."]);
    }

    #[test]
    fn wrap_marks_cut_text() {
        assert_eq!(wrap("abcdefgh", 4, 2), ["abcd", "efgh"]);
        assert_eq!(wrap("abcdefghij", 4, 2), ["abcd", "e..."]);
        assert_eq!(wrap("abc", 2, 1), [".."]);
        assert!(wrap("abc", 0, 2).is_empty());
        assert!(wrap("", 5, 2).is_empty());
    }
}
