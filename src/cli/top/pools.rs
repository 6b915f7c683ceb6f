//! The pool pane of `pitctl top`: a line per pool (its workers, calls in flight against
//! capacity, counters, and its memory: RSS and the figure its workers show beside it, over
//! workers, template and spare together), then under it a preloaded pool's template and
//! spare, its warnings and why it is failing.
//!
//! Every line fits the pane: columns are dropped by priority (`columns`), text under a pool
//! is wrapped or shortened.

use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};

use super::columns::{Column, fit};
use super::fmt::{bytes, memory_head, wrap};
use super::state::State;
use crate::lifecycle::WorkerState;
use crate::proto::status::{MemoryMetric, PoolState, PoolStatus, ProcessStatus, TemplateStatus, WorkerStatus};

/// Lines of a failing pool's reason, and of each warning, shown under its line (the reason
/// quotes stderr).
const REASON_LINES: usize = 2;

/// Indent of the lines under a pool's line.
const INDENT: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Pool,
    State,
    Size,
    Ready,
    Busy,
    InFlight,
    Rate,
    Queued,
    Calls,
    Errors,
    Recycled,
    Restarts,
    Rss,
    Memory,
}

/// Display order. The pool column is as wide as the longest name (within bounds), the memory
/// column's head is the metric it shows.
const COLUMNS: [Column<Col>; 14] = [
    Column::new(Col::Pool, "POOL", 4, false),
    Column::new(Col::State, "STATE", 9, false),
    Column::new(Col::Size, "SIZE", 4, true),
    Column::new(Col::Ready, "READY", 5, true),
    Column::new(Col::Busy, "BUSY", 4, true),
    Column::new(Col::InFlight, "IN FLIGHT", 9, true),
    Column::new(Col::Rate, "CALLS/S", 8, true),
    Column::new(Col::Queued, "QUEUED", 6, true),
    Column::new(Col::Calls, "CALLS", 8, true),
    Column::new(Col::Errors, "ERRORS", 6, true),
    Column::new(Col::Recycled, "RECYCLED", 8, true),
    Column::new(Col::Restarts, "RESTARTS", 8, true),
    Column::new(Col::Rss, "RSS", 7, true),
    Column::new(Col::Memory, "PSS", 7, true),
];

/// Which columns survive a narrow terminal, most wanted first.
const PRIORITY: [Col; 14] = [
    Col::Pool,
    Col::State,
    Col::Ready,
    Col::Size,
    Col::InFlight,
    Col::Rate,
    Col::Rss,
    Col::Memory,
    Col::Errors,
    Col::Queued,
    Col::Calls,
    Col::Busy,
    Col::Restarts,
    Col::Recycled,
];

/// Bounds of the pool column: its head, and names longer than this are shortened.
const POOL_WIDTH: (u16, u16) = (4, 16);

/// The pane's lines for a pane `width` cells wide.
pub fn lines(state: &State, width: usize) -> Vec<Line<'static>> {
    let Some(status) = &state.status else {
        return Vec::new();
    };
    let columns = fitting(&status.pools, width);
    let pad = |c: &Column<Col>, text: &str| {
        let w = c.width as usize;
        if c.right {
            format!("{text:>w$}")
        } else {
            // Only the pool column can hold more than its width.
            let text = wrap(text, w, 1).pop().unwrap_or_default();
            format!("{text:<w$}")
        }
    };
    let head: Vec<String> = columns.iter().map(|c| pad(c, c.head)).collect();
    let mut lines = vec![Line::from(head.join(" ").trim_end().to_string()).bold()];
    let room = width.saturating_sub(INDENT);
    let under = |text: &str, style: Style, lines: &mut Vec<Line<'static>>| {
        for part in wrap(text, room, REASON_LINES) {
            lines.push(Line::from(format!("{:INDENT$}{part}", "")).style(style));
        }
    };
    for pool in &status.pools {
        let mut spans = Vec::new();
        for (i, c) in columns.iter().enumerate() {
            if i > 0 {
                spans.push(Span::from(" "));
            }
            let text = pad(c, &cell(state, pool, c.id));
            spans.push(match c.id {
                Col::Pool => Span::from(text).bold(),
                Col::State => Span::styled(text, pool_style(pool.state)),
                _ => Span::from(text),
            });
        }
        lines.push(Line::from(spans));
        if let Some(template) = &pool.template {
            for part in template_lines(pool, template, room) {
                lines.push(Line::from(format!("{:INDENT$}{part}", "")).dark_gray());
            }
        }
        if pool.streams_open > 0 {
            under(
                &format!("{} stream(s) open", pool.streams_open),
                Style::new().cyan(),
                &mut lines,
            );
        }
        if let Some(budget) = pool.memory_budget_bytes {
            let used = pool.memory.as_ref().map_or(0, |m| m.memory_bytes);
            let style = if used > budget {
                Style::new().red()
            } else {
                Style::new().dark_gray()
            };
            under(
                &format!("memory budget {}: {} used", bytes(budget), bytes(used)),
                style,
                &mut lines,
            );
        }
        for warning in &pool.warnings {
            under(&format!("warning: {warning}"), Style::new().yellow(), &mut lines);
        }
        if let Some(why) = &pool.failing_reason {
            under(why, Style::new().red(), &mut lines);
        }
    }
    if let Some(door) = &status.http {
        lines.push(Line::from(wrap(&door.summary(), width, 1).pop().unwrap_or_default()).cyan());
    }
    if let Some(b) = &status.memory_budget {
        let text = format!(
            "daemon memory budget {}: {} used",
            bytes(b.budget_bytes),
            bytes(b.used_bytes)
        );
        lines.push(Line::from(text).dark_gray());
    }
    lines
}

/// The columns that fit `width`; the memory column only when some pool shows a figure
/// beside RSS.
fn fitting(pools: &[PoolStatus], width: usize) -> Vec<Column<Col>> {
    let memory = memory_head(pools);
    let longest = pools.iter().map(|p| p.name.chars().count()).max().unwrap_or(0);
    let (narrowest, widest) = POOL_WIDTH;
    let mut columns = COLUMNS;
    for c in &mut columns {
        match c.id {
            Col::Pool => c.width = (longest as u16).clamp(narrowest, widest),
            Col::Memory => c.head = memory.unwrap_or(c.head),
            _ => {}
        }
    }
    let wanted: Vec<Col> = PRIORITY
        .into_iter()
        .filter(|c| memory.is_some() || *c != Col::Memory)
        .collect();
    fit(&columns, &wanted, width.min(u16::MAX as usize) as u16)
}

fn cell(state: &State, pool: &PoolStatus, col: Col) -> String {
    let count = |f: fn(&WorkerStatus) -> bool| pool.workers.iter().filter(|w| f(w)).count();
    match col {
        Col::Pool => pool.name.clone(),
        Col::State => pool.state.as_str().into(),
        Col::Size => pool.size.to_string(),
        Col::Ready => count(|w| matches!(w.state, WorkerState::Idle | WorkerState::Busy)).to_string(),
        Col::Busy => count(|w| w.state == WorkerState::Busy).to_string(),
        // Against capacity (ready workers x concurrency): how full the pool is.
        Col::InFlight => format!("{}/{}", pool.in_flight, pool.capacity),
        Col::Rate => state.calls_per_s(&pool.name).map_or("-".into(), |r| format!("{r:.1}")),
        Col::Queued => pool.queued.to_string(),
        Col::Calls => pool.requests.to_string(),
        Col::Errors => pool.errors.to_string(),
        Col::Recycled => pool.recycled.to_string(),
        Col::Restarts => pool.restarts.to_string(),
        // The whole footprint: a preloaded pool's template and spare count too; `+` marks a
        // total that leaves out a process not sampled yet.
        Col::Rss => partial_mark(pool, bytes(pool.total(MemoryMetric::Rss))),
        Col::Memory => pool
            .shown_metric()
            .map_or("-".into(), |m| partial_mark(pool, bytes(pool.total(m)))),
    }
}

/// `figure` with a `+` when the pool's total leaves a process out (not sampled yet).
fn partial_mark(pool: &PoolStatus, figure: String) -> String {
    match pool.memory.as_ref().is_some_and(|m| !m.complete) {
        true => format!("{figure}+"),
        false => figure,
    }
}

/// The preload template and its spare: no workers, so not in the worker table, but their
/// memory is the pool's. One line when both fit in `room`, else one each (shortened if even
/// that does not fit).
fn template_lines(pool: &PoolStatus, template: &TemplateStatus, room: usize) -> Vec<String> {
    let process = |name: &str, p: &ProcessStatus| {
        let metric = pool.shown_metric().map_or(String::new(), |m| {
            format!(" {} {}", m.label(), bytes(pool.figure(p, m)))
        });
        format!("{name} pid {} RSS {}{metric}", p.pid, bytes(p.rss_bytes))
    };
    let mut parts = vec![process("template", &template.process)];
    parts.extend(template.spare.as_ref().map(|s| process("spare", s)));
    let one = parts.join("; ");
    if one.chars().count() <= room {
        return vec![one];
    }
    parts.iter().filter_map(|p| wrap(p, room, 1).pop()).collect()
}

fn pool_style(state: PoolState) -> Style {
    match state {
        PoolState::Running => Style::new().green(),
        PoolState::Failing => Style::new().red().bold(),
        PoolState::Draining | PoolState::Drained => Style::new().yellow(),
        PoolState::Starting => Style::new().cyan(),
    }
}
