//! `slosh-compare RUNS.jsonl`: the side-by-side table of
//! `benches/compare.sh` (medians of valid runs, slosh ÷ Nchan) and the
//! issue's targets judged on them, in Markdown on stdout.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use benches::compare::{parse_records, table, verdict_table, verdicts, Runs};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(path), None) = (args.next(), args.next()) else {
        eprintln!("usage: slosh-compare RUNS.jsonl");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("slosh-compare: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let records = match parse_records(&text) {
        Ok(records) => records,
        Err(e) => {
            eprintln!("slosh-compare: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runs = Runs::new(&records);
    println!("{}", table(&runs));
    print!("{}", verdict_table(&verdicts(&runs)));
    for record in records.iter().filter(|r| !r.valid) {
        println!(
            "\ninvalid: {} {} rep {}: {}",
            record.server, record.scenario, record.rep, record.note
        );
    }
    ExitCode::SUCCESS
}
