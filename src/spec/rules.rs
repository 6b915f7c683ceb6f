//! Rules for single values shared by `validate` and `policy`: defaults, choices among
//! words, durations above zero and counts in range. Each failure is a `Problem` at the value.

use std::time::Duration;

use super::error::{Problem, Result};
use super::raw::Opt;
use super::units::{Count, Dur};

/// The value if written, mapped by `f`, else `default`.
pub fn value_or<T, U>(raw: &Opt<T>, default: U, f: impl FnOnce(&T) -> U) -> U {
    raw.as_ref().map_or(default, |v| f(v.get_ref()))
}

/// One of a fixed set of words.
pub fn choice<T: Copy>(raw: &Opt<String>, choices: &[(&str, T)], default: T) -> Result<T> {
    let Some(given) = raw else { return Ok(default) };
    if let Some((_, value)) = choices.iter().find(|(word, _)| word == given.get_ref()) {
        return Ok(*value);
    }
    let words: Vec<String> = choices.iter().map(|(w, _)| format!("\"{w}\"")).collect();
    let (last, rest) = words.split_last().expect("choices are never empty");
    let msg = format!("expected {} or {last}, found {:?}", rest.join(", "), given.get_ref());
    Err(Problem::value(given.span(), msg))
}

/// A duration that must be above zero, because zero would mean "never wait" or a busy loop.
pub fn positive(raw: &Opt<Dur>, default: Duration) -> Result<Duration> {
    Ok(optional_positive(raw)?.unwrap_or(default))
}

pub fn optional_positive(raw: &Opt<Dur>) -> Result<Option<Duration>> {
    match raw {
        Some(d) if d.get_ref().0.is_zero() => Err(Problem::value(d.span(), "expected a duration above 0s, found 0s")),
        Some(d) => Ok(Some(d.get_ref().0)),
        None => Ok(None),
    }
}

/// The integer types counts are stored in, with their largest value for messages.
pub trait Int: TryFrom<u64> {
    const MAX: u64;
}

impl Int for u32 {
    const MAX: u64 = u32::MAX as u64;
}

impl Int for u64 {
    const MAX: u64 = u64::MAX;
}

impl Int for usize {
    const MAX: u64 = usize::MAX as u64;
}

/// An integer of type `T` that must be at least `min`.
pub fn count<T: Int>(raw: &Opt<Count>, min: u64, default: T) -> Result<T> {
    Ok(optional_count(raw, min)?.unwrap_or(default))
}

pub fn optional_count<T: Int>(raw: &Opt<Count>, min: u64) -> Result<Option<T>> {
    let Some(given) = raw else { return Ok(None) };
    let n = given.get_ref().0;
    match T::try_from(n) {
        Ok(v) if n >= min => Ok(Some(v)),
        Ok(_) => Err(Problem::value(
            given.span(),
            format!("expected an integer >= {min}, found {n}"),
        )),
        Err(_) => {
            let msg = format!("expected an integer from {min} to {}, found {n}", T::MAX);
            Err(Problem::value(given.span(), msg))
        }
    }
}
