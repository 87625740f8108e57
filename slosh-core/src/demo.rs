//! The built-in demo: a few self-contained pages (no CDN, no other files)
//! served at `/` when the server has no static root, so a newcomer who runs
//! the server with no flags has something live to open in a browser.

/// The page at `path`, if it is one of the demo's.
pub(crate) fn page(path: &str) -> Option<&'static str> {
    match path {
        "/" | "/index.html" => Some(include_str!("demo/index.html")),
        "/chat-sse.html" => Some(include_str!("demo/chat-sse.html")),
        "/chat-json.html" => Some(include_str!("demo/chat-json.html")),
        "/chat-xml.html" => Some(include_str!("demo/chat-xml.html")),
        _ => None,
    }
}
