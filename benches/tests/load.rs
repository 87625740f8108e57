//! Each `slosh-load` scenario, tiny, against a real slosh server started in
//! this process on 127.0.0.1:0.

use std::time::Duration;

use benches::load::{
    self, ConnectOptions, FanoutOptions, PublishOptions, Run, ServerProcess, Target,
};

/// Starts slosh on a free port (buffer large enough that back-to-back runs
/// never overflow) and returns a run aimed at it, with this process as the
/// "server" so CPU and RSS figures are exercised.
async fn spawn_server() -> Run {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = slosh_hyper::slosh_core::Settings {
        queue: 1000,
        ..Default::default()
    };
    let hub = slosh_hyper::slosh_core::Hub::builder()
        .settings(settings)
        .build();
    tokio::spawn(slosh_hyper::serve(listener, hub, std::future::pending()));
    let mut run = Run::new(Target::slosh(&format!("http://{addr}")).unwrap());
    run.timeout = Duration::from_secs(10);
    run.servers = vec![ServerProcess {
        pid: std::process::id(),
    }];
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_over_two_connections_answers_every_request() {
    let run = spawn_server().await;
    let report = load::publish(
        &run,
        PublishOptions {
            conns: 2,
            topics: 3,
            duration: Duration::from_millis(500),
            size: 100,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.errors, 0, "{report}");
    assert!(report.ok > 10, "{report}");
    assert!(!report.timed_out);
    assert!(report.latency.p50_us > 0.0 && report.latency.p50_us <= report.latency.max_us);
    assert!(report.server_cpu_per_request_us().is_some());
    let json = report.json();
    assert_eq!(json["requests"], report.ok);
    assert_eq!(json["errors"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longpoll_back_to_back_delivers_every_message_to_every_client() {
    let run = spawn_server().await;
    let report = load::longpoll(
        &run,
        FanoutOptions {
            subs: 20,
            msgs: 10,
            rate: 0.0,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.connected, 20, "{report}");
    assert_eq!(report.published, 10, "{report}");
    assert_eq!(report.deliveries, 200, "{report}");
    assert_eq!(
        (
            report.lost,
            report.visible_loss,
            report.errors,
            report.duplicates
        ),
        (0, 0, 0, 0),
        "{report}"
    );
    assert_eq!(report.stalled_steps, 0, "{report}");
    // Back-to-back, each answer is one message, and a client stops at the
    // last one: one poll per delivery.
    assert_eq!(report.polls, 200, "{report}");
    assert!(report.json()["round_trips_per_s"].as_f64().unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longpoll_at_a_rate_counts_overflow_as_visible_loss() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A buffer of 2 and a burst of 30 messages at 1000/s: clients that
    // fall behind miss messages, and the server must own up to each one.
    let settings = slosh_hyper::slosh_core::Settings {
        queue: 2,
        ..Default::default()
    };
    let hub = slosh_hyper::slosh_core::Hub::builder()
        .settings(settings)
        .build();
    tokio::spawn(slosh_hyper::serve(listener, hub, std::future::pending()));
    let mut run = Run::new(Target::slosh(&format!("http://{addr}")).unwrap());
    run.timeout = Duration::from_secs(10);
    let report = load::longpoll(
        &run,
        FanoutOptions {
            subs: 20,
            msgs: 30,
            rate: 1000.0,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.published, 30, "{report}");
    assert_eq!(report.errors, 0, "{report}");
    assert_eq!(report.lost, report.visible_loss, "{report}");
    assert_eq!(report.deliveries + report.lost, 20 * 30, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_fanout_back_to_back_delivers_every_message_to_every_subscriber() {
    let run = spawn_server().await;
    let report = load::sse_fanout(
        &run,
        FanoutOptions {
            subs: 20,
            msgs: 10,
            rate: 0.0,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.connected, 20, "{report}");
    assert_eq!(report.deliveries, 200, "{report}");
    assert_eq!(
        (
            report.lost,
            report.visible_loss,
            report.errors,
            report.duplicates
        ),
        (0, 0, 0, 0),
        "{report}"
    );
    assert!(report.latency.max_us > 0.0);
    assert!(report.rss_per_sub().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_fanout_at_a_rate_delivers_every_message() {
    let run = spawn_server().await;
    let report = load::sse_fanout(
        &run,
        FanoutOptions {
            subs: 20,
            msgs: 10,
            rate: 100.0,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.deliveries, 200, "{report}");
    assert_eq!((report.lost, report.errors), (0, 0), "{report}");
    // Ten messages at 100/s take 90 ms from first to last; a pacer that
    // catches up after a stall on a loaded machine may shorten that, but
    // not to the few milliseconds of back-to-back publishing.
    assert!(report.elapsed >= Duration::from_millis(45), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_opens_every_subscription_and_reports_rss() {
    let run = spawn_server().await;
    let report = load::connect(
        &run,
        ConnectOptions {
            subs: 50,
            topics: 2,
            websocket: false,
        },
    )
    .await
    .unwrap();
    assert_eq!((report.connected, report.failed_subs), (50, 0), "{report}");
    assert!(!report.timed_out);
    assert!(report.rss_after.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_opens_idle_websockets_on_the_topic_url() {
    let run = spawn_server().await;
    let report = load::connect(
        &run,
        ConnectOptions {
            subs: 30,
            topics: 3,
            websocket: true,
        },
    )
    .await
    .unwrap();
    assert_eq!((report.connected, report.failed_subs), (30, 0), "{report}");
    assert_eq!(report.json()["kind"], "websocket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_is_reported_as_failures_not_a_hang() {
    // Bind and drop to get a port nobody listens on.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut run = Run::new(Target::slosh(&format!("http://{addr}")).unwrap());
    run.timeout = Duration::from_secs(2);
    let report = load::sse_fanout(
        &run,
        FanoutOptions {
            subs: 5,
            msgs: 3,
            rate: 0.0,
        },
    )
    .await
    .unwrap();
    assert_eq!((report.connected, report.failed_subs), (0, 5), "{report}");
    assert_eq!((report.published, report.deliveries), (0, 0), "{report}");
    assert_eq!(report.publish_errors, 3, "{report}");
}

/// Two listeners on one hub stand in for two nodes sharing a store: a
/// publish through either reaches subscribers on both.
async fn spawn_two_nodes() -> Run {
    let hub = slosh_hyper::slosh_core::Hub::builder()
        .settings(slosh_hyper::slosh_core::Settings {
            queue: 1000,
            ..Default::default()
        })
        .build();
    let mut bases = Vec::new();
    for _ in 0..2 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        bases.push(format!("http://{}", listener.local_addr().unwrap()));
        tokio::spawn(slosh_hyper::serve(
            listener,
            hub.clone(),
            std::future::pending(),
        ));
    }
    let target = Target::slosh(&bases[0])
        .unwrap()
        .with_bases(&bases)
        .unwrap();
    let mut run = Run::new(target);
    run.timeout = Duration::from_secs(10);
    // The same process twice: the figures are the sum over both pids.
    let me = ServerProcess {
        pid: std::process::id(),
    };
    run.servers = vec![me, me];
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_fanout_over_two_nodes_delivers_every_message_to_every_subscriber() {
    let run = spawn_two_nodes().await;
    let report = load::sse_fanout(
        &run,
        FanoutOptions {
            subs: 10,
            msgs: 10,
            rate: 0.0,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.connected, 10, "{report}");
    assert_eq!(report.published, 10, "{report}");
    assert_eq!(report.deliveries, 100, "{report}");
    assert_eq!((report.lost, report.errors), (0, 0), "{report}");
    assert!(report.server_cpu_s.is_some(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_longpoll_over_two_nodes() {
    let run = spawn_two_nodes().await;
    let report = load::publish(
        &run,
        PublishOptions {
            conns: 2,
            topics: 3,
            duration: Duration::from_millis(300),
            size: 100,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.errors, 0, "{report}");
    assert!(report.ok > 10, "{report}");
    let report = load::longpoll(
        &run,
        FanoutOptions {
            subs: 6,
            msgs: 5,
            rate: 0.0,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.deliveries, 30, "{report}");
    assert_eq!(report.lost, 0, "{report}");
}
