//! `slosh-cli watch URL`: every message of a topic as it arrives, one line
//! each on stdout (`ID MESSAGE`), for as long as it runs.

use std::io::Write;
use std::process::ExitCode;

use super::notice::Notices;
use super::subscribe::{Format, Item, Subscription};
use super::target::Target;
use super::WatchArgs;

/// The verb, until the subscription fails for good or stdout closes.
pub(crate) async fn run(args: WatchArgs) -> ExitCode {
    let (topic, suffix) = match Target::parse_topic(&args.url) {
        Ok(parsed) => parsed,
        Err(why) => {
            eprintln!("slosh-cli: {why}");
            return ExitCode::from(2);
        }
    };
    let from_url = suffix.and_then(Format::from_suffix);
    let format = match (args.format, from_url) {
        (Some(asked), Some(named)) if asked != named => {
            eprintln!(
                "slosh-cli: the URL ends in .{} but --format asks for another format: give one",
                suffix.unwrap_or_default()
            );
            return ExitCode::from(2);
        }
        (Some(format), _) | (None, Some(format)) => format,
        (None, None) => Format::Sse,
    };
    let notices = Notices { quiet: args.quiet };
    let mut subscription = Subscription::new(topic, format, args.from, args.max_body, notices);
    loop {
        match subscription.next().await {
            Ok(Item::Message { id, data }) => {
                let mut stdout = std::io::stdout().lock();
                // A reader that went away (`| head`) ends the watch.
                if writeln!(stdout, "{id} {data}").is_err() || stdout.flush().is_err() {
                    return ExitCode::SUCCESS;
                }
            }
            Ok(Item::Restarted) => {}
            Err(fatal) => {
                eprintln!("slosh-cli: {}", fatal.0);
                return ExitCode::FAILURE;
            }
        }
    }
}
