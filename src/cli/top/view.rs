//! Draws `pitctl top` from a `State`; reads only, so a snapshot test of `render` sees exactly
//! what a terminal would.
//!
//! Top to bottom: a title line (daemon, or why it is unreachable), the pool pane (`pools`),
//! the worker table (`workers`), sparklines of the selected pool, recent events and a status
//! line. Panes that do not fit a small terminal are left out rather than squeezed to
//! nothing, and lines are shortened rather than cut at the right edge.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Sparkline, Wrap};

use super::fmt::{bytes, short_event, wrap};
use super::state::{HISTORY, State};
use crate::cli::status::age;
use crate::proto::status::MemoryMetric;

/// Rows the worker table keeps before an optional pane (events, sparklines) may take room
/// from it: its borders, head and eleven workers, or all of them when fewer.
const TABLE_ROWS: u16 = 14;

const KEYS: &str = "↑↓/jk select  r recycle  d drain  u resume pool  s sort  ? help  q quit";

pub fn render(state: &State, frame: &mut Frame) {
    let area = frame.area();
    let pools = super::pools::lines(state, area.width.saturating_sub(2) as usize);
    let pools_want = pools.len() as u16 + 2;
    let table_want = state.rows().len() as u16 + 3;
    let mut pools_h = pools_want.min(area.height / 3);
    // Optional panes appear only while the worker table keeps its rows: the workers are
    // what top is for.
    let keep = table_want.min(TABLE_ROWS);
    let mut room = area.height.saturating_sub(pools_h + 2);
    let events = if area.height >= 20 && room >= area.height / 5 + keep {
        area.height / 5
    } else {
        0
    };
    room -= events;
    let charts = if area.height >= 24 && room >= 5 + keep { 5 } else { 0 };
    room -= charts;
    // Rows the worker table does not need show the pool lines that did not fit.
    pools_h += room.saturating_sub(table_want).min(pools_want - pools_h);
    let [title, pools_area, workers, charts_area, events_area, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(pools_h),
        Constraint::Min(0),
        Constraint::Length(charts),
        Constraint::Length(events),
        Constraint::Length(1),
    ])
    .areas(area);

    frame.render_widget(title_line(state, area.width as usize), title);
    frame.render_widget(
        Paragraph::new(pools).block(Block::bordered().title(" pools ")),
        pools_area,
    );
    super::workers::render(state, frame, workers);
    if charts > 0 {
        render_charts(state, frame, charts_area);
    }
    if events > 0 {
        render_events(state, frame, events_area);
    }
    frame.render_widget(status_line(state), status);
    if state.help {
        render_help(frame, area);
    }
}

fn title_line(state: &State, width: usize) -> Line<'static> {
    const NAME: &str = "pitctl top  ";
    let mut spans = vec![Span::from(NAME).bold()];
    let room = width.saturating_sub(NAME.len());
    match (&state.disconnected, &state.status) {
        (Some(why), _) => {
            // Shorten the reason rather than lose "retrying" off the edge.
            let room = room.saturating_sub("disconnected: , retrying".len());
            let why = wrap(why, room.max(3), 1).pop().unwrap_or_default();
            spans.push(Span::from(format!("disconnected: {why}, retrying")).red().bold());
        }
        (None, Some(s)) => {
            const SHUTTING: &str = ", shutting down (not ready)";
            let room = room.saturating_sub(if s.shutting_down { SHUTTING.len() } else { 0 });
            let daemon = format!("pitd {} (pid {}), up {}", s.version, s.pid, age(s.uptime_s));
            spans.push(Span::from(wrap(&daemon, room, 1).pop().unwrap_or_default()));
            if s.shutting_down {
                spans.push(Span::from(SHUTTING).yellow().bold());
            }
        }
        (None, None) => spans.push(Span::from("connecting...")),
    }
    // The rest is said elsewhere too (the workers' title, the key line): it goes first.
    let extras = [
        format!("  |  every {}", humantime::format_duration(state.interval)),
        format!("  |  sort: {}", state.sort.name()),
        "  |  ? help".to_string(),
    ];
    let mut used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    for extra in extras {
        used += extra.chars().count();
        if used > width {
            break;
        }
        spans.push(Span::from(extra));
    }
    Line::from(spans)
}

/// Sparklines of the selected worker's pool (the first pool when nothing is selected): its
/// calls/s, and its memory on the figure shown beside RSS (RSS where it has none).
fn render_charts(state: &State, frame: &mut Frame, area: Rect) {
    let pool = state
        .selected
        .as_ref()
        .and_then(|t| state.pool(&t.pool))
        .or_else(|| state.status.as_ref()?.pools.first());
    let [left, right] = Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(area);
    let history = pool.and_then(|p| state.history.get(&p.name));
    let name = pool.map_or("-", |p| p.name.as_str());
    // Newest samples on the right: a sparkline draws from the left and drops what overflows.
    let fit = |len: usize, r: Rect| len.saturating_sub(r.width.saturating_sub(2) as usize);

    let calls: Vec<u64> = history.map_or(Vec::new(), |h| {
        // Tenths, so rates below 1/s still show a bar.
        h.calls_per_s.iter().map(|r| (r * 10.0).round() as u64).collect()
    });
    let now = state.calls_per_s(name).map_or("-".into(), |r| format!("{r:.1}"));
    let chart = Sparkline::default()
        .data(&calls[fit(calls.len(), left)..])
        .style(Style::new().cyan())
        .block(Block::bordered().title(block_title(&format!("calls/s {name}: {now}"), left)));
    frame.render_widget(chart, left);

    // Against zero a slow leak would look flat, so bars start below the window's minimum by
    // its spread (at least 5% of the peak, so sampling noise stays small).
    let memory: Vec<u64> = history.map_or(Vec::new(), |h| h.memory.iter().copied().collect());
    let memory = &memory[fit(memory.len(), right)..];
    let (low, high) = (
        memory.iter().min().copied().unwrap_or(0),
        memory.iter().max().copied().unwrap_or(0),
    );
    let floor = low.saturating_sub((high - low).max(high / 20));
    let metric = pool.map_or("RSS", |p| p.shown_metric().unwrap_or(MemoryMetric::Rss).label());
    // The last total that counted every process; when the newest did not, which ones it
    // would have left out (the window gives way: the title has one line).
    let title = match (memory.last(), state.unsampled(name)) {
        (Some(now), []) => format!(
            "{metric} {name}: {} (window {}..{})",
            bytes(*now),
            bytes(low),
            bytes(high)
        ),
        (None, []) => format!("{metric} {name}: -"),
        (now, left_out) => format!(
            "{metric} {name}: {} ({} not yet sampled)",
            now.map_or("-".into(), |b| bytes(*b)),
            left_out.join(", ")
        ),
    };
    let chart = Sparkline::default()
        .data(memory.iter().map(|b| b - floor).collect::<Vec<u64>>())
        .style(Style::new().magenta())
        .block(Block::bordered().title(block_title(&title, right)));
    frame.render_widget(chart, right);
}

/// A pane's title, shortened to fit its top border between the corners.
fn block_title(text: &str, area: Rect) -> String {
    let room = area.width.saturating_sub(4) as usize;
    format!(" {} ", wrap(text, room, 1).pop().unwrap_or_default())
}

fn render_events(state: &State, frame: &mut Frame, area: Rect) {
    let fits = area.height.saturating_sub(2) as usize;
    let width = area.width.saturating_sub(2) as usize;
    let skip = state.events.len().saturating_sub(fits);
    let lines: Vec<Line> = state
        .events
        .iter()
        .skip(skip)
        .map(|e| Line::from(wrap(&short_event(e), width, 1).pop().unwrap_or_default()))
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" events (UTC) ")),
        area,
    );
}

fn status_line(state: &State) -> Line<'static> {
    if let Some(c) = &state.confirm {
        return Line::from(format!(" {} ", c.prompt)).style(Style::new().black().on_yellow().bold());
    }
    match &state.message {
        Some(m) if m.error => Line::from(m.text.clone()).red(),
        Some(m) => Line::from(m.text.clone()).green(),
        None => Line::from(KEYS).dark_gray(),
    }
}

fn render_help(frame: &mut Frame, area: Rect) {
    let sparklines = format!("sparklines   the selected worker's pool, last {HISTORY} refreshes; memory bars");
    let text = [
        "↑/↓, j/k     select a worker (PgUp/PgDn, g/G jump)",
        "r            recycle the selected worker (asks y/n)",
        "d            drain the selected worker (asks y/n)",
        "u            resume the selected worker's pool",
        "s            sort workers by id, RSS, CPU, calls",
        "?            this help; any key closes it",
        "q, Esc       quit (while this help is open, Esc only closes it)",
        "",
        "calls/s      change of the pool's call counter between refreshes",
        "PSS, USS     the pool's memory_metric beside RSS (PSS for a preloaded pool",
        "             on rss); per pool: workers, template and spare, a + after it",
        "             when one is not sampled yet (and left out)",
        "MEM BAR      the pool's memory_metric against its max_rss (red past it),",
        "             else its hard_rss, else its largest worker",
        "GROWTH       RSS change per second, as sampled by pitd",
        "IN FLIGHT    calls a worker holds / its concurrency; per pool, against",
        "             capacity (ready workers x concurrency)",
        &sparklines,
        "             start below the window's minimum (range in the title)",
    ];
    let width = (text.iter().map(|l| l.chars().count()).max().unwrap_or(0) as u16 + 4).min(area.width);
    let height = (text.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let lines: Vec<Line> = text.iter().map(|l| Line::from(format!(" {l}"))).collect();
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" help ")),
        popup,
    );
}
