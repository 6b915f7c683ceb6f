//! A preloaded pool's template and spare as the pool sees them: their memory counts in the
//! pool's total once sampled, and until then the total names them as left out.

use std::time::Instant;

use super::super::PoolMsg;
use super::spec_harness;
use crate::daemon::monitor::TreeSample;
use crate::daemon::process::spawn::TemplateNews;
use crate::ids::WorkerId;

const MIB: u64 = 1024 * 1024;

fn sample(pid: u32, rss_mib: u64, pss_mib: u64, at: Instant) -> TreeSample {
    TreeSample {
        pid,
        rss_bytes: rss_mib * MIB,
        memory_bytes: rss_mib * MIB,
        pss_bytes: Some(pss_mib * MIB),
        uss_bytes: Some(MIB),
        cpu_percent: 0.0,
        processes: 1,
        at,
    }
}

#[tokio::test]
async fn the_template_and_spare_count_in_the_pool_total_once_sampled_and_are_named_until_then() {
    let mut h = spec_harness("[pools.p]\napp = \"app\"\npreload = [\"app\"]\nsize = 1\n");
    let t0 = Instant::now();
    h.actor.begin(t0);
    let w1 = WorkerId(1);
    h.started(w1, t0);
    let memory = |h: &mut super::Harness| h.status(t0).memory.expect("a memory total");
    let m = memory(&mut h);
    assert!(!m.complete && m.unsampled == ["worker-1"], "{m:?}");

    h.actor.handle(
        PoolMsg::Sample {
            id: w1,
            sample: sample(1001, 50, 10, t0),
        },
        t0,
    );
    let m = memory(&mut h);
    assert!(m.complete && m.unsampled.is_empty(), "{m:?}");
    assert_eq!((m.rss_bytes, m.pss_bytes), (50 * MIB, Some(10 * MIB)));

    h.actor.handle(
        PoolMsg::Template(TemplateNews::Ready {
            pid: 900,
            warnings: vec![],
        }),
        t0,
    );
    h.actor.handle(PoolMsg::Template(TemplateNews::Spare { pid: 901 }), t0);
    let m = memory(&mut h);
    assert!(!m.complete && m.unsampled == ["template", "spare"], "{m:?}");
    assert_eq!(m.rss_bytes, 50 * MIB, "what is summed is what was sampled");

    h.actor.handle(PoolMsg::TemplateSample(sample(900, 40, 20, t0)), t0);
    let m = memory(&mut h);
    assert_eq!(m.unsampled, ["spare"]);
    h.actor.handle(PoolMsg::TemplateSample(sample(901, 30, 5, t0)), t0);
    let m = memory(&mut h);
    assert!(m.complete, "{m:?}");
    assert_eq!((m.rss_bytes, m.pss_bytes), (120 * MIB, Some(35 * MIB)));

    // A new spare replaces the one that became a worker: unsampled again until its sample.
    h.actor.handle(PoolMsg::Template(TemplateNews::Spare { pid: 902 }), t0);
    assert_eq!(memory(&mut h).unsampled, ["spare"]);
}
