//! The worker table of `pitctl top`: one row per worker (or per pool without workers),
//! grouped by pool, the selected row marked.
//!
//! A narrow terminal drops whole columns, least useful first, instead of cutting every
//! column down to unreadable stubs; the remaining ones keep their display order.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::widgets::{Block, Cell, Row, Table, TableState};

use super::fmt::{bar, bytes, growth};
use super::state::State;
use crate::cli::status::age;
use crate::lifecycle::{Health, WorkerState};
use crate::proto::status::{PoolStatus, WorkerStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Pool,
    Id,
    Pid,
    State,
    Health,
    Rss,
    Bar,
    Growth,
    Cpu,
    Calls,
    InFlight,
    Errors,
    Age,
    Last,
}

/// Cells of the RSS bar.
const BAR_WIDTH: usize = 10;

/// Display order: column, header, width, right-aligned.
const COLUMNS: [(Col, &str, u16, bool); 14] = [
    (Col::Pool, "POOL", 8, false),
    (Col::Id, "ID", 10, false),
    (Col::Pid, "PID", 7, true),
    (Col::State, "STATE", 8, false),
    (Col::Health, "HEALTH", 7, false),
    (Col::Rss, "RSS", 7, true),
    (Col::Bar, "RSS BAR", BAR_WIDTH as u16, false),
    (Col::Growth, "GROWTH", 9, true),
    (Col::Cpu, "CPU%", 5, true),
    (Col::Calls, "CALLS", 7, true),
    (Col::InFlight, "IN FLIGHT", 9, true),
    (Col::Errors, "ERRORS", 6, true),
    (Col::Age, "AGE", 6, true),
    (Col::Last, "LAST RECYCLE", 12, false),
];

/// Which columns survive a narrow terminal, most wanted first.
const PRIORITY: [Col; 14] = [
    Col::Id,
    Col::State,
    Col::Rss,
    Col::Cpu,
    Col::Pool,
    Col::Calls,
    Col::InFlight,
    Col::Health,
    Col::Errors,
    Col::Pid,
    Col::Age,
    Col::Growth,
    Col::Bar,
    Col::Last,
];

/// Room taken by the borders and the highlight symbol.
const CHROME: u16 = 4;

/// The columns that fit `width`, in display order. Calls in flight per worker are shown
/// only when some pool runs several at once: elsewhere the state (busy) says it all.
fn fitting(width: u16, concurrent: bool) -> Vec<(Col, &'static str, u16, bool)> {
    let mut room = width.saturating_sub(CHROME);
    let mut chosen = Vec::new();
    for col in PRIORITY.into_iter().filter(|c| concurrent || *c != Col::InFlight) {
        let (_, _, w, _) = COLUMNS
            .iter()
            .find(|c| c.0 == col)
            .copied()
            .expect("every column has a spec");
        // Each column after the first costs one more cell of spacing.
        let cost = w + u16::from(!chosen.is_empty());
        if cost > room {
            break;
        }
        room -= cost;
        chosen.push(col);
    }
    COLUMNS.into_iter().filter(|c| chosen.contains(&c.0)).collect()
}

pub fn render(state: &State, frame: &mut Frame, area: Rect) {
    let concurrent = state
        .status
        .as_ref()
        .is_some_and(|s| s.pools.iter().any(|p| p.concurrency > 1));
    let columns = fitting(area.width, concurrent);
    let align = |text: &str, width: u16, right: bool| {
        if right {
            format!("{text:>w$}", w = width as usize)
        } else {
            text.to_string()
        }
    };
    let header = Row::new(columns.iter().map(|&(_, h, w, right)| align(h, w, right))).bold();
    let rows = state.rows();
    let mut previous_pool = None;
    let body: Vec<Row> = rows
        .iter()
        .map(|&(pool, worker)| {
            // The pool name only on its first row: the table reads as groups.
            let name = if previous_pool == Some(&pool.name) {
                ""
            } else {
                pool.name.as_str()
            };
            previous_pool = Some(&pool.name);
            Row::new(columns.iter().map(|&(col, _, w, right)| {
                let (text, style) = match worker {
                    Some(worker) => cell(col, name, pool, worker),
                    None => no_workers(col, name),
                };
                Cell::from(align(&text, w, right)).style(style)
            }))
        })
        .collect();
    // The last column takes what is left, so long recycle reasons show in full when there is room.
    let widths: Vec<Constraint> = columns
        .iter()
        .enumerate()
        .map(|(i, &(_, _, w, _))| {
            if i + 1 == columns.len() {
                Constraint::Min(w)
            } else {
                Constraint::Length(w)
            }
        })
        .collect();
    let title = format!(" workers ({}, sort: {}) ", rows.len(), state.sort.name());
    let table = Table::new(body, widths)
        .header(header)
        .block(Block::bordered().title(title))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    let mut table_state = TableState::default().with_selected(state.selected_index());
    frame.render_stateful_widget(table, area, &mut table_state);
}

fn cell(col: Col, pool_name: &str, pool: &PoolStatus, w: &WorkerStatus) -> (String, Style) {
    let plain = Style::new();
    match col {
        Col::Pool => (pool_name.to_string(), plain.bold()),
        Col::Id => (w.id.to_string(), plain),
        Col::Pid => (if w.pid == 0 { "-".into() } else { w.pid.to_string() }, plain),
        Col::State => (w.state.as_str().into(), state_style(w.state)),
        Col::Health => {
            let style = match w.health {
                Health::Ok => plain,
                Health::Failing => plain.red().bold(),
                Health::Unknown => plain.dark_gray(),
            };
            (w.health.as_str().into(), style)
        }
        Col::Rss => (bytes(w.rss_bytes), plain),
        Col::Bar => {
            // Against max_rss when the pool has one, else against its largest worker.
            let largest = pool.workers.iter().map(|w| w.rss_bytes).max().unwrap_or(0);
            let scale = pool.max_rss_bytes.unwrap_or(largest);
            let style = if pool.max_rss_bytes.is_some_and(|m| w.rss_bytes >= m) {
                plain.red()
            } else {
                plain.magenta()
            };
            (bar(w.rss_bytes.min(scale), scale, BAR_WIDTH), style)
        }
        Col::Growth => (growth(w.rss_growth_bytes_per_s), plain),
        Col::Cpu => (format!("{:.1}", w.cpu_percent), plain),
        Col::Calls => (w.requests.to_string(), plain),
        // Against its slots where it has several (full: no more calls go to it); with one,
        // calls pipelined behind the running one count too, so a plain number.
        Col::InFlight if pool.concurrency > 1 => {
            let full = w.in_flight >= pool.concurrency;
            let text = format!("{}/{}", w.in_flight, pool.concurrency);
            (text, if full { plain.cyan() } else { plain })
        }
        Col::InFlight => (w.in_flight.to_string(), plain),
        Col::Errors => (w.errors.to_string(), if w.errors > 0 { plain.red() } else { plain }),
        Col::Age => (age(w.age_s), plain),
        Col::Last => (w.last_recycle_reason.map_or("-", |r| r.as_str()).into(), plain),
    }
}

/// The row of a pool that has no workers (drained, or failing between restarts).
fn no_workers(col: Col, pool_name: &str) -> (String, Style) {
    match col {
        Col::Pool => (pool_name.to_string(), Style::new().bold()),
        Col::Id => ("no workers".into(), Style::new().dark_gray()),
        _ => (String::new(), Style::new()),
    }
}

fn state_style(state: WorkerState) -> Style {
    match state {
        WorkerState::Idle => Style::new().green(),
        WorkerState::Busy => Style::new().cyan(),
        WorkerState::Starting => Style::new().blue(),
        WorkerState::Draining | WorkerState::Stopping | WorkerState::Exited => Style::new().yellow(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_tables_drop_whole_columns_by_priority_and_keep_display_order() {
        let names = |w, concurrent| fitting(w, concurrent).iter().map(|c| c.1).collect::<Vec<_>>();
        assert_eq!(names(140, true).len(), COLUMNS.len());
        assert_eq!(names(50, true), ["POOL", "ID", "STATE", "RSS", "CPU%"]);
        assert_eq!(names(20, true), ["ID"]);
        assert!(names(5, true).is_empty());
        // Without concurrent pools the column is left out, and 120 cells fit every other.
        assert!(!names(140, false).contains(&"IN FLIGHT"));
        assert_eq!(names(120, false).len(), COLUMNS.len() - 1);
        assert_eq!(
            names(66, true),
            ["POOL", "ID", "STATE", "RSS", "CPU%", "CALLS", "IN FLIGHT"]
        );
    }
}
