//! `pitctl top` without a terminal: `view::render` into a `TestBackend` compared with
//! snapshots, and (`keys`) keys against `State`. Fixed status JSON and a fixed clock make
//! every figure (calls/s, sparklines) reproducible.

use std::time::{Duration, Instant};

use insta::assert_snapshot;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;

use super::state::{Action, State};
use super::view;
use crate::ids::WorkerId;
use crate::proto::event::Event;
use crate::proto::status::{PoolMemory, StatusReport};

mod keys;

const STATUS: &str = r#"{"version":"0.1.0","pid":1234,"uptime_s":754.2,"pools":[
 {"name":"echo","state":"running","size":3,"requests":0,"errors":2,"queued":1,"recycled":4,"restarts":1,
  "concurrency":1,"in_flight":1,"capacity":2,"workers":[
  {"id":"worker-7","pid":4301,"state":"busy","health":"ok","rss_bytes":73400320,"memory_bytes":73400320,
   "rss_growth_bytes_per_s":131072,"cpu_percent":42.5,"requests":812,"errors":2,"age_s":3721.0,"last_recycle_reason":null,
   "in_flight":1},
  {"id":"worker-5","pid":4299,"state":"idle","health":"ok","rss_bytes":23068672,"memory_bytes":23068672,
   "rss_growth_bytes_per_s":0,"cpu_percent":0.7,"requests":95,"errors":0,"age_s":640.0,"last_recycle_reason":"max_rss"},
  {"id":"worker-9","pid":4310,"state":"starting","health":"unknown","rss_bytes":0,"memory_bytes":0,
   "rss_growth_bytes_per_s":-2048,"cpu_percent":12.0,"requests":0,"errors":0,"age_s":1.2,"last_recycle_reason":"manual"}]},
 {"name":"ticker","state":"running","size":2,"requests":0,"errors":0,"queued":0,"recycled":0,"restarts":0,
  "hard_rss_bytes":20971520,"workers":[
  {"id":"worker-1","pid":4200,"state":"idle","health":"ok","rss_bytes":9437184,"memory_bytes":9437184,
   "rss_growth_bytes_per_s":0,"cpu_percent":0.0,"requests":0,"errors":0,"age_s":754.0,"last_recycle_reason":null},
  {"id":"worker-2","pid":4201,"state":"idle","health":"ok","rss_bytes":9961472,"memory_bytes":9961472,
   "rss_growth_bytes_per_s":0,"cpu_percent":0.1,"requests":0,"errors":0,"age_s":754.0,"last_recycle_reason":null}]}]}"#;

const BROKEN: &str = r#"{"name":"broken","state":"failing","size":2,"requests":0,"errors":0,"queued":0,"recycled":0,
 "restarts":9,"workers":[],"failing_reason":"crash loop: worker-14 exit code 1; last stderr: Traceback (most recent call last): | File \"w.py\", line 3, in <module> | import numpy | ModuleNotFoundError: No module named 'numpy'"}"#;

const EVENTS: &str = r#"[
 {"ts":"2026-05-01T12:00:01.250Z","event":"worker_started","pool":"echo","worker":"worker-7","pid":4301},
 {"ts":"2026-05-01T12:00:01.900Z","event":"worker_ready","pool":"echo","worker":"worker-7","pid":4301},
 {"ts":"2026-05-01T12:10:12.004Z","event":"worker_recycled","pool":"echo","worker":"worker-6","pid":4300,"reason":"manual"},
 {"ts":"2026-05-01T12:10:12.500Z","event":"worker_exited","pool":"echo","worker":"worker-6","pid":4300,"reason":"manual","exit_status":"exit code 0"},
 {"ts":"2026-05-01T12:12:30.000Z","event":"worker_started","pool":"echo","worker":"worker-9","pid":4310}]"#;

/// Twenty refreshes one second apart, with a varying call rate and a growing worker.
fn fixture(extra_pool: Option<&str>) -> State {
    let t0 = Instant::now();
    let mut state = State::new(Duration::from_secs(1));
    let mut report: StatusReport = serde_json::from_str(STATUS).unwrap();
    if let Some(pool) = extra_pool {
        report.pools.push(serde_json::from_str(pool).unwrap());
    }
    for i in 0..20u64 {
        let report = {
            let mut r = report.clone();
            r.pools[0].requests = (0..=i).map(|k| 10 + (k * 7) % 25).sum();
            r.pools[0].workers[0].rss_bytes += i * 1_048_576;
            with_totals(r, &[])
        };
        state.apply_status(report, t0 + Duration::from_secs(i));
    }
    state.apply_events(serde_json::from_str::<Vec<Event>>(EVENTS).unwrap());
    state
}

/// Each pool's memory total as pitd reports it, every process counted but those named in
/// `unsampled`.
fn with_totals(mut report: StatusReport, unsampled: &[&str]) -> StatusReport {
    for pool in &mut report.pools {
        let workers = pool.workers.iter().map(|w| {
            let measured = (w.rss_bytes, w.memory_bytes, w.pss_bytes);
            (w.id.to_string(), measured)
        });
        let extra = pool.template.iter().flat_map(|t| {
            let spare = t.spare.as_ref().map(|s| ("spare".to_string(), s));
            std::iter::once(("template".to_string(), &t.process))
                .chain(spare)
                .map(|(name, p)| (name, (p.rss_bytes, p.memory_bytes, p.pss_bytes)))
        });
        let parts = workers.chain(extra).map(|(name, measured)| {
            let sampled = !unsampled.contains(&name.as_str());
            (name, sampled.then_some(measured))
        });
        pool.memory = Some(PoolMemory::sum(parts));
    }
    report
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn press(state: &mut State, c: char) -> Option<Action> {
    state.on_key(key(KeyCode::Char(c)))
}

fn selected_worker(state: &State) -> Option<WorkerId> {
    state.selected.as_ref()?.worker
}

/// The screen as text, one line per row, trailing blanks cut.
fn screen(state: &State, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| view::render(state, f)).unwrap();
    let buf = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..height {
        let line: String = (0..width).map(|x| buf[(x, y)].symbol()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[test]
fn normal_screen() {
    assert_snapshot!(screen(&fixture(None), 120, 40));
}

#[test]
fn failing_pool_shows_its_reason() {
    assert_snapshot!(screen(&fixture(Some(BROKEN)), 120, 40));
}

/// A preloaded pool on PSS: its workers' RSS counts each page they share with the template,
/// so only PSS tells that worker-12 is past max_rss and worker-11 is not.
const AGENT: &str = r#"{"name":"agent","state":"running","size":2,"requests":40,"errors":0,"queued":3,"recycled":0,
 "restarts":0,"concurrency":8,"in_flight":16,"capacity":16,"memory_metric":"pss","max_rss_bytes":16777216,
 "template":{"pid":4400,"rss_bytes":41943040,"memory_bytes":20971520,"pss_bytes":20971520,"uss_bytes":1048576,
  "spare":{"pid":4401,"rss_bytes":31457280,"memory_bytes":5242880,"pss_bytes":5242880,"uss_bytes":1048576}},
 "warnings":["1 thread(s) running in the preload template after its imports (poller)"],"workers":[
  {"id":"worker-11","pid":4402,"state":"busy","health":"ok","rss_bytes":52428800,"memory_bytes":12582912,
   "pss_bytes":12582912,"uss_bytes":4194304,
   "rss_growth_bytes_per_s":0,"cpu_percent":3.0,"requests":20,"errors":0,"age_s":60.0,"last_recycle_reason":null,
   "in_flight":8,"gil_enabled":true},
  {"id":"worker-12","pid":4403,"state":"busy","health":"ok","rss_bytes":52428800,"memory_bytes":17825792,
   "pss_bytes":17825792,"uss_bytes":9437184,
   "rss_growth_bytes_per_s":0,"cpu_percent":2.0,"requests":20,"errors":0,"age_s":60.0,"last_recycle_reason":null,
   "in_flight":8,"gil_enabled":true}]}"#;

#[test]
fn a_concurrent_preloaded_pool_shows_calls_in_flight_its_template_and_warnings() {
    let mut state = fixture(Some(AGENT));
    if let Some(status) = state.status.as_mut() {
        status.shutting_down = true;
    }
    let text = screen(&state, 140, 40);
    assert!(
        text.lines().next().unwrap().contains("shutting down (not ready)"),
        "{text}"
    );
    assert_snapshot!(text);
}

/// Every head of the pool pane and of the worker table.
const HEADS: [&str; 26] = [
    "POOL", "STATE", "SIZE", "READY", "BUSY", "IN", "FLIGHT", "CALLS/S", "QUEUED", "CALLS", "ERRORS", "RECYCLED",
    "RESTARTS", "RSS", "PSS", "ID", "PID", "HEALTH", "MEM", "BAR", "GROWTH", "CPU%", "AGE", "LAST", "RECYCLE", "USS",
];

/// The head lines of the pool pane and the worker table, without their borders and the
/// table's highlight room.
fn head_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains("STATE"))
        .map(|l| l.trim_matches('│').trim().to_string())
        .collect()
}

#[test]
fn at_80x24_every_column_and_line_fits() {
    let text = screen(&fixture(Some(AGENT)), 80, 24);
    let heads = head_lines(&text);
    assert_eq!(heads.len(), 2, "{text}");
    for head in &heads {
        for word in head.split_whitespace() {
            assert!(HEADS.contains(&word), "a cut head {word:?} in {head:?}:\n{text}");
        }
        assert!(head.contains("ERRORS") && head.contains("PSS"), "{text}");
    }
    assert!(
        text.contains("template pid 4400 RSS 40.0M PSS 20.0M; spare pid 4401 RSS 30.0M PSS 5.0M"),
        "{text}"
    );
    for worker in [
        "worker-5",
        "worker-7",
        "worker-9",
        "worker-1",
        "worker-2",
        "worker-11",
        "worker-12",
    ] {
        assert!(text.contains(worker), "{worker} left out:\n{text}");
    }
    assert!(text.lines().next().unwrap().ends_with("sort: id"), "{text}");
    assert_snapshot!(text);
}

#[test]
fn at_120x40_pools_and_workers_show_rss_and_pss_and_bars_on_pss() {
    let mut state = fixture(Some(AGENT));
    press(&mut state, 'G');
    let text = screen(&state, 120, 40);
    let row = |id: &str| text.lines().find(|l| l.contains(id)).unwrap().to_string();
    // RSS 50.0M, PSS 12.0M against max_rss 16.0M (8 of 10 cells); worker-12 is past it.
    assert!(row("worker-11").contains("50.0M   12.0M ████████░░"), "{text}");
    assert!(row("worker-12").contains("50.0M   17.0M ██████████"), "{text}");
    // The pool: its workers, template and spare.
    assert!(row("agent ").contains("170.0M   54.0M"), "{text}");
    // The sparklines of the selected worker's pool chart PSS too.
    assert!(row("PSS agent: 54.0M").contains("calls/s agent"), "{text}");
    assert_snapshot!(text);
}

#[test]
fn the_memory_bar_turns_red_past_max_rss_on_the_pools_metric() {
    let state = fixture(Some(AGENT));
    let mut terminal = Terminal::new(TestBackend::new(140, 40)).unwrap();
    terminal.draw(|f| view::render(&state, f)).unwrap();
    let buf = terminal.backend().buffer();
    let bar_color = |id: &str| {
        let y = (0..40)
            .find(|&y| (0..140).map(|x| buf[(x, y)].symbol()).collect::<String>().contains(id))
            .unwrap();
        let x = (0..140).find(|&x| buf[(x, y)].symbol() == "█").unwrap();
        buf[(x, y)].fg
    };
    assert_eq!(bar_color("worker-12"), Color::Red);
    assert_eq!(bar_color("worker-11"), Color::Magenta);
    // A pool with hard_rss only: against it, red past it.
    assert_eq!(bar_color("worker-1 "), Color::Magenta);
}

#[test]
fn at_80x24_the_events_give_way_to_every_pool_line_and_worker() {
    let mut state = fixture(Some(AGENT));
    if let Some(status) = state.status.as_mut() {
        status.pools.push(serde_json::from_str(BROKEN).unwrap());
    }
    let text = screen(&state, 80, 24);
    for shown in [
        "broken failing",
        "crash loop: worker-14",
        "warning: 1 thread(s)",
        "worker-12",
        "no workers",
    ] {
        assert!(text.contains(shown), "{shown} left out:\n{text}");
    }
    assert!(!text.contains("events (UTC)"), "{text}");
}

#[test]
fn help_overlay_fits_80x24_and_says_what_the_bar_is_drawn_against() {
    let mut state = fixture(Some(AGENT));
    press(&mut state, '?');
    let text = screen(&state, 80, 24);
    assert!(
        text.contains("MEM BAR      the pool's memory_metric against its max_rss (red past it),")
            && text.contains("else its hard_rss, else its largest worker"),
        "{text}"
    );
    assert!(
        text.contains("start below the window's minimum"),
        "the last line is cut:\n{text}"
    );
    assert_snapshot!(text);
}

#[test]
fn no_head_is_cut_at_any_width() {
    let state = fixture(Some(AGENT));
    for width in 40..=200 {
        let text = screen(&state, width, 30);
        for head in head_lines(&text) {
            for word in head.split_whitespace() {
                assert!(HEADS.contains(&word), "a cut head {word:?} at width {width}:\n{text}");
            }
        }
    }
}

#[test]
fn the_memory_chart_skips_a_total_that_leaves_a_process_out_and_says_which() {
    let t0 = Instant::now();
    let mut state = State::new(Duration::from_secs(1));
    let pool = serde_json::from_str(AGENT).unwrap();
    let report = StatusReport {
        version: "0.1.0".into(),
        pid: 1,
        uptime_s: 1.0,
        pools: vec![pool],
        shutting_down: false,
        call_socket: None,
        http: None,
        memory_budget: None,
    };
    state.apply_status(with_totals(report.clone(), &[]), t0);
    state.apply_status(with_totals(report, &["template"]), t0 + Duration::from_secs(1));
    let history = &state.history["agent"].memory;
    assert_eq!(history.len(), 1, "only the complete total is drawn: {history:?}");
    // The agent pool shares pages: its chart is on PSS, workers, template and spare.
    assert_eq!(history[0], (12 + 17 + 20 + 5) * 1_048_576);
    let text = screen(&state, 140, 40);
    assert!(text.contains("PSS agent: 54.0M (template not yet sampled)"), "{text}");
}

#[test]
fn help_overlay() {
    let mut state = fixture(None);
    press(&mut state, '?');
    assert_snapshot!(screen(&state, 120, 40));
}

#[test]
fn confirm_prompt() {
    let mut state = fixture(None);
    press(&mut state, 'j');
    press(&mut state, 'r');
    assert_snapshot!(screen(&state, 120, 40));
}

#[test]
fn disconnected_keeps_the_last_screen_and_says_why() {
    let mut state = fixture(None);
    state.disconnected = Some("no pitd reachable at /run/pitd/control.sock: Connection refused".into());
    let text = screen(&state, 120, 40);
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains("disconnected: no pitd reachable at /run/pitd/control.sock: Connection refused, retrying"),
        "{text}"
    );
    assert!(text.contains("worker-7"), "{text}");
    // A long reason is shortened so that "retrying" stays on screen.
    let narrow = screen(&state, 60, 20);
    let title = narrow.lines().next().unwrap();
    assert!(
        title.starts_with("pitctl top  disconnected: no pitd") && title.ends_with("..., retrying"),
        "{narrow}"
    );
}

#[test]
fn any_size_renders_without_panicking() {
    let states = [
        State::new(Duration::from_secs(1)),
        fixture(Some(BROKEN)),
        fixture(Some(AGENT)),
        {
            let mut s = fixture(None);
            press(&mut s, '?');
            s
        },
    ];
    // Tiny sizes, the thresholds where panes appear (20 and 24 rows), 40x10 up to 200x60.
    for state in &states {
        for w in [1, 3, 10, 20, 40, 41, 80, 120, 200] {
            for h in [1, 3, 5, 10, 19, 20, 23, 24, 40, 60] {
                screen(state, w, h);
            }
        }
    }
}
