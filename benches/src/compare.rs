//! The side-by-side table of `benches/compare.sh`: slosh and Nchan runs of
//! the same scenarios in, medians, ratios and the issue's targets out.
//!
//! `compare.sh` appends one record per run to a JSON-lines file:
//!
//! ```json
//! {"server":"slosh","scenario":"sse-1000x200","rep":1,"valid":true,"note":"","result":{…}}
//! ```
//!
//! `result` is `slosh-load`'s JSON line (or `null` when the run failed).
//! Only valid runs count: a run is invalid when the generator failed or
//! the server crashed during it (Nchan 1.3.6's `spool.c` assertion).
//!
//! Runs of `slosh-floor` (`SERVERS="slosh nchan floor"`), when there are
//! any, get two more columns: the floor's medians and floor ÷ Nchan, the
//! least any server could reach against Nchan on that machine.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

/// The server names `compare.sh` writes; `floor` is `slosh-floor`, run
/// only when asked for.
pub const SERVERS: [&str; 3] = ["slosh", "nchan", "floor"];

/// One run as `compare.sh` recorded it.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Record {
    /// `slosh`, `nchan` or `floor`.
    pub server: String,
    /// The scenario's label in the script (`sse-1000x200`, `publish`, …).
    pub scenario: String,
    /// Repetition, from 1.
    #[serde(default)]
    pub rep: u32,
    /// The run can be used.
    pub valid: bool,
    /// Why it cannot, when it cannot.
    #[serde(default)]
    pub note: String,
    /// `slosh-load`'s JSON line.
    #[serde(default)]
    pub result: Value,
}

/// Reads JSON lines; blank lines are skipped, a bad line is an error naming
/// its number.
pub fn parse_records(text: &str) -> Result<Vec<Record>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

/// A figure the table shows: its name and where it is in `result`.
struct Metric {
    name: &'static str,
    path: &'static [&'static str],
}

const fn metric(name: &'static str, path: &'static [&'static str]) -> Metric {
    Metric { name, path }
}

/// The figures shown for each `slosh-load` scenario kind.
fn metrics(kind: &str) -> &'static [Metric] {
    const SSE: &[Metric] = &[
        metric("deliveries/s", &["deliveries_per_s"]),
        metric("latency p50 µs", &["latency_us", "p50"]),
        metric("latency p99 µs", &["latency_us", "p99"]),
        metric("latency max µs", &["latency_us", "max"]),
        metric("lost", &["lost"]),
        metric("server CPU µs/delivery", &["server_cpu_per_delivery_us"]),
        metric("… of it user space", &["server_user_cpu_per_delivery_us"]),
        metric("server RSS B/subscriber", &["rss_per_sub_bytes"]),
    ];
    const LONGPOLL: &[Metric] = &[
        metric("deliveries/s", &["deliveries_per_s"]),
        metric("latency p50 µs", &["latency_us", "p50"]),
        metric("latency p99 µs", &["latency_us", "p99"]),
        metric("lost", &["lost"]),
        metric("visible loss", &["visible_loss"]),
        metric("server CPU µs/delivery", &["server_cpu_per_delivery_us"]),
        metric("… of it user space", &["server_user_cpu_per_delivery_us"]),
    ];
    const PUBLISH: &[Metric] = &[
        metric("requests/s", &["requests_per_s"]),
        metric("latency p50 µs", &["latency_us", "p50"]),
        metric("latency p99 µs", &["latency_us", "p99"]),
        metric("errors", &["errors"]),
        metric("server CPU µs/request", &["server_cpu_per_request_us"]),
        metric("… of it user space", &["server_user_cpu_per_request_us"]),
    ];
    const CONNECT: &[Metric] = &[
        metric("seconds to connect all", &["elapsed_s"]),
        metric("failed", &["failed_subs"]),
        metric("server RSS B/subscriber", &["rss_per_sub_bytes"]),
        metric("server CPU µs/subscriber", &["server_cpu_per_sub_us"]),
        metric("generator CPU s", &["load_cpu_s"]),
    ];
    match kind {
        "sse-fanout" => SSE,
        "longpoll" => LONGPOLL,
        "publish" => PUBLISH,
        "connect" => CONNECT,
        _ => &[],
    }
}

fn lookup(result: &Value, path: &[&str]) -> Option<f64> {
    path.iter()
        .try_fold(result, |value, key| value.get(key))?
        .as_f64()
}

/// The median (mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// Valid runs grouped by scenario label (in first-seen order) and server.
pub struct Runs<'a> {
    order: Vec<&'a str>,
    by: BTreeMap<(&'a str, &'a str), Vec<&'a Record>>,
    all: BTreeMap<(&'a str, &'a str), usize>,
}

impl<'a> Runs<'a> {
    /// Groups `records`.
    pub fn new(records: &'a [Record]) -> Runs<'a> {
        let mut runs = Runs {
            order: Vec::new(),
            by: BTreeMap::new(),
            all: BTreeMap::new(),
        };
        for record in records {
            let key = (record.scenario.as_str(), record.server.as_str());
            if !runs.order.contains(&key.0) {
                runs.order.push(key.0);
            }
            *runs.all.entry(key).or_default() += 1;
            if record.valid && record.result.is_object() {
                runs.by.entry(key).or_default().push(record);
            }
        }
        runs
    }

    /// The median of the figure at `path` over `server`'s valid runs of
    /// `scenario`.
    pub fn median(&self, scenario: &str, server: &str, path: &[&str]) -> Option<f64> {
        let values: Vec<f64> = self
            .by
            .get(&(scenario, server))?
            .iter()
            .filter_map(|r| lookup(&r.result, path))
            .collect();
        median(&values)
    }

    /// The largest value of the figure over `server`'s valid runs.
    fn max(&self, scenario: &str, server: &str, path: &[&str]) -> Option<f64> {
        self.by
            .get(&(scenario, server))?
            .iter()
            .filter_map(|r| lookup(&r.result, path))
            .reduce(f64::max)
    }

    fn kind(&self, scenario: &str) -> Option<&'a str> {
        SERVERS.iter().find_map(|server| {
            self.by
                .get(&(scenario, *server))?
                .first()?
                .result
                .get("scenario")?
                .as_str()
        })
    }

    /// Any run of `server` at all, valid or not.
    fn ran(&self, server: &str) -> bool {
        self.all.keys().any(|(_, s)| *s == server)
    }

    fn counts(&self, scenario: &str, server: &str) -> (usize, usize) {
        let valid = self.by.get(&(scenario, server)).map_or(0, Vec::len);
        let all = self.all.get(&(scenario, server)).copied().unwrap_or(0);
        (valid, all)
    }
}

/// Numbers as a person reads them: no needless decimals.
fn show(value: Option<f64>) -> String {
    match value {
        None => "–".to_string(),
        Some(v) if v.abs() >= 100.0 || v == v.trunc() => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

/// The Markdown table: one row per figure per scenario, slosh's median,
/// Nchan's median, and slosh ÷ Nchan; then, when `slosh-floor` ran, its
/// median and floor ÷ Nchan.
pub fn table(runs: &Runs<'_>) -> String {
    let floor = runs.ran("floor");
    let mut out = String::new();
    out.push_str("| scenario | figure | slosh | Nchan | slosh ÷ Nchan |");
    out.push_str(if floor {
        " floor | floor ÷ Nchan |\n"
    } else {
        "\n"
    });
    out.push_str("|---|---|---:|---:|---:|");
    out.push_str(if floor { "---:|---:|\n" } else { "\n" });
    let ratio_cell = |r: Option<f64>| r.map_or("–".to_string(), |r| format!("{r:.2}"));
    for scenario in &runs.order {
        let Some(kind) = runs.kind(scenario) else {
            let empty = if floor { " | |" } else { "" };
            let _ = writeln!(out, "| {scenario} | no valid run | | | |{empty}");
            continue;
        };
        let (sv, sa) = runs.counts(scenario, "slosh");
        let (nv, na) = runs.counts(scenario, "nchan");
        let mut label = format!("{scenario} (valid runs {sv}/{sa}, {nv}/{na}");
        if floor {
            let (fv, fa) = runs.counts(scenario, "floor");
            let _ = write!(label, ", {fv}/{fa}");
        }
        label.push(')');
        for (i, m) in metrics(kind).iter().enumerate() {
            let s = runs.median(scenario, "slosh", m.path);
            let n = runs.median(scenario, "nchan", m.path);
            let first = if i == 0 { label.as_str() } else { "" };
            let _ = write!(
                out,
                "| {first} | {} | {} | {} | {} |",
                m.name,
                show(s),
                show(n),
                ratio_cell(ratio(s, n))
            );
            if floor {
                let f = runs.median(scenario, "floor", m.path);
                let _ = write!(out, " {} | {} |", show(f), ratio_cell(ratio(f, n)));
            }
            out.push('\n');
        }
    }
    out
}

/// One of the issue's targets, judged on the medians.
#[derive(Debug)]
pub struct Verdict {
    /// What the issue asks.
    pub target: &'static str,
    /// What was measured.
    pub measured: String,
    /// Met, missed, or `None` when a figure is missing.
    pub met: Option<bool>,
}

/// The issue's targets against `compare.sh`'s scenario labels.
pub fn verdicts(runs: &Runs<'_>) -> Vec<Verdict> {
    let med = |scenario: &str, server: &str, path: &[&str]| runs.median(scenario, server, path);
    let both = |scenario: &str, path: &[&str]| {
        let s = med(scenario, "slosh", path);
        let n = med(scenario, "nchan", path);
        (s, n, ratio(s, n))
    };
    let mut verdicts = Vec::new();

    for scenario in ["sse-1000x200", "sse-10000x20"] {
        let (_, _, cpu) = both(scenario, &["server_cpu_per_delivery_us"]);
        let (_, _, rate) = both(scenario, &["deliveries_per_s"]);
        let lost = runs.max(scenario, "slosh", &["lost"]);
        let target = if scenario == "sse-1000x200" {
            "CPU per SSE delivery ≤ 0.5× Nchan, 0 lost, deliveries/s ≥ Nchan (1000 subs)"
        } else {
            "CPU per SSE delivery ≤ 0.5× Nchan, 0 lost, deliveries/s ≥ Nchan (10 000 subs)"
        };
        verdicts.push(Verdict {
            target,
            measured: format!(
                "CPU {}×, deliveries/s {}×, lost (worst run) {}",
                show(cpu),
                show(rate),
                show(lost)
            ),
            met: match (cpu, rate, lost) {
                (Some(c), Some(r), Some(l)) => Some(c <= 0.5 && r >= 1.0 && l == 0.0),
                _ => None,
            },
        });
    }

    let (s, n, r) = both("sse-1000x200", &["latency_us", "p99"]);
    verdicts.push(Verdict {
        target: "SSE fan-out p99 ≤ 0.5× Nchan at 1000 subs",
        measured: format!("{} µs vs {} µs = {}×", show(s), show(n), show(r)),
        met: r.map(|r| r <= 0.5),
    });

    let rss = med("connect-10000", "slosh", &["rss_per_sub_bytes"]);
    verdicts.push(Verdict {
        target: "RSS per idle SSE subscriber ≤ 4 KiB",
        measured: format!("{} B", show(rss)),
        met: rss.map(|b| b <= 4096.0),
    });

    let (_, _, rate) = both("publish", &["requests_per_s"]);
    let (_, _, cpu) = both("publish", &["server_cpu_per_request_us"]);
    verdicts.push(Verdict {
        target: "publish req/s ≥ Nchan at ≤ 0.5× its CPU per request",
        measured: format!("req/s {}×, CPU per request {}×", show(rate), show(cpu)),
        met: rate.zip(cpu).map(|(r, c)| r >= 1.0 && c <= 0.5),
    });

    let lost = runs.max("longpoll-200", "slosh", &["lost"]);
    let visible = med("longpoll-200", "slosh", &["visible_loss"]);
    let unseen = runs.by.get(&("longpoll-200", "slosh")).map(|rs| {
        rs.iter()
            .map(|r| {
                let lost = lookup(&r.result, &["lost"]).unwrap_or(f64::NAN);
                let visible = lookup(&r.result, &["visible_loss"]).unwrap_or(0.0);
                lost - visible
            })
            .fold(0.0, f64::max)
    });
    verdicts.push(Verdict {
        target: "long-poll 200 msg/s × 1000: every message delivered or counted in saw",
        measured: format!(
            "lost (worst run) {}, visible {} (median), lost and not visible {}",
            show(lost),
            show(visible),
            show(unseen)
        ),
        met: unseen.map(|u| u <= 0.0),
    });

    let (s, n, r) = both("longpoll-50", &["latency_us", "p99"]);
    verdicts.push(Verdict {
        target: "long-poll p99 ≤ Nchan at 50 msg/s",
        measured: format!("{} µs vs {} µs = {}×", show(s), show(n), show(r)),
        met: r.map(|r| r <= 1.0),
    });

    let (s, n, r) = both("connect-10000", &["elapsed_s"]);
    verdicts.push(Verdict {
        target: "connect 10 000 no slower than Nchan",
        measured: format!("{} s vs {} s = {}×", show(s), show(n), show(r)),
        met: r.map(|r| r <= 1.0),
    });
    verdicts
}

/// The targets as a Markdown table.
pub fn verdict_table(verdicts: &[Verdict]) -> String {
    let mut out = String::from("| target | measured (medians) | met? |\n|---|---|---|\n");
    for v in verdicts {
        let met = match v.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "no data",
        };
        let _ = writeln!(out, "| {} | {} | {met} |", v.target, v.measured);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(server: &str, scenario: &str, valid: bool, result: Value) -> String {
        serde_json::json!({
            "server": server, "scenario": scenario, "rep": 1,
            "valid": valid, "note": "", "result": result,
        })
        .to_string()
    }

    #[test]
    fn medians_take_the_middle_and_skip_nothing_finite() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    #[test]
    fn invalid_runs_are_counted_but_left_out_of_the_medians() {
        let sse = |cpu: f64, p99: f64| {
            serde_json::json!({"scenario": "sse-fanout", "deliveries_per_s": 1000.0,
                "latency_us": {"p50": 1.0, "p99": p99, "max": 9.0}, "lost": 0,
                "server_cpu_per_delivery_us": cpu, "rss_per_sub_bytes": 2000.0})
        };
        let lines = [
            record("slosh", "sse-1000x200", true, sse(2.0, 100.0)),
            record("slosh", "sse-1000x200", true, sse(4.0, 300.0)),
            record("slosh", "sse-1000x200", true, sse(3.0, 200.0)),
            record("nchan", "sse-1000x200", true, sse(8.0, 1000.0)),
            record("nchan", "sse-1000x200", false, sse(0.1, 1.0)),
            record("nchan", "sse-1000x200", false, Value::Null),
        ]
        .join("\n");
        let records = parse_records(&lines).unwrap();
        let runs = Runs::new(&records);
        assert_eq!(
            runs.median("sse-1000x200", "slosh", &["server_cpu_per_delivery_us"]),
            Some(3.0)
        );
        assert_eq!(
            runs.median("sse-1000x200", "nchan", &["latency_us", "p99"]),
            Some(1000.0)
        );
        let table = table(&runs);
        assert!(
            table.contains("sse-1000x200 (valid runs 3/3, 1/3)"),
            "{table}"
        );
        assert!(
            table.contains("| server CPU µs/delivery | 3 | 8 | 0.38 |"),
            "{table}"
        );
        let verdicts = verdicts(&runs);
        let cpu = &verdicts[0];
        assert_eq!(cpu.met, Some(true), "{cpu:?}");
        let p99 = verdicts
            .iter()
            .find(|v| v.target.starts_with("SSE fan-out p99"))
            .unwrap();
        assert_eq!(p99.met, Some(true), "{p99:?}");
        let connect = verdicts.last().unwrap();
        assert_eq!(connect.met, None);
        assert!(verdict_table(&verdicts).contains("no data"));
    }

    #[test]
    fn floor_runs_add_a_column_and_a_ratio_to_nchan_only_when_present() {
        let sse = |cpu: f64| serde_json::json!({"scenario": "sse-fanout", "server_cpu_per_delivery_us": cpu});
        let mut lines = vec![
            record("slosh", "sse-1000x200", true, sse(5.6)),
            record("nchan", "sse-1000x200", true, sse(6.0)),
            record(
                "slosh",
                "publish",
                true,
                serde_json::json!({"scenario": "publish"}),
            ),
        ];
        let records = parse_records(&lines.join("\n")).unwrap();
        let without = table(&Runs::new(&records));
        assert!(!without.contains("floor"), "{without}");
        lines.push(record("floor", "sse-1000x200", true, sse(4.5)));
        lines.push(record("floor", "sse-1000x200", false, Value::Null));
        let records = parse_records(&lines.join("\n")).unwrap();
        let with = table(&Runs::new(&records));
        assert!(with.contains("| floor | floor ÷ Nchan |"), "{with}");
        assert!(
            with.contains("sse-1000x200 (valid runs 1/1, 1/1, 1/2)"),
            "{with}"
        );
        assert!(
            with.contains("| server CPU µs/delivery | 5.60 | 6 | 0.93 | 4.50 | 0.75 |"),
            "{with}"
        );
        assert!(
            with.contains("publish (valid runs 1/1, 0/0, 0/0)"),
            "{with}"
        );
    }

    #[test]
    fn long_poll_loss_is_met_only_when_every_lost_message_was_visible() {
        let lp = |lost: u64, visible: u64| serde_json::json!({"scenario": "longpoll", "lost": lost, "visible_loss": visible});
        for (lost, visible, met) in [(0, 0, true), (50, 50, true), (50, 20, false)] {
            let line = record("slosh", "longpoll-200", true, lp(lost, visible));
            let records = parse_records(&line).unwrap();
            let verdicts = verdicts(&Runs::new(&records));
            let v = verdicts
                .iter()
                .find(|v| v.target.starts_with("long-poll 200"))
                .unwrap();
            assert_eq!(v.met, Some(met), "{lost} {visible}: {v:?}");
        }
    }

    #[test]
    fn a_bad_line_is_named() {
        let err = parse_records("\n{\"server\":1}\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
    }
}
