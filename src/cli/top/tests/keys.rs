//! `pitctl top`'s keys against `State`, without drawing: selection, confirmation, sort and
//! the figures derived from consecutive reports.

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{BROKEN, STATUS, fixture, key, press, selected_worker};
use crate::cli::top::state::{Action, SortKey, State};
use crate::ids::WorkerId;
use crate::proto::status::StatusReport;

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
