//! `rediss://`: TLS to a real redis-server that only speaks TLS, with a
//! certificate from the test's own CA. A test binary of its own, because
//! it sets `SSL_CERT_FILE` (how rustls finds the system's certificates),
//! and no other test may read the environment meanwhile.

mod common;

use std::time::Duration;

use common::poll;
use serde_json::json;
use slosh_core::Hub;
use slosh_redis::test_server::TestRedis;
use slosh_redis::RedisStore;

#[test]
fn a_rediss_url_speaks_tls_to_a_redis_it_trusts_and_refuses_one_it_does_not() {
    let redis = TestRedis::start_tls();
    // Not trusted yet (the system's CAs do not know the test's): the
    // handshake fails, and the store says it is down.
    let untrusted = RedisStore::open(&redis.url()).unwrap();
    assert!(!untrusted.is_up());
    // The system store as rustls reads it: SSL_CERT_FILE names the CA.
    std::env::set_var("SSL_CERT_FILE", redis.ca());
    let store = RedisStore::open(&redis.url()).unwrap();
    assert!(store.is_up(), "TLS to {}", redis.url());
    let (a, b) = (
        Hub::builder().store(store).build(),
        Hub::builder()
            .store(RedisStore::open(&redis.url()).unwrap())
            .build(),
    );
    assert_eq!(a.publish("t", &1).unwrap().id, Some(1));
    assert_eq!(
        poll(&b, "/topics/t.json?n=0", Duration::from_secs(5))["res"],
        json!([1])
    );
}
