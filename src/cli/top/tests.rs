//! `pitctl top` without a terminal: keys against `State`, and `view::render` into a
//! `TestBackend` compared with snapshots. Fixed status JSON and a fixed clock make every
//! figure (calls/s, sparklines) reproducible.

use std::time::{Duration, Instant};

use insta::assert_snapshot;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::state::{Action, SortKey, State};
use super::view;
use crate::ids::WorkerId;
use crate::proto::event::Event;
use crate::proto::status::{PoolMemory, StatusReport};

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
 {"name":"ticker","state":"running","size":2,"requests":0,"errors":0,"queued":0,"recycled":0,"restarts":0,"workers":[
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

const AGENT: &str = r#"{"name":"agent","state":"running","size":2,"requests":40,"errors":0,"queued":3,"recycled":0,
 "restarts":0,"concurrency":8,"in_flight":16,"capacity":16,
 "template":{"pid":4400,"rss_bytes":41943040,"memory_bytes":41943040,"pss_bytes":20971520,
  "spare":{"pid":4401,"rss_bytes":31457280,"memory_bytes":31457280,"pss_bytes":5242880}},
 "warnings":["1 thread(s) running in the preload template after its imports (poller)"],"workers":[
  {"id":"worker-11","pid":4402,"state":"busy","health":"ok","rss_bytes":52428800,"memory_bytes":52428800,
   "rss_growth_bytes_per_s":0,"cpu_percent":3.0,"requests":20,"errors":0,"age_s":60.0,"last_recycle_reason":null,
   "in_flight":8,"gil_enabled":true},
  {"id":"worker-12","pid":4403,"state":"busy","health":"ok","rss_bytes":52428800,"memory_bytes":52428800,
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
    };
    state.apply_status(with_totals(report.clone(), &[]), t0);
    state.apply_status(with_totals(report, &["template"]), t0 + Duration::from_secs(1));
    let history = &state.history["agent"].rss;
    assert_eq!(history.len(), 1, "only the complete total is drawn: {history:?}");
    assert_eq!(history[0], (50 + 50 + 40 + 30) * 1_048_576);
    let text = screen(&state, 140, 40);
    assert!(text.contains("RSS agent: 170.0M (template not yet sampled)"), "{text}");
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
    let states = [State::new(Duration::from_secs(1)), fixture(Some(BROKEN)), {
        let mut s = fixture(None);
        press(&mut s, '?');
        s
    }];
    // Tiny sizes, the thresholds where panes appear (20 and 24 rows), 40x10 up to 200x60.
    for state in &states {
        for w in [1, 3, 10, 20, 40, 41, 80, 120, 200] {
            for h in [1, 3, 5, 10, 19, 20, 23, 24, 40, 60] {
                screen(state, w, h);
            }
        }
    }
}

#[test]
fn first_worker_is_selected_and_j_k_arrows_move_within_bounds() {
    let mut state = fixture(None);
    // Pools in the daemon's order, workers by id: worker-5, worker-7, worker-9, worker-1, worker-2.
    assert_eq!(selected_worker(&state), Some(WorkerId(5)));
    press(&mut state, 'k');
    assert_eq!(selected_worker(&state), Some(WorkerId(5)), "clamps at the top");
    press(&mut state, 'j');
    state.on_key(key(KeyCode::Down));
    assert_eq!(selected_worker(&state), Some(WorkerId(9)));
    for _ in 0..10 {
        press(&mut state, 'j');
    }
    assert_eq!(selected_worker(&state), Some(WorkerId(2)), "clamps at the bottom");
    state.on_key(key(KeyCode::Up));
    assert_eq!(selected_worker(&state), Some(WorkerId(1)));
}

#[test]
fn selection_follows_the_worker_and_falls_back_to_its_row_when_it_goes() {
    let mut state = fixture(None);
    press(&mut state, 'j');
    assert_eq!(selected_worker(&state), Some(WorkerId(7)));
    let mut report = state.status.clone().unwrap();
    report.pools[0].workers.retain(|w| w.id != WorkerId(7));
    state.apply_status(report, Instant::now());
    assert_eq!(selected_worker(&state), Some(WorkerId(9)), "the row below moved up");
}

#[test]
fn r_asks_and_y_recycles_the_selected_worker() {
    let mut state = fixture(None);
    press(&mut state, 'j');
    assert_eq!(press(&mut state, 'r'), None);
    let prompt = &state.confirm.as_ref().expect("a question").prompt;
    assert_eq!(prompt, "recycle worker-7 of pool echo? (y/n)");
    assert_eq!(press(&mut state, 'x'), None, "other keys leave the question open");
    assert!(state.confirm.is_some());
    assert_eq!(press(&mut state, 'y'), Some(Action::Recycle(WorkerId(7))));
    assert!(state.confirm.is_none());
}

#[test]
fn n_or_esc_cancel_a_drain() {
    let mut state = fixture(None);
    for cancel in [KeyCode::Char('n'), KeyCode::Esc] {
        assert_eq!(press(&mut state, 'd'), None);
        assert!(state.confirm.is_some());
        assert_eq!(state.on_key(key(cancel)), None);
        assert!(state.confirm.is_none());
        assert_eq!(state.message.as_ref().unwrap().text, "cancelled");
    }
    press(&mut state, 'd');
    assert_eq!(press(&mut state, 'y'), Some(Action::Drain(WorkerId(5))));
}

#[test]
fn u_resumes_the_selected_workers_pool_without_asking() {
    let mut state = fixture(None);
    press(&mut state, 'G');
    assert_eq!(press(&mut state, 'u'), Some(Action::Resume("ticker".into())));
}

#[test]
fn a_pool_without_workers_can_be_selected_and_resumed_but_not_recycled() {
    let mut state = fixture(Some(BROKEN));
    press(&mut state, 'G');
    assert_eq!(state.selected.as_ref().unwrap().pool, "broken");
    assert_eq!(press(&mut state, 'r'), None);
    assert!(state.confirm.is_none());
    assert!(state.message.as_ref().unwrap().error);
    assert_eq!(press(&mut state, 'u'), Some(Action::Resume("broken".into())));
}

#[test]
fn q_esc_and_ctrl_c_quit() {
    let mut state = fixture(None);
    assert_eq!(press(&mut state, 'q'), Some(Action::Quit));
    assert_eq!(state.on_key(key(KeyCode::Esc)), Some(Action::Quit));
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(state.on_key(ctrl_c), Some(Action::Quit));
}

#[test]
fn help_closes_on_any_key_and_q_still_quits() {
    let mut state = fixture(None);
    press(&mut state, '?');
    assert!(state.help);
    assert_eq!(press(&mut state, 'j'), None);
    assert!(!state.help);
    press(&mut state, '?');
    assert_eq!(press(&mut state, 'q'), Some(Action::Quit));
}

#[test]
fn s_cycles_the_sort_and_keeps_the_selected_worker() {
    let mut state = fixture(None);
    press(&mut state, 'j');
    let order = |s: &State| -> Vec<String> {
        s.rows()
            .iter()
            .filter_map(|(_, w)| w.map(|w| w.id.to_string()))
            .collect()
    };
    let mut seen = Vec::new();
    for _ in 0..4 {
        press(&mut state, 's');
        seen.push(state.sort);
        assert_eq!(selected_worker(&state), Some(WorkerId(7)));
        if state.sort == SortKey::Rss {
            assert_eq!(order(&state)[..3], ["worker-7", "worker-5", "worker-9"]);
        }
        if state.sort == SortKey::Cpu {
            assert_eq!(order(&state)[..3], ["worker-7", "worker-9", "worker-5"]);
        }
    }
    assert_eq!(seen, [SortKey::Rss, SortKey::Cpu, SortKey::Calls, SortKey::Id]);
}

#[test]
fn calls_per_s_is_the_counter_delta_over_the_elapsed_time() {
    let t0 = Instant::now();
    let mut state = State::new(Duration::from_secs(1));
    let mut report: StatusReport = serde_json::from_str(STATUS).unwrap();
    state.apply_status(report.clone(), t0);
    assert_eq!(state.calls_per_s("echo"), None, "one report is no rate");
    report.pools[0].requests = 30;
    state.apply_status(report.clone(), t0 + Duration::from_secs(2));
    assert_eq!(state.calls_per_s("echo"), Some(15.0));
    // A restarted daemon (new pid) starts the history over instead of a negative rate.
    report.pid = 99;
    report.pools[0].requests = 3;
    state.apply_status(report, t0 + Duration::from_secs(3));
    assert_eq!(state.calls_per_s("echo"), None);
}
