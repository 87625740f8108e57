//! Property: whatever path a client sends, a static answer is a regular file
//! inside the canonical root, never one of the secrets planted around it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use slosh_core::{Hub, Outcome, Request, Settings};

const SIBLING_SECRET: &str = "sibling-secret-never-served";
const OUTSIDE_SECRET: &str = "outside-secret-never-served";
/// Inside the root, but in hidden files (`.env`, `.git/config`).
const DOT_SECRET: &str = "dot-secret-never-served";

/// Whether `text` holds any of the planted secrets.
fn has_secret(text: &str) -> bool {
    [SIBLING_SECRET, OUTSIDE_SECRET, DOT_SECRET]
        .iter()
        .any(|secret| text.contains(secret))
}

/// ```text
/// <base>/www/index.html, a.txt, docs/index.html, docs/b.css
/// <base>/www/out -> <base>/outside.txt       (symlink out)
/// <base>/www/evil -> <base>/www-evil         (symlink to the sibling)
/// <base>/www/in -> docs                      (symlink that stays inside)
/// <base>/www/up -> ..                        (relative symlink out)
/// <base>/www/chain -> out                    (symlink to a symlink out)
/// <base>/www/self -> .                       (symlink to the root itself)
/// <base>/www/.env, .git/config               (hidden files inside)
/// <base>/www-evil/secret.txt                 (sibling named like the root)
/// <base>/outside.txt
/// ```
struct Tree {
    base: PathBuf,
}

impl Tree {
    fn new() -> Tree {
        Tree::new_named("prop")
    }

    /// Tests run in parallel threads of one process, so each gets its own
    /// tree.
    fn new_named(name: &str) -> Tree {
        let base = std::env::temp_dir().join(format!("slosh-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let www = base.join("www");
        std::fs::create_dir_all(www.join("docs")).unwrap();
        std::fs::create_dir_all(base.join("www-evil")).unwrap();
        std::fs::write(www.join("index.html"), "home").unwrap();
        std::fs::write(www.join("a.txt"), "a").unwrap();
        std::fs::write(www.join("docs/index.html"), "docs").unwrap();
        std::fs::write(www.join("docs/b.css"), "b").unwrap();
        std::fs::write(base.join("www-evil/secret.txt"), SIBLING_SECRET).unwrap();
        std::fs::write(base.join("outside.txt"), OUTSIDE_SECRET).unwrap();
        std::fs::write(www.join(".env"), DOT_SECRET).unwrap();
        std::fs::create_dir_all(www.join(".git")).unwrap();
        std::fs::write(www.join(".git/config"), DOT_SECRET).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::symlink;
            symlink(base.join("outside.txt"), www.join("out")).unwrap();
            symlink(base.join("www-evil"), www.join("evil")).unwrap();
            symlink("docs", www.join("in")).unwrap();
            symlink("..", www.join("up")).unwrap();
            symlink("out", www.join("chain")).unwrap();
            symlink(".", www.join("self")).unwrap();
        }
        Tree { base }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// Pieces a path is built from: traversal in every spelling (plain,
/// percent-encoded, double-encoded, overlong UTF-8, IIS's `%u`), separators
/// (`/`, `\`, NUL, raw and encoded), Unicode lookalikes of the dot and the
/// slash (fullwidth dot U+FF0E, one-dot leader U+2024, fullwidth solidus
/// U+FF0F, division slash U+2215, raw and encoded), absolute paths, and
/// names: real ones, hidden ones, the symlinks out, the sibling's. Names
/// weigh more, so that many paths name something real.
fn piece(base: &Path) -> impl Strategy<Value = String> {
    let base = base.display().to_string();
    let tricks = [
        "..",
        ".",
        "%2e",
        "%2E",
        "%2e%2e",
        "%2E%2e",
        ".%2e",
        "%2f",
        "%2F",
        "%5c",
        "%5C",
        "\\",
        "%00",
        "%252e",
        "%252e%252e",
        "%252f",
        "%25",
        "%",
        "．",
        "%ef%bc%8e",
        "∕",
        "%e2%88%95",
        "%c0%ae",
        "%c0%af",
        "%c0%2e",
        "%e0%80%ae",
        "%c1%9c",
        "%u002e",
        "%u2215",
        "\0",
        "..\0",
        ".\0.",
        "%2e%00",
        "․",
        "․․",
        "%e2%80%a4",
        "%e2%80%a4%e2%80%a4",
        "．．",
        "%ef%bc%8e%ef%bc%8e",
        "／",
        "%ef%bc%8f",
        "..／",
        "..∕",
        "\\..\\",
        "..%5c..%5c",
        "/",
        "C:",
        "c:%5c",
        "~",
        "%7e",
        ".env",
        ".git",
        "%2eenv",
        "%2egit",
    ];
    let names = [
        "index.html",
        "a.txt",
        "docs",
        "b.css",
        "www",
        "www-evil",
        "secret.txt",
        "outside.txt",
        ".well-known",
        "docs/b.css",
        "in/b.css",
        "self/a.txt",
        "self/docs/",
        ".env",
        ".git/config",
    ];
    // The symlinks, which only the canonical check stops.
    let links = [
        "in",
        "out",
        "evil",
        "evil/secret.txt",
        "evil/",
        "up",
        "up/outside.txt",
        "up/www-evil/secret.txt",
        "chain",
        "self",
        "self/out",
        "self/.env",
        "in/../../outside.txt",
    ];
    let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    prop_oneof![
        4 => proptest::sample::select(owned(&names)),
        3 => proptest::sample::select(owned(&links)),
        5 => proptest::sample::select(owned(&tricks)),
        1 => Just(base.clone()),
        1 => Just(format!("{base}/www-evil/secret.txt")),
        1 => Just(format!("{base}/outside.txt")),
    ]
}

/// A path: mostly segments of one to three pieces, mostly joined by `/`, so
/// that the symlinks out are often named exactly; now and then a real URL
/// as is, so the property also sees files served.
fn path(base: &Path) -> impl Strategy<Value = String> {
    let real = [
        "/",
        "/index.html",
        "/a.txt",
        "/docs/",
        "/docs/b.css",
        "/in/b.css",
        "/in/",
    ];
    prop_oneof![
        3 => tricky_path(base),
        1 => proptest::sample::select(real.map(String::from).to_vec()),
    ]
}

fn tricky_path(base: &Path) -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        3 => piece(base),
        1 => proptest::collection::vec(piece(base), 2..=3).prop_map(|pieces| pieces.concat()),
    ];
    let joint = prop_oneof![6 => Just("/"), 1 => Just(""), 1 => Just("//"), 1 => Just("%2f")];
    (
        prop_oneof![6 => Just(""), 1 => Just("/"), 1 => Just("\\")],
        proptest::collection::vec((segment, joint), 1..4),
        prop_oneof![Just(""), Just("/")],
    )
        .prop_map(|(start, segments, end)| {
            let mut path = format!("/{start}");
            for (i, (segment, joint)) in segments.iter().enumerate() {
                if i > 0 {
                    path.push_str(joint);
                }
                path.push_str(segment);
            }
            path.push_str(end);
            path
        })
}

#[test]
fn no_path_resolves_outside_the_root() {
    let tree = Tree::new();
    let root = std::fs::canonicalize(tree.base.join("www")).unwrap();
    let hub = Hub::builder()
        .settings(Settings {
            root: Some(tree.base.join("www")),
            ..Settings::default()
        })
        .build();
    let now = Instant::now();
    let mut runner = TestRunner::new(Config {
        cases: 4096,
        ..Config::default()
    });
    let served = std::cell::Cell::new(0u32);
    runner
        .run(
            &(path(&tree.base), prop_oneof![Just("GET"), Just("HEAD")]),
            |(path, method)| {
                match hub.handle(Request::new(method, &path), now).resolved() {
                    Outcome::File(file) => {
                        served.set(served.get() + 1);
                        prop_assert!(file.path().starts_with(&root), "{path} -> {file:?}");
                        prop_assert!(file.path().is_file(), "{path} -> {file:?}");
                        let content = std::fs::read_to_string(file.path()).unwrap();
                        prop_assert!(!has_secret(&content), "{path} served a secret");
                    }
                    Outcome::Respond(response) => {
                        let body = String::from_utf8_lossy(&response.body);
                        prop_assert!(!has_secret(&body), "{path} answered a secret");
                        prop_assert!(
                            matches!(response.status, 301 | 400 | 404),
                            "{path}: {response:?}"
                        );
                        if let Some(location) = response.header("Location") {
                            prop_assert!(
                                location.starts_with('/')
                                    && !location.starts_with("//")
                                    && !location.starts_with("/\\"),
                                "{path} redirects off-site: {location}"
                            );
                        }
                    }
                    other => prop_assert!(false, "{path}: {other:?}"),
                }
                Ok(())
            },
        )
        .unwrap();
    // A property that only ever saw refusals would prove little.
    assert!(
        served.get() > 400,
        "only {} generated paths named a real file",
        served.get()
    );
}

#[test]
fn each_secret_is_404_by_every_spelling_that_names_it() {
    let tree = Tree::new_named("spellings");
    let hub = Hub::builder()
        .settings(Settings {
            root: Some(tree.base.join("www")),
            ..Settings::default()
        })
        .build();
    let base = tree.base.display().to_string();
    for path in [
        "/../www-evil/secret.txt".to_string(),
        "/%2e%2e/outside.txt".to_string(),
        "/%2e%2e%2foutside.txt".to_string(),
        "/..%5coutside.txt".to_string(),
        "/%252e%252e/outside.txt".to_string(),
        "/evil/secret.txt".to_string(),
        "/out".to_string(),
        "/in/../../outside.txt".to_string(),
        format!("/{base}/outside.txt"),
        format!("{base}/outside.txt"),
        "/up/outside.txt".to_string(),
        "/chain".to_string(),
        "/self/out".to_string(),
        "/.env".to_string(),
        "/%2eenv".to_string(),
        "/.git/config".to_string(),
        "/self/.git/config".to_string(),
        "/%ef%bc%8e%ef%bc%8e/outside.txt".to_string(),
        "/．．/outside.txt".to_string(),
        "/%e2%80%a4%e2%80%a4/outside.txt".to_string(),
        "/..%ef%bc%8foutside.txt".to_string(),
        "/..／outside.txt".to_string(),
        "/..%e2%88%95outside.txt".to_string(),
        "/..∕outside.txt".to_string(),
        "/..\0/outside.txt".to_string(),
    ] {
        let response = match hub
            .handle(Request::new("GET", &path), Instant::now())
            .resolved()
        {
            Outcome::Respond(response) => response,
            other => panic!("{path}: {other:?}"),
        };
        assert_eq!(response.status, 404, "{path}");
    }
    // And the tree is what the test thinks: the same file is served by a
    // symlink that stays inside.
    assert!(matches!(
        hub.handle(Request::new("GET", "/in/b.css"), Instant::now())
            .resolved(),
        Outcome::File(_)
    ));
}

#[test]
fn a_static_file_carries_cors_headers_for_an_allowed_origin() {
    let tree = Tree::new_named("cors");
    let hub = Hub::builder()
        .settings(Settings {
            root: Some(tree.base.join("www")),
            cors_origins: vec!["https://app.example".into()],
            ..Settings::default()
        })
        .build();
    let request = Request::new("GET", "/a.txt").with_header("Origin", "https://app.example");
    let file = match hub.handle(request, Instant::now()).resolved() {
        Outcome::File(file) => file,
        other => panic!("{other:?}"),
    };
    let head = file.head();
    assert_eq!(
        head.header("Access-Control-Allow-Origin"),
        Some("https://app.example")
    );
    assert_eq!(head.header("Content-Length"), Some("1"));
    assert_eq!(
        file.gone().header("Access-Control-Allow-Origin"),
        Some("https://app.example")
    );
    assert_eq!(file.gone().status, 404);
}
