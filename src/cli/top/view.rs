//! Draws `pitctl top` from a `State`; reads only, so a snapshot test of `render` sees exactly
//! what a terminal would.
//!
//! Top to bottom: a title line (daemon, or why it is unreachable), one line per pool, the
//! worker table, sparklines of the selected pool, recent events and a status line. Panes
//! that do not fit a small terminal are left out rather than squeezed to nothing.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Sparkline, Wrap};

use super::fmt::{bytes, short_event, wrap};
use super::state::{HISTORY, State};
use crate::cli::status::age;
use crate::lifecycle::WorkerState;
use crate::proto::status::{PoolState, ProcessStatus, TemplateStatus, WorkerStatus};

/// Lines of a failing pool's reason shown under its line (the reason quotes stderr).
const REASON_LINES: usize = 2;

const KEYS: &str = "↑↓/jk select  r recycle  d drain  u resume pool  s sort  ? help  q quit";

pub fn render(state: &State, frame: &mut Frame) {
    let area = frame.area();
    let pools = pool_lines(state, area.width.saturating_sub(2) as usize);
    // Optional panes appear only when the worker table keeps a few rows.
    let charts = if area.height >= 24 { 5 } else { 0 };
    let events = if area.height >= 20 { area.height / 5 } else { 0 };
    let pools_h = (pools.len() as u16 + 2).min(area.height / 3);
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
    match (&state.disconnected, &state.status) {
        (Some(why), _) => {
            // Shorten the reason rather than lose "retrying" off the edge.
            let room = width.saturating_sub(NAME.len() + "disconnected: , retrying".len());
            let why = wrap(why, room.max(3), 1).pop().unwrap_or_default();
            spans.push(Span::from(format!("disconnected: {why}, retrying")).red().bold());
        }
        (None, Some(s)) => {
            spans.push(Span::from(format!(
                "pitd {} (pid {}), up {}",
                s.version,
                s.pid,
                age(s.uptime_s)
            )));
            if s.shutting_down {
                spans.push(Span::from(", shutting down (not ready)").yellow().bold());
            }
        }
        (None, None) => spans.push(Span::from("connecting...")),
    }
    spans.push(Span::from(format!(
        "  |  every {}  |  sort: {}  |  ? help",
        humantime::format_duration(state.interval),
        state.sort.name()
    )));
    Line::from(spans)
}

fn pool_lines(state: &State, width: usize) -> Vec<Line<'static>> {
    let Some(status) = &state.status else {
        return Vec::new();
    };
    let mut lines = vec![
        Line::from(format!(
            "{:<12} {:<9} {:>4} {:>5} {:>4} {:>9} {:>8} {:>6} {:>8} {:>6} {:>8} {:>8}",
            "POOL",
            "STATE",
            "SIZE",
            "READY",
            "BUSY",
            "IN FLIGHT",
            "CALLS/S",
            "QUEUED",
            "CALLS",
            "ERRORS",
            "RECYCLED",
            "RESTARTS"
        ))
        .bold(),
    ];
    for pool in &status.pools {
        let count = |f: fn(&WorkerStatus) -> bool| pool.workers.iter().filter(|w| f(w)).count();
        let ready = count(|w| matches!(w.state, WorkerState::Idle | WorkerState::Busy));
        let busy = count(|w| w.state == WorkerState::Busy);
        let rate = state.calls_per_s(&pool.name).map_or("-".into(), |r| format!("{r:.1}"));
        // Against capacity (ready workers x concurrency): how full the pool is.
        let flight = format!("{}/{}", pool.in_flight, pool.capacity);
        lines.push(Line::from(vec![
            Span::from(format!("{:<12} ", pool.name)).bold(),
            Span::styled(format!("{:<9}", pool.state.as_str()), pool_style(pool.state)),
            Span::from(format!(
                " {:>4} {:>5} {:>4} {:>9} {:>8} {:>6} {:>8} {:>6} {:>8} {:>8}",
                pool.size,
                ready,
                busy,
                flight,
                rate,
                pool.queued,
                pool.requests,
                pool.errors,
                pool.recycled,
                pool.restarts
            )),
        ]));
        if let Some(template) = &pool.template {
            lines.push(Line::from(format!("    {}", template_line(template))).dark_gray());
        }
        for warning in &pool.warnings {
            for part in wrap(&format!("warning: {warning}"), width.saturating_sub(4), REASON_LINES) {
                lines.push(Line::from(format!("    {part}")).yellow());
            }
        }
        if let Some(why) = &pool.failing_reason {
            for part in wrap(why, width.saturating_sub(4), REASON_LINES) {
                lines.push(Line::from(format!("    {part}")).red());
            }
        }
    }
    lines
}

/// The preload template and its spare: no workers, so not in the worker table, but their
/// memory is the pool's.
fn template_line(template: &TemplateStatus) -> String {
    let process = |name: &str, p: &ProcessStatus| {
        let pss = p.pss_bytes.map_or(String::new(), |b| format!(", PSS {}", bytes(b)));
        format!("{name} pid {}: RSS {}{pss}", p.pid, bytes(p.rss_bytes))
    };
    let mut line = process("template", &template.process);
    if let Some(spare) = &template.spare {
        line.push_str("; ");
        line.push_str(&process("spare", spare));
    }
    line
}

fn pool_style(state: PoolState) -> Style {
    match state {
        PoolState::Running => Style::new().green(),
        PoolState::Failing => Style::new().red().bold(),
        PoolState::Draining | PoolState::Drained => Style::new().yellow(),
        PoolState::Starting => Style::new().cyan(),
    }
}

/// Sparklines of the selected worker's pool (the first pool when nothing is selected).
fn render_charts(state: &State, frame: &mut Frame, area: Rect) {
    let pool = state
        .selected
        .as_ref()
        .map(|t| t.pool.clone())
        .or_else(|| state.status.as_ref()?.pools.first().map(|p| p.name.clone()));
    let [left, right] = Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(area);
    let history = pool.as_ref().and_then(|p| state.history.get(p));
    let name = pool.as_deref().unwrap_or("-");
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
        .block(Block::bordered().title(format!(" calls/s {name}: {now} ")));
    frame.render_widget(chart, left);

    // Against zero a slow leak would look flat, so bars start below the window's minimum by
    // its spread (at least 5% of the peak, so sampling noise stays small).
    let rss: Vec<u64> = history.map_or(Vec::new(), |h| h.rss.iter().copied().collect());
    let rss = &rss[fit(rss.len(), right)..];
    let (low, high) = (
        rss.iter().min().copied().unwrap_or(0),
        rss.iter().max().copied().unwrap_or(0),
    );
    let floor = low.saturating_sub((high - low).max(high / 20));
    // The last total that counted every process; when the newest did not, which ones it
    // would have left out (the window gives way: the title has one line).
    let title = match (rss.last(), state.unsampled(name)) {
        (Some(now), []) => format!(" RSS {name}: {} (window {}..{}) ", bytes(*now), bytes(low), bytes(high)),
        (None, []) => format!(" RSS {name}: - "),
        (now, left_out) => format!(
            " RSS {name}: {} ({} not yet sampled) ",
            now.map_or("-".into(), |b| bytes(*b)),
            left_out.join(", ")
        ),
    };
    let chart = Sparkline::default()
        .data(rss.iter().map(|b| b - floor).collect::<Vec<u64>>())
        .style(Style::new().magenta())
        .block(Block::bordered().title(title));
    frame.render_widget(chart, right);
}

fn render_events(state: &State, frame: &mut Frame, area: Rect) {
    let fits = area.height.saturating_sub(2) as usize;
    let skip = state.events.len().saturating_sub(fits);
    let lines: Vec<Line> = state
        .events
        .iter()
        .skip(skip)
        .map(|e| Line::from(short_event(e)))
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
    let sparklines = format!("sparklines   the selected worker's pool, last {HISTORY} refreshes; RSS bars");
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
        "RSS BAR      against the pool's max_rss (red past it), else its largest worker",
        "             (status does not report max_rss)",
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
