//! Durations on pitctl's command line: read as `timeout(1)` and `sleep(1)` read them (a bare
//! number is seconds, "0.2"), or with units ("500ms", "1.5s", "1m30s"); and written in the
//! unit a person reads ("502 ms", "87 us", "1.24 s").
//!
//! The spec's durations are not read here: INTERFACE section 1 wants units there, so a bare
//! number in a spec stays an error (`spec::units`).

use std::time::Duration;

/// Parses a duration flag's value. Negative, NaN, infinite and empty values are refused with
/// a message that says why.
pub fn parse(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("a duration is needed: seconds (0.5) or a number with a unit (500ms, 5s)".into());
    }
    if text.starts_with('-') {
        return Err(format!("a duration cannot be negative, found {s:?}"));
    }
    if let Ok(secs) = text.parse::<f64>() {
        if secs.is_nan() {
            return Err(format!("expected a number of seconds, found {s:?}"));
        }
        return Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is too long for a duration"));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("expected seconds (0.5) or a number with a unit (500ms, 5s, 1m30s), found {s:?}: {e}"))
}

/// `d` with three significant digits in µs, ms or s ("87 us", "1.23 ms", "502 ms", "1.24 s");
/// whole microseconds below a millisecond, the resolution pitctl measures in.
pub fn human(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    // Rounding could print "1000 us" or "1000 ms": those go up a unit.
    if us < 999.5 {
        return format!("{} us", us.round() as u64);
    }
    let ms = us / 1e3;
    if ms < 999.5 {
        return format!("{} ms", three_digits(ms));
    }
    format!("{} s", three_digits(ms / 1e3))
}

/// `v` (at least 0.9995) with three significant digits, or more for values of 1000 and up.
fn three_digits(v: f64) -> String {
    if v >= 99.95 {
        format!("{v:.0}")
    } else if v >= 9.995 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_number_is_seconds_and_units_still_work() {
        let ms = Duration::from_millis;
        let cases = [
            ("0.2", ms(200)),
            ("30", ms(30_000)),
            ("1.5", ms(1500)),
            ("0", ms(0)),
            (" 2 ", ms(2000)),
            ("1e1", ms(10_000)),
            ("500ms", ms(500)),
            ("1.5s", ms(1500)),
            ("1m30s", ms(90_000)),
            ("5m", ms(300_000)),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn negative_nan_infinite_empty_and_unknown_values_are_refused_saying_why() {
        let cases = [
            ("", "a duration is needed"),
            ("  ", "a duration is needed"),
            ("-1", "cannot be negative"),
            ("-0.5", "cannot be negative"),
            ("-5s", "cannot be negative"),
            ("NaN", "expected a number of seconds"),
            ("nan", "expected a number of seconds"),
            ("inf", "too long"),
            ("1e400", "too long"),
            ("5 parsecs", "expected seconds (0.5) or a number with a unit"),
            ("0.2.1", "expected seconds (0.5) or a number with a unit"),
        ];
        for (text, why) in cases {
            let err = parse(text).expect_err(text);
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn every_duration_flag_takes_bare_seconds_refuses_negatives_and_says_so_in_its_help() {
        use clap::{CommandFactory, Parser};

        use crate::cli::{Cli, Command};

        let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once("pitctl").chain(args.iter().copied()));
        // (the command line with 0.2 as the duration, the flag's id)
        let flags: [(&[&str], &str); 6] = [
            (&["call", "p", "m", "--timeout", "0.2"], "timeout"),
            (&["bench", "p", "--duration", "0.2"], "duration"),
            (&["bench", "p", "-d", "0.2"], "duration"),
            (&["top", "--interval", "0.2"], "interval"),
            (&["shutdown", "--wait", "--timeout", "0.2"], "timeout"),
            (&["probe", "live", "--timeout", "0.2"], "timeout"),
        ];
        for (args, flag) in flags {
            let cli = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let taken = match cli.command {
                Command::Call { timeout, .. } => timeout,
                Command::Bench { duration, .. } => Some(duration),
                Command::Top { interval } => Some(interval),
                Command::Shutdown { timeout, .. } | Command::Probe { timeout, .. } => Some(timeout),
                other => panic!("{args:?} parsed as {other:?}"),
            };
            assert_eq!(taken, Some(Duration::from_millis(200)), "{args:?}");

            let refused = [
                ("-1", "cannot be negative"),
                ("-0.5s", "cannot be negative"),
                ("NaN", "expected a number of seconds"),
                ("", "a duration is needed"),
            ];
            for (bad, why) in refused {
                let line: Vec<&str> = args.iter().map(|a| if *a == "0.2" { bad } else { a }).collect();
                let err = parse(&line).expect_err(bad);
                assert_eq!(err.exit_code(), 2, "{line:?} is a usage error");
                assert!(err.to_string().contains(why), "{line:?}: {err}");
            }

            let mut cli = Cli::command();
            let sub = cli.find_subcommand_mut(args[0]).unwrap();
            let help = sub
                .get_arguments()
                .find(|a| a.get_id() == flag)
                .unwrap()
                .get_help()
                .unwrap()
                .to_string();
            assert!(help.contains("seconds ("), "--{flag} of {}: {help}", args[0]);
            let general = cli.get_after_help().unwrap().to_string();
            assert!(general.contains(&format!("{} --{flag}", args[0])), "{general}");
        }
    }

    #[test]
    fn durations_are_written_in_the_unit_a_person_reads() {
        let us = Duration::from_micros;
        let cases = [
            (us(0), "0 us"),
            (us(87), "87 us"),
            (us(999), "999 us"),
            (Duration::from_nanos(999_600), "1.00 ms"),
            (us(1234), "1.23 ms"),
            (us(12_345), "12.3 ms"),
            (us(99_960), "100 ms"),
            (us(501_917), "502 ms"),
            (us(999_600), "1.00 s"),
            (us(1_240_000), "1.24 s"),
            (us(61_000_000), "61.0 s"),
            (us(4_000_000_000), "4000 s"),
        ];
        for (d, want) in cases {
            assert_eq!(human(d), want, "{d:?}");
        }
    }
}
