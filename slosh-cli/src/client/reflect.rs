//! `slosh-cli reflect FROM_URL TO_URL…`: every message of one topic,
//! republished to each destination in order, once.
//!
//! The source is read over SSE and resumed after the last message handled
//! when it reconnects; each destination remembers the last source id it was
//! given, so nothing is sent to it twice after a reconnect. A message is
//! handed to every destination (concurrently) before the next is read, so
//! each destination gets them in the source's order; a slow destination
//! holds the source back, and the source server drops a reader that falls
//! too far behind, which then resumes from its buffer (a gap notice says
//! what it no longer held).
//!
//! A publish that fails is tried again with backoff for `--retry-for`, then
//! given up with a notice. A message a destination refuses as such (`400`,
//! `413`, `404` of a mailbox topic nobody watches) is skipped with a notice
//! at once; a refused token (`401`) stops the reflect.
//!
//! **A POST whose answer was lost** (the connection broke after the request
//! left) may or may not have been stored. Before sending it again, reflect
//! reads what the destination stored after its previous publish there and
//! sends it again only if an equal message is not among them. That check
//! can be fooled only by another publisher storing an equal message in that
//! window (then the message is not sent again), or by a destination that
//! cannot be asked (then it is sent again).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode};

use super::filter::Filter;
use super::http::{self, Client, SMALL_BODY};
use super::notice::{seconds, Backoff, Notices};
use super::publish::{Published, Publisher, Refused};
use super::subscribe::{parse_json_batch, Format, Item, Subscription};
use super::target::Target;
use super::ReflectArgs;

/// How long a check request may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// One destination and what it has been given.
struct Destination {
    publisher: Publisher,
    /// Its topic URL without a suffix, for `.info` and `.json` reads.
    topic: Target,
    /// For those reads.
    reader: Client,
    /// The last source id handled for it (published, skipped or given up).
    last: u64,
    /// The destination topic's newest id as of our last publish there (or
    /// as read before the first): where a lost publish would be found.
    mark: Option<u64>,
    /// The largest answer read from it.
    max_body: usize,
}

/// Why a reflect stops.
struct Stop(String);

impl Destination {
    /// Publishes message `id` (`body`) until it is stored, refused or given up.
    async fn forward(
        &mut self,
        id: u64,
        body: &Bytes,
        retry_for: Duration,
        notices: Notices,
    ) -> Result<(), Stop> {
        let started = Instant::now();
        let mut backoff = Backoff::default();
        let mut attempts = 0u32;
        // Set once a publish may have been stored unseen: every further
        // attempt first looks whether it was.
        let mut unsure = false;
        loop {
            let outcome = if unsure {
                match self.was_stored(body).await {
                    Ok(true) => {
                        self.last = id;
                        return Ok(());
                    }
                    Ok(false) => {
                        unsure = false;
                        self.attempt(body).await
                    }
                    Err(why) => Err(Refused::Transient {
                        text: format!("cannot tell whether the last try was stored: {why}"),
                    }),
                }
            } else {
                self.attempt(body).await
            };
            attempts += 1;
            let why = match outcome {
                Ok(Published::Id(stored)) => {
                    self.mark = Some(stored);
                    self.last = id;
                    return Ok(());
                }
                Ok(Published::Dropped) => {
                    self.last = id;
                    return Ok(());
                }
                Err(Refused::Denied { text }) => {
                    return Err(Stop(format!("{}: {text}", self.publisher.target())))
                }
                Err(Refused::Permanent { text }) => {
                    notices.say(format!(
                        "{} refused message {id}, skipped: {text}",
                        self.publisher.target()
                    ));
                    self.last = id;
                    return Ok(());
                }
                Err(Refused::Unknown { text }) => {
                    unsure = true;
                    text
                }
                Err(Refused::Transient { text }) => text,
            };
            if !retry_for.is_zero() && started.elapsed() >= retry_for {
                notices.say(format!(
                    "gave up on message {id} for {} after {attempts} attempt(s) in {}: {why}",
                    self.publisher.target(),
                    seconds(started.elapsed())
                ));
                self.last = id;
                return Ok(());
            }
            let wait = backoff.next_wait();
            notices.say(format!(
                "publishing message {id} to {} failed: {why}; retrying in {}",
                self.publisher.target(),
                seconds(wait)
            ));
            tokio::time::sleep(wait).await;
        }
    }

    /// One POST, after learning the destination's newest id if still unknown.
    async fn attempt(&mut self, body: &Bytes) -> Result<Published, Refused> {
        if self.mark.is_none() {
            self.mark = self.newest().await.ok();
        }
        self.publisher.publish(body.clone()).await
    }

    /// The destination topic's newest id (0 when it does not exist).
    async fn newest(&mut self) -> Result<u64, String> {
        let target = self.topic.with_suffix("info", "");
        let answer = self.read(&target, SMALL_BODY).await?;
        match answer.status {
            StatusCode::OK => serde_json::from_slice::<serde_json::Value>(&answer.body)
                .ok()
                .and_then(|info| info.get("max")?.as_u64())
                .ok_or_else(|| format!("{target} is not a slosh topic's .info")),
            StatusCode::NOT_FOUND => Ok(0),
            _ => Err(answer.error_text()),
        }
    }

    async fn read(&mut self, target: &Target, limit: usize) -> Result<http::Answer, String> {
        let request = http::request(Method::GET, target, &[], Bytes::new())?;
        self.reader
            .send(request, limit, CHECK_TIMEOUT)
            .await
            .map_err(|failure| failure.to_string())
    }

    /// Whether a message equal to `body` was stored after `mark`. Without
    /// a mark there is nothing to look after: it counts as not stored.
    async fn was_stored(&mut self, body: &Bytes) -> Result<bool, String> {
        let Some(mark) = self.mark else {
            return Ok(false);
        };
        let newest = self.newest().await?;
        if newest == mark || newest == 0 {
            return Ok(false);
        }
        // Below the mark, the destination forgot the topic (a restart): its
        // new life is looked through from the start.
        let after = if newest < mark { 0 } else { mark };
        let target = self.topic.with_suffix("json", &format!("n={after}"));
        let answer = self.read(&target, self.max_body).await?;
        if answer.status != StatusCode::OK {
            return Err(answer.error_text());
        }
        let batch = parse_json_batch(&answer.body).map_err(|why| format!("{target}: {why}"))?;
        let ours = serde_json::from_slice::<serde_json::Value>(body).ok();
        let first = batch.first_id();
        for (at, message) in batch.messages.iter().enumerate().rev() {
            let same = match &ours {
                Some(ours) => serde_json::from_str::<serde_json::Value>(message)
                    .is_ok_and(|theirs| &theirs == ours),
                None => message.as_bytes() == body.as_ref(),
            };
            if same {
                self.mark = Some(first + at as u64);
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The verb.
pub(crate) async fn run(args: ReflectArgs) -> ExitCode {
    let usage = |why: String| {
        eprintln!("slosh-cli: {why}");
        ExitCode::from(2)
    };
    let (source, suffix) = match Target::parse_topic(&args.from_url) {
        Ok(parsed) => parsed,
        Err(why) => return usage(why),
    };
    if suffix.is_some_and(|suffix| suffix != "sse") {
        return usage(format!(
            "{}: reflect reads its source over SSE; give the topic URL without .{}",
            args.from_url,
            suffix.unwrap_or_default()
        ));
    }
    let filter = match Filter::parse(&args.filters) {
        Ok(filter) => filter,
        Err(why) => return usage(why),
    };
    let mut destinations = Vec::new();
    for url in &args.to_urls {
        let target = match Target::parse(url) {
            Ok(target) => target,
            Err(why) => return usage(why),
        };
        if target.same_topic(&source) {
            return usage(format!(
                "{url} is the source topic itself: every message would come back forever"
            ));
        }
        destinations.push(Destination {
            topic: target.clone(),
            reader: Client::new(&target),
            publisher: Publisher::new(target, args.token.as_deref()),
            last: 0,
            mark: None,
            max_body: args.max_body,
        });
    }
    let notices = Notices { quiet: args.quiet };
    let mut subscription =
        Subscription::new(source, Format::Sse, args.from, args.max_body, notices);
    loop {
        let (id, data) = match subscription.next().await {
            Ok(Item::Message { id, data }) => (id, data),
            Ok(Item::Restarted) => {
                // A new life of the source: its ids count from 1 again.
                for destination in &mut destinations {
                    destination.last = 0;
                }
                continue;
            }
            Err(fatal) => {
                eprintln!("slosh-cli: {}", fatal.0);
                return ExitCode::FAILURE;
            }
        };
        let body = if filter.is_empty() {
            Some(Bytes::from(data))
        } else {
            match serde_json::from_str(&data) {
                Ok(message) => filter
                    .apply(message)
                    .map(|kept| Bytes::from(kept.to_string())),
                Err(error) => {
                    notices.say(format!(
                        "message {id} could not be read for --filter ({error}), skipped"
                    ));
                    None
                }
            }
        };
        let Some(body) = body else {
            for destination in &mut destinations {
                destination.last = destination.last.max(id);
            }
            continue;
        };
        let forwards = destinations
            .iter_mut()
            .filter(|destination| destination.last < id)
            .map(|destination| destination.forward(id, &body, args.retry_for, notices));
        for result in futures_util::future::join_all(forwards).await {
            if let Err(Stop(why)) = result {
                eprintln!("slosh-cli: {why}");
                return ExitCode::FAILURE;
            }
        }
    }
}
