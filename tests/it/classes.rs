//! Batch gets the interactive window on an idle worker (docs/protocol.md §14): the
//! batch channel's prefetch, as the broker itself reports it, is the interactive
//! channel's, `TUCANO_PREFETCH` + `TUCANO_PASS_CODE_BACKLOG`, not `TUCANO_PREFETCH`
//! alone (which drained a batch job at 0.67 of the interactive rate at window 256).

use std::time::Duration;

use crate::broker_view;
use crate::helpers::TestWorker;

#[tokio::test]
async fn the_batch_channel_holds_the_interactive_window() {
    let worker = TestWorker::spawn_with(|settings| {
        settings.broker.prefetch = 40;
        settings.broker.pass_code_backlog = 200;
        settings.broker.batch_prefetch = 3;
    })
    .await;
    let names = &worker.client.names;
    // `list_consumers` may lag the consume-ok the worker waited for; bounded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let counts = loop {
        let counts = broker_view::prefetch_counts(&worker.prefix).await;
        if counts.contains_key(&names.batch) && counts.contains_key(&names.interactive) {
            break counts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broker lists no consumer of both queues: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(counts[&names.interactive], [240], "{counts:?}");
    assert_eq!(counts[&names.batch], [240], "{counts:?}");
}
