//! Static files from a root folder: what is served, and every way out of the
//! root answered with 404.

use std::path::{Path, PathBuf};

use slosh_core::Settings;

use super::helpers::{host_owns_root, spawn_app_with, App};

/// A folder tree under the system temp dir, removed on drop:
///
/// ```text
/// <base>/www/index.html, app.js, style.css, logo.svg, big.bin, docs/index.html
/// <base>/www/inside -> docs/index.html     (a symlink that stays inside)
/// <base>/www/out -> <base>/outside.txt     (a symlink out of the root)
/// <base>/www-evil/secret.txt               (a sibling named like the root)
/// <base>/outside.txt
/// ```
struct Tree {
    base: PathBuf,
}

const SECRET: &str = "sibling-secret-do-not-serve";
const OUTSIDE: &str = "outside-secret-do-not-serve";

impl Tree {
    fn new(name: &str) -> Tree {
        let base =
            std::env::temp_dir().join(format!("slosh-files-api-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let www = base.join("www");
        std::fs::create_dir_all(www.join("docs")).unwrap();
        std::fs::create_dir_all(base.join("www-evil")).unwrap();
        std::fs::write(www.join("index.html"), "<h1>home</h1>").unwrap();
        std::fs::write(www.join("app.js"), "console.log(1)").unwrap();
        std::fs::write(www.join("style.css"), "body{}").unwrap();
        std::fs::write(www.join("logo.svg"), "<svg/>").unwrap();
        std::fs::write(www.join("docs/index.html"), "<h1>docs</h1>").unwrap();
        std::fs::write(base.join("www-evil/secret.txt"), SECRET).unwrap();
        std::fs::write(base.join("outside.txt"), OUTSIDE).unwrap();
        // Several chunks and a ragged end, so streaming is exercised.
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(www.join("big.bin"), big).unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(base.join("outside.txt"), www.join("out")).unwrap();
            std::os::unix::fs::symlink(base.join("www-evil"), www.join("evil")).unwrap();
            std::os::unix::fs::symlink("docs/index.html", www.join("inside")).unwrap();
        }
        Tree { base }
    }

    fn root(&self) -> PathBuf {
        self.base.join("www")
    }

    async fn serve(&self) -> App {
        spawn_app_with(Settings {
            root: Some(self.root()),
            ..Settings::default()
        })
        .await
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test]
async fn the_root_and_a_folder_are_served_by_their_index_html() {
    let tree = Tree::new("index");
    let app = tree.serve().await;
    let home = app
        .get(if host_owns_root() { "/index.html" } else { "/" })
        .await;
    assert_eq!((home.status, home.body.as_str()), (200, "<h1>home</h1>"));
    assert_eq!(
        home.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(home.header("content-length"), Some("13"));
    assert_eq!(home.header("cache-control"), Some("no-cache"));
    let docs = app.get("/docs/").await;
    assert_eq!((docs.status, docs.body.as_str()), (200, "<h1>docs</h1>"));
    let bare = app.get("/docs").await;
    assert_eq!(bare.status, 301);
    assert_eq!(bare.header("location"), Some("/docs/"));
}

#[tokio::test]
async fn the_content_type_follows_the_extension() {
    let tree = Tree::new("types");
    let app = tree.serve().await;
    for (path, content_type) in [
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/logo.svg", "image/svg+xml"),
        ("/big.bin", "application/octet-stream"),
    ] {
        let answer = app.get(path).await;
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(answer.header("content-type"), Some(content_type), "{path}");
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    }
}

#[tokio::test]
async fn a_large_file_is_streamed_whole_and_byte_for_byte() {
    let tree = Tree::new("big");
    let app = tree.serve().await;
    let raw = app.send_raw("GET", "/big.bin").await;
    let expected = read(&tree.root().join("big.bin"));
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    assert!(head.contains("content-length: 200000"), "{head}");
    assert_eq!(&raw[head_end..], &expected[..]);
}

#[tokio::test]
async fn head_answers_the_headers_of_get_without_the_body() {
    let tree = Tree::new("head");
    let app = tree.serve().await;
    let head = app.send("HEAD", "/app.js", &[], b"").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("14"));
    assert_eq!(
        head.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(head.body, "");
}

#[tokio::test]
async fn other_methods_on_a_static_path_are_405_with_allow() {
    let tree = Tree::new("methods");
    let app = tree.serve().await;
    for method in ["POST", "PUT", "DELETE", "FROB"] {
        let answer = app.send(method, "/index.html", &[], b"").await;
        assert_eq!(answer.status, 405, "{method}");
        assert_eq!(answer.header("allow"), Some("GET, HEAD"), "{method}");
        assert!(answer.json()["error"].is_string());
    }
}

#[tokio::test]
async fn every_way_out_of_the_root_is_404() {
    let tree = Tree::new("escapes");
    let app = tree.serve().await;
    for path in [
        "/../",
        "/../www-evil/secret.txt",
        "/%2e%2e/",
        "/%2e%2e/www-evil/secret.txt",
        "/%2E%2E/outside.txt",
        "/..%2f",
        "/..%2fwww-evil%2fsecret.txt",
        "/%2e%2e%2f",
        "/%2e%2e%2fwww-evil%2fsecret.txt",
        "/docs/..%2f..%2foutside.txt",
        "/%252e%252e/www-evil/secret.txt",
        "/%252e%252e%252fwww-evil%252fsecret.txt",
        "/..%5cwww-evil%5csecret.txt",
        "/..\\www-evil\\secret.txt",
        "/%2fetc%2fpasswd",
        "//etc/passwd",
        "/out",
        "/evil/secret.txt",
        "/%c0%ae%c0%ae/outside.txt",
        "/nothing-here",
    ] {
        let answer = app.get(path).await;
        assert!(
            matches!(answer.status, 400 | 404),
            "{path}: {} {}",
            answer.status,
            answer.body
        );
        assert!(
            !answer.body.contains(SECRET) && !answer.body.contains(OUTSIDE),
            "{path}"
        );
        if !path.contains("%c0") {
            assert_eq!(answer.status, 404, "{path}");
        }
        assert!(answer.json()["error"].is_string(), "{path}");
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_symlink_that_stays_inside_the_root_is_followed() {
    let tree = Tree::new("inside");
    let app = tree.serve().await;
    let answer = app.get("/inside").await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "<h1>docs</h1>")
    );
}

#[tokio::test]
async fn a_root_turns_the_demo_off_and_leaves_the_hub_urls_alone() {
    let tree = Tree::new("demo");
    let app = tree.serve().await;
    assert_eq!(app.get("/chat-json.html").await.status, 404);
    if host_owns_root() {
        assert!(app.get("/").await.body.contains("<form"));
        assert_eq!(app.get("/index.html").await.body, "<h1>home</h1>");
    } else {
        assert_eq!(app.get("/").await.body, "<h1>home</h1>");
    }
    assert_eq!(app.get("/healthz").await.body, "ok");
    assert_eq!(app.post_form("t", "x=1").await.status, 200);
    assert_eq!(app.get("/topics/t.json?n=0").await.json()["max"], 1);
}

#[tokio::test]
async fn a_file_removed_after_start_is_404() {
    let tree = Tree::new("removed");
    let app = tree.serve().await;
    assert_eq!(app.get("/style.css").await.status, 200);
    std::fs::remove_file(tree.root().join("style.css")).unwrap();
    assert_eq!(app.get("/style.css").await.status, 404);
}
