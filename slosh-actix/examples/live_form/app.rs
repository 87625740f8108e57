//! The live form application: its own pages and form handler, and slosh
//! mounted behind them in the same process. Shared by the example's
//! `main.rs` and the integration test, which serves it on a free port.

use std::collections::HashMap;
use std::future::Future;

use actix_web::http::header::{CONTENT_TYPE, LOCATION};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use slosh_actix::slosh_core::{Grant, Hub, Pattern, Signer};
use slosh_actix::ServeOptions;
use slosh_cli::ServeArgs;

/// The topic every submission is published to.
pub const TOPIC: &str = "submissions";

/// The users who may log in (no passwords: it is a demo of who sees
/// what, not of logging in).
pub const USERS: [&str; 2] = ["alice", "bob"];

/// Each user's notifications go to `notify-USER`, a private topic: only
/// a token naming it (the login cookie) may read it.
pub const NOTIFY: &str = "notify-";

/// How long a login lasts.
const LOGIN: std::time::Duration = std::time::Duration::from_secs(8 * 3600);

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
    // With a token secret, each user's notifications are private and the
    // login mints the cookie that opens them; without one there are no
    // logins (and every topic is open, as in `slosh-cli serve`).
    let mut args = args.clone();
    let signer =
        match (&args.jwt_secret, &args.jwt_public_key) {
            (Some(secret), _) => {
                let private = Pattern::parse(&format!("{NOTIFY}*"))
                    .map_err(|error| std::io::Error::other(error.to_string()))?;
                args.private.push(private);
                Some(
                    Signer::secret(secret.as_bytes())
                        .map_err(|error| std::io::Error::other(error.to_string()))?,
                )
            }
            (None, Some(_)) => return Err(std::io::Error::other(
                "live_form signs its login cookies itself: give --jwt-secret, not --jwt-public-key",
            )),
            (None, None) => None,
        };
    let hub = args.hub_builder()?.build();
    let options = ServeOptions {
        header_timeout: args.header_timeout,
        max_connections: args.max_connections,
        ..ServeOptions::default()
    };
    let routes = move |config: &mut web::ServiceConfig| {
        config.app_data(web::Data::new(signer.clone()));
        routes(config);
    };
    slosh_actix::serve_app_with(listener, hub, options, routes, shutdown).await
}

/// The application's own pages; slosh answers every other path.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/", web::get().to(form_page))
        .route("/form", web::get().to(form_page))
        .route("/form", web::post().to(submit))
        .route("/live", web::get().to(live_page))
        .route("/login", web::get().to(login))
        .route("/notify", web::post().to(notify))
        .route("/notifications", web::get().to(notifications_page));
}

/// Logs `?user=` in: the token cookie for that user's notifications, then
/// their page.
async fn login(
    signer: web::Data<Option<Signer>>,
    hub: web::Data<Hub>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let Some(signer) = signer.as_ref() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "logins need a token secret: start live_form with --jwt-secret SECRET".into(),
        );
    };
    let Some(user) = query
        .get("user")
        .filter(|user| USERS.contains(&user.as_str()))
    else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("log in as one of {USERS:?}"),
        );
    };
    let grant = Grant {
        subject: Some(user.clone()),
        subscribe: vec![format!("{NOTIFY}{user}")],
        ttl: LOGIN,
        ..Grant::default()
    };
    match slosh_actix::token_cookie(&hub, signer, &grant) {
        Ok(cookie) => HttpResponse::SeeOther()
            .insert_header(cookie)
            .insert_header((LOCATION, format!("/notifications?user={user}")))
            .finish(),
        Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    }
}

/// Sends a notification to one user: published in-process, so it needs
/// no token; only that user's page can read it.
async fn notify(hub: web::Data<Hub>, form: web::Form<HashMap<String, String>>) -> HttpResponse {
    let Some(user) = form
        .get("user")
        .filter(|user| USERS.contains(&user.as_str()))
    else {
        return text(StatusCode::BAD_REQUEST, format!("notify one of {USERS:?}"));
    };
    let message = field(&form, "message");
    let topic = format!("{NOTIFY}{user}");
    // A store's write may block: off the worker, as the hub's docs ask.
    let published = web::block(move || hub.publish(&topic, &message)).await;
    match published {
        Ok(Ok(_)) => HttpResponse::SeeOther()
            .insert_header((LOCATION, "/form?notified"))
            .finish(),
        Ok(Err(error)) => text(
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_REQUEST),
            format!("not sent: {error}"),
        ),
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down".into()),
    }
}

async fn notifications_page() -> HttpResponse {
    html(NOTIFICATIONS_PAGE)
}

fn text(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((CONTENT_TYPE, "text/plain; charset=utf-8"))
        .body(body)
}

/// Publishes a submitted form and sends the browser back to the form.
/// Only the known fields are kept, each cut to [`FIELD_LIMIT`] characters.
async fn submit(hub: web::Data<Hub>, form: web::Form<HashMap<String, String>>) -> HttpResponse {
    let mut submission = serde_json::Map::new();
    for name in FIELDS {
        submission.insert(name.to_string(), field(&form, name).into());
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

/// Form field `name`, trimmed and cut to [`FIELD_LIMIT`] characters; empty
/// when missing.
fn field(form: &HashMap<String, String>, name: &str) -> String {
    form.get(name)
        .map(|value| value.trim().chars().take(FIELD_LIMIT).collect())
        .unwrap_or_default()
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
<h2>Notify one user</h2>
<form method="post" action="/notify">
  <p><label>To <select name="user"><option>alice</option><option>bob</option></select></label></p>
  <p><label>Message <input name="message" maxlength="1000"></label></p>
  <p><button>Notify</button></p>
</form>
<p>Each user sees only their own: log in as <a href="/login?user=alice" target="_blank">alice</a>
or <a href="/login?user=bob" target="_blank">bob</a> (needs <code>--jwt-secret</code>).</p>
</html>
"#;

const NOTIFICATIONS_PAGE: &str = r#"<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>Your notifications</title>
<h1>Notifications for <span id="user"></span></h1>
<p id="status">connecting…</p>
<ul id="notifications"></ul>
<script>
  // The login cookie (HttpOnly, unseen here) carries the token: the
  // EventSource sends it, and only this user's topic lets it in.
  const user = new URLSearchParams(location.search).get("user") || "";
  document.getElementById("user").textContent = user;
  const list = document.getElementById("notifications");
  const status = document.getElementById("status");
  const source = new EventSource("/topics/notify-" + encodeURIComponent(user) + ".sse");
  source.onopen = () => { status.textContent = "live"; };
  source.onerror = () => {
    status.textContent = source.readyState === EventSource.CLOSED
      ? "not allowed: log in again" : "reconnecting…";
  };
  source.addEventListener("end", () => { status.textContent = "login expired"; source.close(); });
  source.onmessage = (event) => {
    const item = document.createElement("li");
    item.textContent = JSON.parse(event.data);
    list.prepend(item);
  };
</script>
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
