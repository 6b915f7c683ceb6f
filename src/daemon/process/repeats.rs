//! A failed start's stderr, logged once. A pool whose workers cannot start (a bad import, a
//! missing model file) retries with backoff, and every attempt prints the same traceback:
//! 20 lines in pitd's log every 2 s bury everything else. So the stderr of a worker that
//! is still starting is compared, line by line as it comes, with the stderr of the pool's
//! last failed start: while it matches, its lines are held back, not logged; the first line
//! that differs releases them and everything after is logged as usual. When the stream ends
//! before the worker got ready and every line matched, one line says it was the same error
//! again and how many times in a row. Lines always reach the worker's ring (`pitctl logs`)
//! at once; only pitd's own log is spared.
//!
//! Pure: [`StartOutput`] decides from the lines, whether the worker is ready yet, and the
//! pool's [`FailedStart`]; `output.rs` does the logging.

/// Lines of a failed start remembered for the comparison; a longer output is logged as it
/// comes, every time.
pub const MAX_REMEMBERED: usize = 200;

/// The stderr of a pool's last failed start, and how many failed starts in a row printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedStart {
    pub worker: crate::ids::WorkerId,
    pub lines: Vec<String>,
    pub times: u32,
}

/// The stderr of one worker while it starts.
#[derive(Debug, Default)]
pub struct StartOutput {
    /// Lines that matched the last failed start so far, not logged yet.
    held: Vec<String>,
    /// Every line, while they fit, to become the next `FailedStart` if this start fails.
    seen: Vec<String>,
    /// A line differed (or there was nothing to compare with): log as they come.
    differs: bool,
    /// The worker got ready: nothing more is compared or remembered.
    started: bool,
    /// More lines than `MAX_REMEMBERED`: nothing is remembered.
    overflowed: bool,
}

/// What becomes of a worker's start output when its stderr ends.
#[derive(Debug, PartialEq, Eq)]
pub enum StartEnd {
    /// It got ready, or its output was logged as it came and is not worth remembering.
    Nothing,
    /// Every line was the last failed start's: say so in one line.
    Repeated {
        like: crate::ids::WorkerId,
        lines: usize,
        times: u32,
    },
    /// The held lines, to log now after all (the output was a part of the last one's).
    Release(Vec<String>),
    /// A new failed start's output, already logged: the pool remembers it.
    Remember(Vec<String>),
}

impl StartOutput {
    /// Whether the worker got ready: its lines are logged as they come from now on.
    pub fn started(&self) -> bool {
        self.started
    }

    /// One line of stderr; returns the lines to log now, in order.
    pub fn line(&mut self, line: String, ready: bool, last: Option<&FailedStart>) -> Vec<String> {
        if self.started || ready {
            self.started = true;
            let mut out = std::mem::take(&mut self.held);
            out.push(line);
            return out;
        }
        if !self.overflowed {
            if self.seen.len() < MAX_REMEMBERED {
                self.seen.push(line.clone());
            } else {
                self.overflowed = true;
                self.seen.clear();
                self.differs = true;
            }
        }
        if self.differs {
            return vec![line];
        }
        let matches = last.is_some_and(|l| l.lines.get(self.held.len()) == Some(&line));
        if matches {
            self.held.push(line);
            return Vec::new();
        }
        self.differs = true;
        let mut out = std::mem::take(&mut self.held);
        out.push(line);
        out
    }

    /// The stream ended (the worker exited, or closed stderr), `ready` saying whether it
    /// had got ready.
    pub fn end(self, ready: bool, last: Option<&FailedStart>) -> StartEnd {
        if self.started || ready {
            return match self.held.is_empty() {
                true => StartEnd::Nothing,
                false => StartEnd::Release(self.held),
            };
        }
        if !self.differs {
            if let Some(last) = last.filter(|l| !self.held.is_empty() && l.lines.len() == self.held.len()) {
                return StartEnd::Repeated {
                    like: last.worker,
                    lines: self.held.len(),
                    times: last.times + 1,
                };
            }
            if !self.held.is_empty() {
                return StartEnd::Release(self.held);
            }
        }
        if self.seen.is_empty() {
            StartEnd::Nothing
        } else {
            StartEnd::Remember(self.seen)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::WorkerId;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    /// Feeds `text` as a starting worker's stderr; returns what was logged and the end.
    fn run(text: &str, ready_after: Option<usize>, last: Option<&FailedStart>) -> (Vec<String>, StartEnd) {
        let mut out = StartOutput::default();
        let mut logged = Vec::new();
        for (i, l) in lines(text).into_iter().enumerate() {
            let ready = ready_after.is_some_and(|n| i >= n);
            logged.extend(out.line(l, ready, last));
        }
        (logged, out.end(ready_after.is_some(), last))
    }

    const TRACEBACK: &str =
        "Traceback (most recent call last):\n  File \"app.py\", line 1\nImportError: no module named x";

    fn failed(times: u32) -> FailedStart {
        FailedStart {
            worker: WorkerId(3),
            lines: lines(TRACEBACK),
            times,
        }
    }

    #[test]
    fn a_first_failure_is_logged_as_it_comes_and_remembered() {
        let (logged, end) = run(TRACEBACK, None, None);
        assert_eq!(logged, lines(TRACEBACK));
        assert_eq!(end, StartEnd::Remember(lines(TRACEBACK)));
    }

    #[test]
    fn the_same_failure_again_is_one_line_with_a_count() {
        let (logged, end) = run(TRACEBACK, None, Some(&failed(1)));
        assert!(logged.is_empty(), "{logged:?}");
        assert_eq!(
            end,
            StartEnd::Repeated {
                like: WorkerId(3),
                lines: 3,
                times: 2
            }
        );
    }

    #[test]
    fn a_different_line_releases_the_held_ones_in_order() {
        let other = "Traceback (most recent call last):\n  File \"app.py\", line 1\nValueError: bad config";
        let (logged, end) = run(other, None, Some(&failed(4)));
        assert_eq!(logged, lines(other));
        assert_eq!(end, StartEnd::Remember(lines(other)));
    }

    #[test]
    fn a_part_of_the_last_failure_is_logged_at_the_end() {
        let (logged, end) = run("Traceback (most recent call last):", None, Some(&failed(1)));
        assert!(logged.is_empty());
        assert_eq!(end, StartEnd::Release(lines("Traceback (most recent call last):")));
    }

    #[test]
    fn more_lines_than_the_last_failure_are_a_new_failure() {
        let longer = format!("{TRACEBACK}\nand one more line");
        let (logged, end) = run(&longer, None, Some(&failed(1)));
        assert_eq!(logged, lines(&longer));
        assert_eq!(end, StartEnd::Remember(lines(&longer)));
    }

    #[test]
    fn a_worker_that_gets_ready_logs_what_was_held_and_is_not_remembered() {
        // Its banner matched the last failure's first line; then it got ready.
        let text = "Traceback (most recent call last):\nready now";
        let (logged, end) = run(text, Some(1), Some(&failed(1)));
        assert_eq!(logged, lines(text));
        assert_eq!(end, StartEnd::Nothing);
        // Held lines still waiting when the stream ends after ready are released.
        let mut out = StartOutput::default();
        assert!(
            out.line("Traceback (most recent call last):".into(), false, Some(&failed(1)))
                .is_empty()
        );
        assert_eq!(
            out.end(true, Some(&failed(1))),
            StartEnd::Release(lines("Traceback (most recent call last):"))
        );
    }

    #[test]
    fn a_silent_failure_is_nothing_to_remember() {
        let (logged, end) = run("", None, Some(&failed(1)));
        assert!(logged.is_empty());
        assert_eq!(end, StartEnd::Nothing);
    }

    #[test]
    fn a_huge_output_is_logged_and_not_remembered() {
        let big: String = (0..MAX_REMEMBERED + 5).map(|i| format!("line {i}\n")).collect();
        let (logged, end) = run(&big, None, None);
        assert_eq!(logged.len(), MAX_REMEMBERED + 5);
        assert_eq!(end, StartEnd::Nothing);
    }
}
