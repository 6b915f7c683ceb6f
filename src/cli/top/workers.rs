//! The worker table of `pitctl top`: one row per worker (or per pool without workers),
//! grouped by pool, the selected row marked; a narrow terminal drops whole columns
//! (`columns`).

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::widgets::{Block, Cell, Row, Table, TableState};

use super::columns::{Column, fit};
use super::fmt::{bar, bytes, growth, memory_cell, memory_head};
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
    Memory,
    Bar,
    Growth,
    Cpu,
    Calls,
    InFlight,
    Errors,
    Age,
    Last,
}

/// Cells of the memory bar.
const BAR_WIDTH: usize = 10;

/// Display order. The memory column's head is the metric it shows (`memory_head`).
const COLUMNS: [Column<Col>; 15] = [
    Column::new(Col::Pool, "POOL", 8, false),
    Column::new(Col::Id, "ID", 10, false),
    Column::new(Col::Pid, "PID", 7, true),
    Column::new(Col::State, "STATE", 8, false),
    Column::new(Col::Health, "HEALTH", 7, false),
    Column::new(Col::Rss, "RSS", 7, true),
    Column::new(Col::Memory, "PSS", 7, true),
    Column::new(Col::Bar, "MEM BAR", BAR_WIDTH as u16, false),
    Column::new(Col::Growth, "GROWTH", 9, true),
    Column::new(Col::Cpu, "CPU%", 5, true),
    Column::new(Col::Calls, "CALLS", 7, true),
    Column::new(Col::InFlight, "IN FLIGHT", 9, true),
    Column::new(Col::Errors, "ERRORS", 6, true),
    Column::new(Col::Age, "AGE", 6, true),
    Column::new(Col::Last, "LAST RECYCLE", 12, false),
];

/// Which columns survive a narrow terminal, most wanted first.
const PRIORITY: [Col; 15] = [
    Col::Id,
    Col::State,
    Col::Rss,
    Col::Memory,
    Col::Cpu,
    Col::Pool,
    Col::Calls,
    Col::InFlight,
    Col::Errors,
    Col::Health,
    Col::Pid,
    Col::Bar,
    Col::Age,
    Col::Growth,
    Col::Last,
];

/// Room taken by the borders and the highlight symbol.
const CHROME: u16 = 4;

/// The columns that fit `width`, in display order. Calls in flight per worker are shown
/// only when some pool runs several at once (elsewhere the state, busy, says it all), and
/// a memory column beside RSS only when some pool has a figure for it, under `memory_head`.
fn fitting(width: u16, concurrent: bool, memory_head: Option<&'static str>) -> Vec<Column<Col>> {
    let wanted: Vec<Col> = PRIORITY
        .into_iter()
        .filter(|c| concurrent || *c != Col::InFlight)
        .filter(|c| memory_head.is_some() || *c != Col::Memory)
        .collect();
    let mut columns = fit(&COLUMNS, &wanted, width.saturating_sub(CHROME));
    for c in columns.iter_mut().filter(|c| c.id == Col::Memory) {
        c.head = memory_head.unwrap_or(c.head);
    }
    columns
}

pub fn render(state: &State, frame: &mut Frame, area: Rect) {
    let pools = state.status.as_ref().map_or(&[][..], |s| &s.pools[..]);
    let concurrent = pools.iter().any(|p| p.concurrency > 1);
    let columns = fitting(area.width, concurrent, memory_head(pools));
    let header = Row::new(columns.iter().map(|c| c.align(c.head))).bold();
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
            Row::new(columns.iter().map(|c| {
                let (text, style) = match worker {
                    Some(worker) => cell(c.id, name, pool, worker),
                    None => no_workers(c.id, name),
                };
                Cell::from(c.align(&text)).style(style)
            }))
        })
        .collect();
    // The last column takes what is left, so long recycle reasons show in full when there is room.
    let widths: Vec<Constraint> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i + 1 == columns.len() {
                Constraint::Min(c.width)
            } else {
                Constraint::Length(c.width)
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
        Col::Memory => (memory_cell(pool, w), plain),
        Col::Bar => {
            // On the figure the limits are compared with: how close a recycle is.
            let figure = |w: &WorkerStatus| pool.figure(w, pool.memory_metric);
            let limit = pool.max_rss_bytes.or(pool.hard_rss_bytes);
            let largest = pool.workers.iter().map(figure).max().unwrap_or(0);
            let scale = limit.unwrap_or(largest);
            let style = if limit.is_some_and(|m| figure(w) >= m) {
                plain.red()
            } else {
                plain.magenta()
            };
            (bar(figure(w).min(scale), scale, BAR_WIDTH), style)
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
        let names = |w, concurrent, memory| {
            fitting(w, concurrent, memory)
                .iter()
                .map(|c| c.head)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(150, true, Some("PSS")).len(), COLUMNS.len());
        assert_eq!(
            names(59, true, Some("USS")),
            ["POOL", "ID", "STATE", "RSS", "USS", "CPU%"]
        );
        assert_eq!(names(20, true, None), ["ID"]);
        assert!(names(5, true, None).is_empty());
        // Without concurrent pools the column is left out, and 120 cells fit every other
        // but the memory column, which only pools measuring shared pages need.
        assert!(!names(150, false, None).contains(&"IN FLIGHT"));
        assert_eq!(names(120, false, None).len(), COLUMNS.len() - 2);
        // 80 columns keep the errors of every worker.
        assert_eq!(
            names(80, true, Some("PSS")),
            [
                "POOL",
                "ID",
                "STATE",
                "RSS",
                "PSS",
                "CPU%",
                "CALLS",
                "IN FLIGHT",
                "ERRORS"
            ]
        );
    }
}
