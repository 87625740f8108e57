//! The live form application: its own pages and form handler, and slosh
//! mounted behind them in the same process. Shared by the example's
//! `main.rs` and the integration test, which serves it on a free port.

use std::collections::HashMap;
use std::future::Future;

use actix_web::http::header::{CONTENT_TYPE, LOCATION};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use slosh_actix::slosh_core::Hub;
use slosh_actix::ServeOptions;
use slosh_cli::ServeArgs;

/// The topic every submission is published to.
pub const TOPIC: &str = "submissions";

/// The form's fields, and the most of each a submission keeps, so a
/// message stays far under the hub's `max_message`.
const FIELDS: [&str; 2] = ["name", "message"];
const FIELD_LIMIT: usize = 1000;

/// Serves the application on `listener` with the hub and limits `args` ask
/// for, until `shutdown` completes.
pub async fn serve(
    listener: std::net::TcpListener,
    args: &ServeArgs,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let hub = args.hub_builder()?.build();
    let options = ServeOptions {
        header_timeout: args.header_timeout,
        max_connections: args.max_connections,
        ..ServeOptions::default()
    };
    slosh_actix::serve_app_with(listener, hub, options, routes, shutdown).await
}

/// The application's own pages; slosh answers every other path.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/", web::get().to(form_page))
        .route("/form", web::get().to(form_page))
        .route("/form", web::post().to(submit))
        .route("/live", web::get().to(live_page));
}

/// Publishes a submitted form and sends the browser back to the form.
/// Only the known fields are kept, each cut to [`FIELD_LIMIT`] characters.
async fn submit(hub: web::Data<Hub>, form: web::Form<HashMap<String, String>>) -> HttpResponse {
    let mut submission = serde_json::Map::new();
    for field in FIELDS {
        let value: String = form
            .get(field)
            .map(|value| value.trim().chars().take(FIELD_LIMIT).collect())
            .unwrap_or_default();
        submission.insert(field.to_string(), value.into());
    }
    // The handler publishes straight into the hub: no HTTP round trip.
    match hub.publish(TOPIC, &submission) {
        Ok(_) => HttpResponse::SeeOther()
            .insert_header((LOCATION, "/form?sent"))
            .finish(),
        Err(error) => HttpResponse::build(
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_REQUEST),
        )
        .insert_header((CONTENT_TYPE, "text/plain; charset=utf-8"))
        .body(format!("not published: {error}")),
    }
}

async fn form_page() -> HttpResponse {
    html(FORM_PAGE)
}

async fn live_page() -> HttpResponse {
    html(LIVE_PAGE)
}

fn html(page: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
        .body(page)
}

const FORM_PAGE: &str = r#"<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>Live form</title>
<h1>Send something</h1>
<form method="post" action="/form">
  <p><label>Name <input name="name" maxlength="1000"></label></p>
  <p><label>Message <textarea name="message" maxlength="1000"></textarea></label></p>
  <p><button>Send</button></p>
</form>
<p>Everything sent appears on <a href="/live" target="_blank">the live page</a> at once.</p>
</html>
"#;

const LIVE_PAGE: &str = r#"<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>Live submissions</title>
<h1>Submissions, live</h1>
<p id="status">connecting…</p>
<ul id="submissions"></ul>
<script>
  const list = document.getElementById("submissions");
  const status = document.getElementById("status");
  const source = new EventSource("/topics/submissions.sse");
  source.onopen = () => { status.textContent = "live"; };
  source.onerror = () => { status.textContent = "reconnecting…"; };
  source.onmessage = (event) => {
    const submission = JSON.parse(event.data);
    const item = document.createElement("li");
    const name = document.createElement("strong");
    name.textContent = submission.name || "someone";
    item.append(name, ": ", submission.message);
    list.prepend(item);
  };
</script>
</html>
"#;
