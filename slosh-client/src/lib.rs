//! The client side of slosh's protocol, written once: what the load
//! generator and soak (`benches`), the client verbs (`slosh-cli publish`,
//! `watch`, `reflect`) and the conformance suite each used to parse for
//! themselves.
//!
//! Everything here is sans I/O, in the manner of `slosh-core`: bytes in,
//! values out, no socket, no clock, no runtime. Each user drives it from
//! its own I/O (a raw tokio socket in the load generator, where the hot
//! path must stay cheap; hyper's body frames in slosh-cli; a test's
//! `read_to_end` in the conformance suite), and where their needs differ
//! the shared piece takes an option rather than forking:
//!
//! - [`http`]: an HTTP/1.1 response head ([`http::parse_head`]) and its
//!   body's framing ([`http::BodyDecoder`], [`http::dechunk`]). Which
//!   headers are copied is the caller's [`http::Keep`]: none on the load
//!   generator's hot path, all in a test.
//! - [`sse`]: the `text/event-stream` parser ([`sse::Parser`]), bounded per
//!   event (slosh-cli's `--max-body`), parsing lines where they lie so that
//!   ten thousand load streams allocate nothing per event.
//! - [`cursor`]: a resume point, `N` or `N@EPOCH`, as SSE ids, WebSocket
//!   frames and long-poll batches carry it.
//! - [`batch`]: the long-poll batch in JSON ([`batch::json`], generic over
//!   what a message becomes) and XML ([`batch::xml`]), with the errors a
//!   person reads when the URL was not a slosh topic.
//!
//! # What is not here, and why
//!
//! - *Sockets and requests.* The load generator writes preformatted
//!   requests on a raw keep-alive socket, because a general client costs
//!   more per request than the server it measures; slosh-cli uses hyper's
//!   client, because it must tell whether a failed publish may have reached
//!   the server; the conformance suite writes bytes by hand, because some
//!   of its requests are deliberately malformed. Three needs, three
//!   transports; the parsing behind them is one.
//! - *The frontends' byte-for-byte comparison* (`conformance/tests/
//!   compare.rs`) splits heads itself: it compares the status line and
//!   header lines exactly as sent, which a parser exists to normalize away.
//!   Its chunked bodies are undone with [`http::dechunk`].
//! - *WebSocket framing.* Every client that reads frames (the soak, the
//!   conformance suite) already shares one implementation, tungstenite.
//!   The load generator's idle sockets send a fixed handshake and never
//!   read a frame, so there is nothing to share beyond [`http::parse_head`]
//!   reading the `101`.
//!
//! # Example
//!
//! One SSE answer, arriving in two reads that split a chunk, a line and an
//! event:
//!
//! ```
//! use slosh_client::http::{parse_head, BodyDecoder, Framing, Keep};
//! use slosh_client::sse::Parser;
//!
//! let wire = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
//!     Transfer-Encoding: chunked\r\n\r\n\
//!     10\r\nretry: 3000\n\nid:\r\n12\r\n 1\ndata: {\"a\":1}\n\n\r\n";
//! let (first, second) = wire.split_at(90);
//!
//! let mut buf = first.to_vec();
//! let (head, used) = parse_head(&buf, Keep::FramingOnly)?.expect("the head is in");
//! assert_eq!((head.status, head.framing), (200, Framing::Chunked));
//! buf.drain(..used);
//!
//! let mut body = BodyDecoder::new(head.framing);
//! let mut events = Parser::new(64 * 1024);
//! let mut seen = Vec::new();
//! for read in [&[][..], second] {
//!     buf.extend_from_slice(read);
//!     let progress = body.decode_pieces(&buf, |piece| {
//!         // `piece` is borrowed from `buf`: nothing is copied twice.
//!         let _ = events.feed(piece, |event| seen.push((event.id.clone(), event.text().into_owned())));
//!     })?;
//!     buf.drain(..progress.used);
//! }
//! assert_eq!(seen, [(Some("1".to_string()), r#"{"a":1}"#.to_string())]);
//! assert_eq!(events.retry(), Some(3000));
//! # Ok::<(), slosh_client::http::HttpError>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod batch;
pub mod cursor;
pub mod http;
pub mod sse;
