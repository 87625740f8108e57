//! A short slice of `slosh-soak` (15 s) against slosh started in this
//! process: subscribers of every kind churned while messages are
//! published, then no loss, no leak, RSS back within 10 %.

use std::time::Duration;

use benches::load::{Run, ServerProcess, Target};
use benches::soak::{self, SoakOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churning_subscribers_lose_nothing_and_leave_nothing_behind() {
    let base = soak::spawn_server().await.unwrap();
    let mut run = Run::new(Target::slosh(&base).unwrap());
    run.servers = vec![ServerProcess {
        pid: std::process::id(),
    }];
    let report = soak::soak(
        &run,
        SoakOptions {
            duration: Duration::from_secs(15),
            warmup: Duration::from_secs(4),
            churners: 8,
            rate: 100.0,
            hold_max: Duration::from_millis(1000),
            settle: Duration::from_secs(10),
            expect_topics_gone: true,
            seed: 7,
        },
    )
    .await
    .unwrap();
    eprintln!("{report}");
    assert!(report.problems().is_empty(), "{report}");
    // The slice did churn every kind and publish, so the checks meant
    // something.
    assert!(report.churned.iter().all(|&n| n >= 10), "{report}");
    assert!(report.published >= 1000, "{report}");
    assert!(report
        .stayers
        .iter()
        .all(|s| s.delivered == report.published));
    assert_eq!(report.subscribers_left, Some(0));
    assert!(report.rss_warm.is_some() && report.rss_end.is_some());
}
