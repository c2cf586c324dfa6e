//! The running binary: scrape, health, config errors, HTTP edge cases.

use crate::util::*;

#[test]
fn embedded_config_serves_metrics_and_health() {
    let s = Sentinel::start(&[]);
    s.wait_ready();
    let text = scrape(&s);
    assert!(text.contains("# TYPE sentinel_build_info gauge"), "{text}");
    assert!(
        text.contains("sentinel_collector_success{collector=\"system\"} 1"),
        "{text}"
    );
    let (status, _, body) = http_get(&s.url("/healthz"), &[]).unwrap();
    assert_eq!((status, body.as_slice()), (200, &b"ok\n"[..]));
}
