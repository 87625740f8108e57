//! Static files from a root folder (`--root`): which file a path names, or
//! why none.
//!
//! Core decides everything here — the method rule, how the path is decoded
//! and which paths are refused, `index.html` for folders, the content type
//! and the headers — and hands back a [`StaticFile`]: the canonical path of
//! a regular file inside the root, and the head to answer with. The adapter
//! only opens that path and streams it, so a large file costs neither a
//! blocked runtime thread nor its size in memory.
//!
//! # Why no path can escape the root
//!
//! 1. The path is split on `/` *before* anything is decoded, and each
//!    segment is percent-decoded exactly once. `%2f` therefore never becomes
//!    a separator, and `%252e` becomes the literal name `%2e`, never a dot.
//! 2. A decoded segment that is `.` or `..`, contains `/`, `\` or NUL, or is
//!    anything but one plain file name to the platform's path parser (a
//!    drive prefix, a root) is refused. Empty segments (`//`) are refused
//!    too, except the trailing one of a folder URL (`/docs/`). Names that
//!    start with a dot (`.git`, `.env`) are hidden, except `.well-known`.
//! 3. What is left is joined onto the canonical root and canonicalized, which
//!    resolves every symlink; the result must lie under the canonical root,
//!    compared component by component (`Path::starts_with`), so neither a
//!    symlink out nor a sibling folder `/srv/www-evil` of root `/srv/www`
//!    passes. Symlinks that stay inside the root are followed.
//! 4. Only a regular file is served (never a FIFO or a device, which would
//!    block the reader); a folder is served by its `index.html`, which goes
//!    through the same canonical check. There are no folder listings.
//!
//! Every refusal is the same `404` as a missing file, so an answer never
//! tells what exists outside the root.

use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use crate::error::Error;
use crate::http::{Outcome, Response};
use crate::hub::Hub;

/// The methods a static path serves, for `Allow`.
pub const STATIC_METHODS: &str = "GET, HEAD";

/// `Cache-Control` of a static file. Without validators (`ETag`,
/// `Last-Modified`) a browser that stored a copy could never learn it went
/// stale, and a page edited in the root should show on the next reload:
/// `no-cache` lets it keep the copy but asks every time.
pub const STATIC_CACHE_CONTROL: &str = "no-cache";

/// The bytes an adapter should read per chunk when streaming a file: large
/// enough for few wakeups, small enough that a connection holds little.
pub const CHUNK_SIZE: usize = 64 * 1024;

/// The one folder name starting with a dot that is served (RFC 8615).
const WELL_KNOWN: &str = ".well-known";

/// The static root: the folder as configured, and its canonical form,
/// found once (at hub build, or at the first request if the folder appeared
/// only later).
#[derive(Debug)]
pub(crate) struct StaticRoot {
    configured: PathBuf,
    canonical: OnceLock<PathBuf>,
}

impl StaticRoot {
    /// A root at `path`, canonicalized now if it exists.
    pub(crate) fn new(path: &Path) -> StaticRoot {
        let root = StaticRoot {
            configured: path.to_path_buf(),
            canonical: OnceLock::new(),
        };
        root.canonical();
        root
    }

    /// The canonical root, or `None` while the configured folder is missing
    /// (then nothing is served).
    fn canonical(&self) -> Option<&Path> {
        if let Some(canonical) = self.canonical.get() {
            return Some(canonical);
        }
        let canonical = std::fs::canonicalize(&self.configured).ok()?;
        if !canonical.is_dir() {
            return None;
        }
        Some(self.canonical.get_or_init(|| canonical))
    }

    /// Decides a request for `path` (still percent-encoded) under this root.
    #[cfg(test)]
    pub(crate) fn serve(&self, method: &str, path: &str) -> Result<Outcome, Error> {
        self.look_up(path, with_body(method)?)
    }

    /// Looks `path` up under this root: the file system calls.
    fn look_up(&self, path: &str, with_body: bool) -> Result<Outcome, Error> {
        let root = self.canonical().ok_or(Error::NotFound)?;
        resolve(root, path, with_body)
    }
}

/// Whether a static answer to `method` has a body (`GET`) or not
/// (`HEAD`); any other method is refused before the path is looked at, so
/// a POST learns nothing about which files exist.
pub(crate) fn with_body(method: &str) -> Result<bool, Error> {
    match method {
        "GET" => Ok(true),
        "HEAD" => Ok(false),
        _ => Err(crate::http::not_allowed(method, STATIC_METHODS)),
    }
}

/// A request for a static file whose lookup is still to be made.
///
/// Looking a path up means `canonicalize` and `metadata` calls, which can
/// block on a slow or network file system; [`Hub::handle`] never makes
/// them. The adapter runs [`Lookup::run`] on a blocking pool (tokio's
/// `spawn_blocking`, actix's `web::block`).
#[derive(Debug)]
pub struct Lookup {
    hub: Hub,
    path: String,
    with_body: bool,
    pub(crate) cors: Option<String>,
}

impl Lookup {
    pub(crate) fn new(hub: Hub, path: &str, with_body: bool) -> Lookup {
        Lookup {
            hub,
            path: path.to_string(),
            with_body,
            cors: None,
        }
    }

    /// Makes the lookup (this blocks on the file system): the file to send,
    /// or the answer instead (a redirect, or a refusal, counted as any
    /// other).
    pub fn run(self) -> Result<StaticFile, Response> {
        let found = match &self.hub.inner.static_root {
            Some(root) => root.look_up(&self.path, self.with_body),
            None => Err(Error::NotFound),
        };
        let outcome = match found {
            Ok(outcome) => outcome,
            Err(error) => self.hub.refuse(&error),
        };
        match crate::dispatch::with_cors(self.cors, outcome) {
            Outcome::File(file) => Ok(file),
            Outcome::Respond(response) => Err(response),
            // `resolve` gives only those two; anything else is a bug here,
            // answered rather than panicked on.
            _ => Err(Response::error(&Error::NotFound)),
        }
    }
}

/// A regular file inside the static root, ready to be sent: the head comes
/// from [`StaticFile::head`], the bytes from reading [`StaticFile::path`]
/// in chunks of [`CHUNK_SIZE`], at most [`StaticFile::len`] of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticFile {
    path: PathBuf,
    len: u64,
    content_type: &'static str,
    with_body: bool,
    /// The allowed CORS origin to answer with, if any.
    pub(crate) cors: Option<String>,
}

impl StaticFile {
    /// The file's canonical path, inside the canonical root.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's length when it was resolved: the `Content-Length` sent,
    /// so an adapter sends no more than this even if the file grew.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `Content-Type`, chosen by the file's extension.
    pub fn content_type(&self) -> &'static str {
        self.content_type
    }

    /// Whether the file's bytes follow the head: `false` for `HEAD`.
    pub fn has_body(&self) -> bool {
        self.with_body
    }

    /// The status and headers to send before the file's bytes.
    pub fn head(&self) -> Response {
        let mut head = Response {
            status: 200,
            headers: vec![
                ("Content-Type", self.content_type.into()),
                ("Content-Length", self.len.to_string().into()),
                ("Cache-Control", STATIC_CACHE_CONTROL.into()),
                // The type is decided from the extension; a browser must
                // not second-guess it into something executable.
                ("X-Content-Type-Options", "nosniff".into()),
            ],
            body: bytes::Bytes::new(),
        };
        if let Some(allowed) = &self.cors {
            crate::http::add_cors(&mut head, allowed);
        }
        head
    }

    /// The answer when the file cannot be opened after all (it vanished or
    /// lost its permissions between resolving and opening): `404`, as if it
    /// had never been there.
    pub fn gone(&self) -> Response {
        let mut response = Response::error(&Error::NotFound);
        if let Some(allowed) = &self.cors {
            crate::http::add_cors(&mut response, allowed);
        }
        response
    }
}

/// Checks, at a frontend's start, that `path` can serve as the static root:
/// it exists and is a folder. The error is a sentence for the operator.
pub fn check_root(path: &Path) -> Result<PathBuf, String> {
    let canonical = std::fs::canonicalize(path)
        .map_err(|error| format!("static root {}: {error}", path.display()))?;
    if canonical.is_dir() {
        Ok(canonical)
    } else {
        Err(format!("static root {} is not a directory", path.display()))
    }
}

/// Resolves `path` (percent-encoded, starting with `/`) under the canonical
/// `root`. See the module docs for the rules.
fn resolve(root: &Path, path: &str, with_body: bool) -> Result<Outcome, Error> {
    let rest = path.strip_prefix('/').ok_or(Error::NotFound)?;
    let folder_url = rest.is_empty() || rest.ends_with('/');
    let mut candidate = root.to_path_buf();
    let segments = rest.strip_suffix('/').unwrap_or(rest);
    if !segments.is_empty() {
        for raw in segments.split('/') {
            candidate.push(segment(raw)?);
        }
    }
    let found = inside(root, &candidate)?;
    let metadata = std::fs::metadata(&found).map_err(|_| Error::NotFound)?;
    let (file, metadata) = if metadata.is_dir() {
        if !folder_url {
            // Redirect so the relative links of its `index.html` resolve
            // inside the folder. `rest` is made of checked segments, so
            // `/` + it cannot turn into `//host` or `/\host` (an open
            // redirect).
            return Ok(Outcome::Respond(redirect(&format!("/{rest}/"))));
        }
        let index = inside(root, &found.join("index.html"))?;
        let metadata = std::fs::metadata(&index).map_err(|_| Error::NotFound)?;
        (index, metadata)
    } else if folder_url {
        // `/style.css/` names a folder that is a file: nothing.
        return Err(Error::NotFound);
    } else {
        (found, metadata)
    };
    if !metadata.is_file() {
        return Err(Error::NotFound);
    }
    Ok(Outcome::File(StaticFile {
        content_type: content_type(&file),
        path: file,
        len: metadata.len(),
        with_body,
        cors: None,
    }))
}

/// The canonical form of `candidate`, if it exists and lies under `root`.
fn inside(root: &Path, candidate: &Path) -> Result<PathBuf, Error> {
    let canonical = std::fs::canonicalize(candidate).map_err(|_| Error::NotFound)?;
    if canonical.starts_with(root) {
        Ok(canonical)
    } else {
        Err(Error::NotFound)
    }
}

/// One path segment, percent-decoded once, if it is a plain file name.
fn segment(raw: &str) -> Result<String, Error> {
    let decoded = percent_decode(raw)?;
    let plain = !decoded.is_empty()
        && decoded != "."
        && decoded != ".."
        && !decoded.contains(['/', '\\', '\0'])
        && (!decoded.starts_with('.') || decoded == WELL_KNOWN);
    // Whatever the platform's path parser would read as more than one plain
    // name (a drive prefix, a root) is refused too.
    let mut components = Path::new(&decoded).components();
    let one_name = matches!(
        (components.next(), components.next()),
        (Some(Component::Normal(name)), None) if name == decoded.as_str()
    );
    if plain && one_name {
        Ok(decoded)
    } else {
        Err(Error::NotFound)
    }
}

/// Decodes `%XX` escapes once. A `%` not followed by two hex digits, or
/// bytes that are not UTF-8 once decoded (overlong `%c0%ae` included), make
/// the path undecodable: `400`.
fn percent_decode(raw: &str) -> Result<String, Error> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let Some(&[high, low]) = bytes.get(i + 1..i + 3) else {
                return Err(Error::BadPath);
            };
            let high = hex_value(high).ok_or(Error::BadPath)?;
            let low = hex_value(low).ok_or(Error::BadPath)?;
            out.push(high << 4 | low);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::BadPath)
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

/// The `Content-Type` of a file, by its extension (case-insensitive).
fn content_type(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .and_then(|extension| extension.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("txt") => "text/plain; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("woff2") => "font/woff2",
        Some("xml") => "text/xml; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `301` to `location`, a path this module built from checked segments.
fn redirect(location: &str) -> Response {
    Response {
        status: 301,
        headers: vec![
            ("Location", location.to_string().into()),
            ("Cache-Control", STATIC_CACHE_CONTROL.into()),
        ],
        body: bytes::Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh folder under the system's temp dir, removed on drop.
    struct Tree(PathBuf);

    impl Tree {
        fn new(name: &str) -> Tree {
            let dir = std::env::temp_dir()
                .join(format!("slosh-files-unit-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("www/docs")).unwrap();
            std::fs::create_dir_all(dir.join("www-evil")).unwrap();
            std::fs::write(dir.join("www/index.html"), "home").unwrap();
            std::fs::write(dir.join("www/app.JS"), "js").unwrap();
            std::fs::write(dir.join("www/docs/index.html"), "docs").unwrap();
            std::fs::write(dir.join("www/%2e"), "literal").unwrap();
            std::fs::write(dir.join("www/.env"), "hidden").unwrap();
            std::fs::write(dir.join("www-evil/secret.txt"), "secret").unwrap();
            Tree(dir)
        }

        fn root(&self) -> PathBuf {
            std::fs::canonicalize(self.0.join("www")).unwrap()
        }

        fn get(&self, path: &str) -> Result<Outcome, Error> {
            resolve(&self.root(), path, true)
        }

        fn file(&self, path: &str) -> StaticFile {
            match self.get(path) {
                Ok(Outcome::File(file)) => file,
                other => panic!("{path}: {other:?}"),
            }
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_folder_is_served_by_its_index_html() {
        let tree = Tree::new("index");
        assert_eq!(tree.file("/").path(), tree.root().join("index.html"));
        assert_eq!(
            tree.file("/docs/").path(),
            tree.root().join("docs/index.html")
        );
        assert_eq!(
            tree.file("/docs/").content_type(),
            "text/html; charset=utf-8"
        );
        assert_eq!(tree.file("/docs/").len(), 4);
    }

    #[test]
    fn a_folder_without_its_slash_is_redirected_to_it() {
        let tree = Tree::new("redirect");
        match tree.get("/docs") {
            Ok(Outcome::Respond(response)) => {
                assert_eq!(response.status, 301);
                assert_eq!(response.header("Location"), Some("/docs/"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_extension_picks_the_content_type_case_insensitively() {
        let tree = Tree::new("types");
        assert_eq!(
            tree.file("/app.JS").content_type(),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("a.woff2")), "font/woff2");
        assert_eq!(content_type(Path::new("a.map")), "application/json");
        assert_eq!(
            content_type(Path::new("a.tar.gz")),
            "application/octet-stream"
        );
        assert_eq!(
            content_type(Path::new("Makefile")),
            "application/octet-stream"
        );
    }

    #[test]
    fn escapes_and_dot_segments_are_404() {
        let tree = Tree::new("escapes");
        for path in [
            "/..",
            "/../",
            "/../www-evil/secret.txt",
            "/%2e%2e/www-evil/secret.txt",
            "/%2E%2E/",
            "/..%2fwww-evil%2fsecret.txt",
            "/docs/..%2f..%2fwww-evil/secret.txt",
            "/%2e%2e%2f",
            "/.",
            "/docs/./index.html",
            "/..%5c..%5cwww-evil%5csecret.txt",
            "/..\\www-evil\\secret.txt",
            "/index.html%00.txt",
            "//etc/passwd",
            "/docs//index.html",
            "/index.html/",
            "/.env",
            "/missing.html",
            "relative",
            "",
        ] {
            assert_eq!(tree.get(path).err(), Some(Error::NotFound), "{path}");
        }
    }

    #[test]
    fn double_encoding_is_decoded_once_into_a_literal_name() {
        let tree = Tree::new("double");
        // `%252e` is the file literally named `%2e`, never a dot.
        assert_eq!(tree.file("/%252e").path(), tree.root().join("%2e"));
        assert_eq!(
            tree.get("/%252e%252e/www-evil/secret.txt").err(),
            Some(Error::NotFound)
        );
    }

    #[test]
    fn undecodable_paths_are_400() {
        let tree = Tree::new("undecodable");
        for path in ["/%", "/%2", "/%zz", "/%c0%ae%c0%ae/", "/%ff"] {
            assert_eq!(tree.get(path).err(), Some(Error::BadPath), "{path}");
        }
    }

    #[test]
    fn other_methods_are_405_before_the_path_is_looked_at() {
        let tree = Tree::new("methods");
        let root = StaticRoot::new(&tree.0.join("www"));
        for method in ["POST", "PUT", "DELETE", "OPTIONS", "FROB"] {
            match root.serve(method, "/missing") {
                Err(Error::MethodNotAllowed { allow, .. }) => assert_eq!(allow, "GET, HEAD"),
                other => panic!("{method}: {other:?}"),
            }
        }
        match root.serve("HEAD", "/") {
            Ok(Outcome::File(file)) => assert!(!file.has_body()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_root_that_appears_later_is_found_at_first_use() {
        let tree = Tree::new("later");
        let root = StaticRoot::new(&tree.0.join("not-yet"));
        assert_eq!(root.serve("GET", "/").err(), Some(Error::NotFound));
        std::fs::create_dir(tree.0.join("not-yet")).unwrap();
        std::fs::write(tree.0.join("not-yet/index.html"), "now").unwrap();
        assert!(matches!(root.serve("GET", "/"), Ok(Outcome::File(_))));
    }

    #[test]
    fn check_root_refuses_a_missing_folder_or_a_file() {
        let tree = Tree::new("check");
        assert!(check_root(&tree.0.join("www")).is_ok());
        let missing = check_root(&tree.0.join("nope")).unwrap_err();
        assert!(missing.contains("nope"), "{missing}");
        let file = check_root(&tree.0.join("www/index.html")).unwrap_err();
        assert!(file.contains("not a directory"), "{file}");
    }
}
