//! `pitctl top`: a live full-screen view of pools and workers, with keys to recycle, drain
//! and resume.
//!
//! This module owns the terminal and the event loop: it sets the terminal up, asks the
//! control thread (`fetch`) for status and events once per interval, hands it the `Action`s
//! that `State::on_key` returns, and redraws when anything changed. What is shown lives in
//! `state` (data, keys) and `view`/`workers` (drawing), so both are tested without a terminal.
//!
//! Invariant: the terminal is restored (raw mode off, main screen, cursor shown) on every
//! way out: a normal quit, an error (the guard's `Drop`) and a panic (the hook restores
//! before the panic message is printed, so the message stays readable).

mod columns;
mod fetch;
mod fmt;
mod pools;
mod state;
mod view;
mod workers;

#[cfg(test)]
mod tests;

use std::io::{self, Stdout};
use std::path::Path;
use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyEventKind};
use ratatui::crossterm::{cursor, execute, terminal};

use super::Failure;
use crate::client::ControlClient;
use fetch::{Fetcher, Job, Outcome, Stopped};
use state::{Action, State};

/// Below this, refreshing would mostly measure the refresh itself.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// How long a key wait lasts before looking for finished jobs: the delay before a reply
/// shows on screen.
const TICK: Duration = Duration::from_millis(50);

/// A refresh without a reply for this long (or two intervals, if longer) is reported.
const STALL: Duration = Duration::from_secs(3);

/// Parses `--interval`.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = super::duration::parse(s)?;
    if d < MIN_INTERVAL {
        return Err(format!("the interval must be at least 100ms, found {s:?}"));
    }
    Ok(d)
}

impl From<Stopped> for Failure {
    fn from(_: Stopped) -> Failure {
        Failure::Refused("top's connection thread stopped".into())
    }
}

pub fn run(socket: &Path, interval: Duration) -> Result<(), Failure> {
    // Fail before taking the screen when nothing listens: a wrong --socket is exit code 3,
    // not a screen that retries forever. Later losses are shown and retried.
    let client = ControlClient::connect(socket)?;
    let fetcher = Fetcher::start(socket.to_path_buf(), client)?;
    let mut guard = TerminalGuard::enter()?;
    let mut state = State::new(interval);
    let mut next_refresh = Instant::now();
    // When the refresh in flight was asked for; one at a time, so a slow pitd is not flooded.
    let mut asked: Option<Instant> = None;
    let mut dirty = true;
    loop {
        let now = Instant::now();
        if asked.is_none() && now >= next_refresh {
            fetcher.send(Job::Refresh)?;
            asked = Some(now);
            next_refresh = now + interval;
        }
        while let Some(outcome) = fetcher.try_recv()? {
            dirty = true;
            match outcome {
                Outcome::Refreshed(read, at) => {
                    asked = None;
                    match read {
                        Ok((report, events)) => {
                            state.apply_status(report, at);
                            state.apply_events(events);
                        }
                        Err(why) => state.disconnected = Some(why),
                    }
                }
                Outcome::Acted(reply) => {
                    match reply {
                        Ok(message) => state.say(&message, false),
                        Err(why) => state.say(&why, true),
                    }
                    // Show the effect at once rather than up to an interval later.
                    next_refresh = Instant::now();
                }
            }
        }
        if let Some(since) = asked
            && since.elapsed() > STALL.max(interval * 2)
        {
            let why = format!("no reply for {}s", since.elapsed().as_secs());
            dirty |= state.disconnected.as_ref() != Some(&why);
            state.disconnected = Some(why);
        }
        if dirty {
            guard.terminal.draw(|f| view::render(&state, f))?;
            dirty = false;
        }
        if !event::poll(TICK)? {
            continue;
        }
        match event::read()? {
            TermEvent::Key(key) if key.kind != KeyEventKind::Release => {
                dirty = true;
                match state.on_key(key) {
                    None => {}
                    Some(Action::Quit) => return Ok(()),
                    Some(action) => fetcher.send(Job::Act(action))?,
                }
            }
            // `draw` adopts the new size; it only has to happen.
            TermEvent::Resize(..) => dirty = true,
            _ => {}
        }
    }
}

/// The terminal in raw mode on the alternate screen; dropping it gives the terminal back.
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    fn enter() -> io::Result<TerminalGuard> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        terminal::enable_raw_mode()?;
        let setup = execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)
            .and_then(|()| Terminal::new(CrosstermBackend::new(io::stdout())));
        match setup {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                // No guard exists yet to undo what was already changed.
                restore();
                Err(e)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Undoes `enter`; safe to run twice (the panic hook and then the guard's drop).
fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
}
