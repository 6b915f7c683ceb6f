//! Worker output as lines: a stream's bytes cut into lines of bounded length, and the
//! budget that keeps a chatty worker (or template) from turning pitd's own log into a log
//! pump. Pure but for the budget's clock, which the caller passes in.

/// Longer lines are cut into pieces of this size: one line cannot eat the ring.
pub const MAX_LINE: usize = 8 * 1024;

/// Lines per second per stream that also go to pitd's own log; the rest are only kept in
/// the ring. A worker printing at full speed must not turn pitd into a log pump.
pub const LOG_LINES_PER_S: f64 = 100.0;
const LOG_BURST: f64 = 200.0;

/// A token bucket for logging one stream's lines (a worker's, or a preload template's).
pub struct LogBudget {
    tokens: f64,
    last: std::time::Instant,
    suppressed: u64,
}

impl Default for LogBudget {
    fn default() -> Self {
        LogBudget::new()
    }
}

impl LogBudget {
    pub fn new() -> LogBudget {
        LogBudget {
            tokens: LOG_BURST,
            last: std::time::Instant::now(),
            suppressed: 0,
        }
    }

    /// Whether to log the next line; counts the ones it refuses.
    pub fn allow(&mut self, now: std::time::Instant) -> bool {
        let earned = now.saturating_duration_since(self.last).as_secs_f64() * LOG_LINES_PER_S;
        self.tokens = (self.tokens + earned).min(LOG_BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// The lines refused since the last call, to say so once logging resumes.
    pub fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }
}

/// Complete lines from the front of `partial` (without their `\n` or `\r\n`), lines
/// longer than `MAX_LINE` cut into pieces of that size, and at `eof` the unterminated
/// rest; what remains is the start of the next line.
pub fn take_lines(partial: &mut Vec<u8>, eof: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let mut start = 0;
    loop {
        let rest = &partial[start..];
        let (end, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(pos) if pos <= MAX_LINE => (start + pos, start + pos + 1),
            _ if rest.len() >= MAX_LINE => (start + MAX_LINE, start + MAX_LINE),
            _ if eof && !rest.is_empty() => (partial.len(), partial.len()),
            _ => break,
        };
        let line = &partial[start..end];
        let line = if next > end {
            line.strip_suffix(b"\r").unwrap_or(line)
        } else {
            line
        };
        lines.push(String::from_utf8_lossy(line).into_owned());
        start = next;
    }
    partial.drain(..start);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_lines_splits_cuts_long_lines_and_keeps_the_unfinished_one() {
        let mut partial = b"one\ntwo  \r\nthr".to_vec();
        assert_eq!(take_lines(&mut partial, false), ["one", "two  "]);
        assert_eq!(partial, b"thr");
        partial.extend_from_slice(b"ee\n");
        assert_eq!(take_lines(&mut partial, false), ["three"]);
        assert!(partial.is_empty());

        let mut long = vec![b'x'; MAX_LINE * 2 + 10];
        let pieces = take_lines(&mut long, false);
        assert_eq!(pieces.len(), 2);
        assert!(pieces.iter().all(|p| p.len() == MAX_LINE));
        assert_eq!(long.len(), 10, "the rest waits for its newline");
        assert_eq!(take_lines(&mut long, true), ["x".repeat(10)]);
        assert!(long.is_empty());
        assert!(take_lines(&mut long, true).is_empty());
    }

    #[test]
    fn log_budget_allows_a_burst_then_the_rate() {
        let mut b = LogBudget::new();
        let t0 = b.last;
        let burst = (0..1000).filter(|_| b.allow(t0)).count();
        assert_eq!(burst, LOG_BURST as usize);
        assert_eq!(b.suppressed, 1000 - LOG_BURST as u64);
        let later = t0 + std::time::Duration::from_secs(1);
        let refill = (0..1000).filter(|_| b.allow(later)).count();
        assert_eq!(refill, LOG_LINES_PER_S as usize);
    }
}
