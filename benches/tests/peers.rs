//! `benches/peers/nchan.conf`, the Nchan side of `benches/compare.sh`, and
//! `peers/nchan-redis.conf`, the same on Redis for its cluster scenarios:
//! their locations match `slosh-load --preset nchan`, and when nginx with
//! the Nchan module is installed, `nginx -t` accepts them. (CI does not
//! install nginx; there only the text checks run.)

use std::path::{Path, PathBuf};
use std::process::Command;

use benches::load::target::{NCHAN_INFO_URL, NCHAN_PUBLISH_URL, NCHAN_SUB_URL};

const MODULE: &str = "/usr/lib/nginx/modules/ngx_nchan_module.so";

fn conf() -> String {
    read("peers/nchan.conf")
}

fn redis_conf() -> String {
    read("peers/nchan-redis.conf")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn the_nchan_config_serves_the_urls_of_the_nchan_preset() {
    let conf = conf();
    assert_eq!(
        conf.matches("@PORT@").count(),
        1,
        "compare.sh renders one port"
    );
    assert!(conf.contains("listen 127.0.0.1:@PORT@"), "loopback only");
    for directive in [
        "worker_processes 1;",
        "nchan_message_buffer_length 100;",
        "nchan_publisher;",
        "nchan_subscriber eventsource longpoll;",
        &format!("load_module {MODULE};"),
    ] {
        assert!(conf.contains(directive), "missing {directive}");
    }
    assert_eq!(NCHAN_PUBLISH_URL, "{base}/pub/{topic}");
    assert_eq!(NCHAN_INFO_URL, NCHAN_PUBLISH_URL);
    assert!(conf.contains("location ~ ^/pub/([A-Za-z0-9_-]+)$"));
    assert_eq!(NCHAN_SUB_URL, "{base}/sub/{topic}");
    assert!(conf.contains("location ~ ^/sub/([A-Za-z0-9_-]+)$"));
}

#[test]
fn the_redis_config_is_the_single_node_one_on_loopback_redis() {
    let conf = redis_conf();
    assert_eq!(conf.matches("@PORT@").count(), 1);
    assert!(conf.contains("listen 127.0.0.1:@PORT@"), "loopback only");
    assert!(conf.contains(r#"nchan_redis_url "redis://127.0.0.1:@REDIS_PORT@";"#));
    // Both locations keep their messages in Redis.
    assert_eq!(conf.matches("nchan_use_redis on;").count(), 2);
    // Past the header, the same config as the single node plus those lines.
    let body = |conf: &str| -> Vec<String> {
        conf.lines()
            .skip_while(|l| !l.starts_with("load_module"))
            .filter(|l| !l.contains("redis") && !l.contains("Loopback only"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(body(&conf), body(&self::conf()));
}

#[test]
fn nginx_accepts_the_nchan_configs_when_installed() {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let (Some(nginx), true) = (nginx, Path::new(MODULE).exists()) else {
        eprintln!("nginx or the Nchan module is not installed: only the text was checked");
        return;
    };
    let dir = std::env::temp_dir().join(format!("slosh-nchan-conf-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let rendered = dir.join("nchan.conf");
    // nginx -t parses the Redis URL but does not connect to it.
    let redis = redis_conf().replace("@REDIS_PORT@", "8798");
    for text in [conf(), redis] {
        std::fs::write(&rendered, text.replace("@PORT@", "8799")).unwrap();
        let output = Command::new(&nginx)
            .arg("-t")
            .arg("-q")
            .arg("-e")
            .arg("stderr")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&rendered)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "nginx -t: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
