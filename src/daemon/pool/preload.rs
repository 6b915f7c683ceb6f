//! A preloaded pool's template and spare worker, as the pool sees them: their pids (from
//! the template's news), their memory (sampled by the monitor like a worker's), and the
//! template's warnings. Neither is a worker, but both are the pool's memory.

use super::core::PoolCore;
use super::effect::Effect;
use super::parts::{Sampled, TemplateProcs};
use crate::daemon::monitor::TreeSample;
use crate::daemon::process::spawn::TemplateNews;
use crate::proto::event::EventKind;
use crate::proto::status::{MemorySample, TemplateStatus};

impl PoolCore {
    pub(super) fn on_template_news(&mut self, news: TemplateNews) {
        match news {
            TemplateNews::Ready { pid, warnings } => {
                if let Some(old) = self.template.take() {
                    self.unwatch_template(&old);
                }
                for w in &warnings {
                    self.emit(EventKind::TemplateWarning, None, Some(pid), |ev| {
                        ev.message = Some(w.clone())
                    });
                }
                self.watch_extra(pid);
                self.template = Some(TemplateProcs {
                    template: Sampled::new(pid),
                    spare: None,
                    warnings,
                });
            }
            TemplateNews::Spare { pid } => {
                let Some(t) = self.template.as_mut() else { return };
                let old = t.spare.replace(Sampled::new(pid));
                if let Some(old) = old {
                    self.unwatch_spare(old.pid);
                }
                self.watch_extra(pid);
            }
            TemplateNews::Output { stream, line } => self.effect(Effect::TemplateLine { stream, line }),
            TemplateNews::Gone { pid } => {
                if self.template.as_ref().is_some_and(|t| t.template.pid == pid) {
                    let old = self.template.take().expect("checked above");
                    self.unwatch_template(&old);
                }
            }
        }
    }

    /// A sample of the template or the spare; one of a process no longer either is dropped.
    pub(super) fn on_template_sample(&mut self, sample: TreeSample) {
        let Some(t) = self.template.as_mut() else { return };
        if t.template.pid == sample.pid {
            t.template.sample = Some(sample);
        } else if let Some(spare) = t.spare.as_mut().filter(|s| s.pid == sample.pid) {
            spare.sample = Some(sample);
        }
    }

    /// A worker was forked under `pid`: if that was the spare, it is a worker now (its
    /// worker watch replaced the spare's), and the template's next spare is on its way.
    pub(super) fn spare_taken(&mut self, pid: u32) {
        if let Some(t) = self.template.as_mut()
            && t.spare.as_ref().is_some_and(|s| s.pid == pid)
        {
            t.spare = None;
        }
    }

    pub(super) fn template_status(&self) -> Option<TemplateStatus> {
        let t = self.template.as_ref()?;
        Some(TemplateStatus {
            process: t.template.status(),
            spare: t.spare.as_ref().map(Sampled::status),
        })
    }

    /// The template and its spare for the pool's memory total, each named.
    pub(super) fn template_memory(&self) -> Vec<(String, Option<MemorySample>)> {
        let Some(t) = self.template.as_ref() else {
            return Vec::new();
        };
        let mut parts = vec![("template".to_string(), t.template.measured())];
        if let Some(spare) = &t.spare {
            parts.push(("spare".to_string(), spare.measured()));
        }
        parts
    }

    /// The template's warnings, then its workers' (each once, naming the workers).
    pub(super) fn warnings(&self) -> Vec<String> {
        let mut out = self.template.as_ref().map(|t| t.warnings.clone()).unwrap_or_default();
        let mut by_text: Vec<(&str, Vec<String>)> = Vec::new();
        for w in self.workers.values() {
            let Some(text) = w.warning.as_deref() else { continue };
            match by_text.iter_mut().find(|(t, _)| *t == text) {
                Some((_, ids)) => ids.push(w.id.to_string()),
                None => by_text.push((text, vec![w.id.to_string()])),
            }
        }
        out.extend(
            by_text
                .into_iter()
                .map(|(text, ids)| format!("{} ({})", text, ids.join(", "))),
        );
        out
    }

    fn watch_extra(&mut self, pid: u32) {
        // PSS and USS whatever the metric: these processes are mostly shared pages.
        self.effect(Effect::Watch {
            pid,
            worker: None,
            metric: self.spec.recycle.memory_metric,
            shared_pages: true,
        });
        // Sampled now, not one monitor interval later: until then the pool's total leaves
        // this process out (and says so).
        self.effect(Effect::SampleNow(pid));
    }

    fn unwatch_template(&mut self, old: &TemplateProcs) {
        self.effect(Effect::Unwatch(old.template.pid));
        if let Some(spare) = &old.spare {
            self.unwatch_spare(spare.pid);
        }
    }

    /// Stops sampling a spare, unless it has become a worker (then its watch is the worker's).
    fn unwatch_spare(&mut self, pid: u32) {
        if !self.workers.values().any(|w| w.pid == Some(pid)) {
            self.effect(Effect::Unwatch(pid));
        }
    }
}
