//! Batched acks and section 7: the worker SIGKILLed while replies are flowing, between
//! replies going out and their acks reaching the broker, loses no request, and answers
//! again at most the deliveries its channel held unacked (its prefetch window).
//!
//! A `multiple` ack that covered a delivery whose reply was not yet confirmed would
//! lose that request when the worker dies before publishing it: acked, never answered.
//! The kill lands while the worker has a full window in flight and replies are
//! arriving; replies answered twice show it landed after replies went out and before
//! their acks were applied, and the test asks for some, over three kills, so it cannot
//! pass by killing an idle worker.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::BasicProperties;

use tucano_testkit::request::status_header;

use crate::helpers::{
    by_number, cleanup, correlation_id, depth, start_binary, wait_for, BinaryRun,
};

/// Requests a round: enough that the worker still has a full window in flight when a
/// third of them are answered.
const REQUESTS: usize = 3000;
const ROUNDS: usize = 3;
/// TUCANO_PREFETCH (the test binary's) + TUCANO_PASS_CODE_BACKLOG below: the
/// interactive channel's prefetch, the most a killed worker can hold unacked.
const WINDOW: usize = 64 + 16;

/// The replies seen, by correlation id: how many, and the codes.
type Seen = Arc<Mutex<HashMap<String, Vec<String>>>>;

#[tokio::test]
async fn a_worker_killed_between_its_replies_and_their_acks_loses_nothing_and_repeats_at_most_its_window(
) {
    let run = BinaryRun::new("acks").await;
    let env = [("TUCANO_PASS_CODE_BACKLOG", "16")];
    let start = async || {
        let child = start_binary(&run.prefix, &run.db_url, &env, Stdio::null());
        wait_for("the worker to consume", async || {
            depth(&run.conn, &run.names.interactive)
                .await
                .is_some_and(|(_, consumers)| consumers > 0)
        })
        .await;
        child
    };
    let seen: Seen = Arc::default();
    let listener = run.conn.create_channel().await.expect("channel");
    let mut replies = tucano_auth::broker::consume_no_ack(&listener, &run.replies)
        .await
        .expect("consume the replies");
    let collecting = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = replies.next().await {
                let id = correlation_id(&delivery);
                let code =
                    status_header(&delivery.properties).unwrap_or_else(|| "<none>".to_owned());
                seen.lock().expect("seen").entry(id).or_default().push(code);
            }
        })
    };
    let answered = |round: usize| {
        let seen = seen.lock().expect("seen");
        (0..REQUESTS)
            .filter(|i| seen.contains_key(&format!("k{round}-{i}")))
            .count()
    };

    let mut worker = start().await;
    let body = by_number(tucano_auth::store::seed::SESSION_TOKEN, "S0000000329");
    let mut duplicates = Vec::new();
    for round in 0..ROUNDS {
        for i in 0..REQUESTS {
            let persistent = BasicProperties::default().with_delivery_mode(2);
            let _confirm = run
                .publish(&body, &format!("k{round}-{i}"), persistent)
                .await;
        }
        run.channel.wait_for_confirms().await.expect("confirmed");
        // Kill while replies flow: a full window in flight, replies confirmed and
        // their acks on the way.
        wait_for("a third of the round answered", async || {
            answered(round) >= REQUESTS / 3
        })
        .await;
        worker.kill().expect("SIGKILL");
        let _ = worker.wait();
        let at_kill = answered(round);
        assert!(
            at_kill < REQUESTS,
            "round {round}: the worker was killed before the round was over"
        );
        worker = start().await;
        wait_for("every request of the round answered", async || {
            answered(round) == REQUESTS
        })
        .await;
        // Late duplicates of this round would come from the redelivered deliveries,
        // all of which the new worker takes at once.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let seen = seen.lock().expect("seen");
        let twice: usize = (0..REQUESTS)
            .filter_map(|i| seen.get(&format!("k{round}-{i}")))
            .map(|codes| codes.len() - 1)
            .sum();
        let not_ok: Vec<&String> = seen
            .values()
            .flatten()
            .filter(|code| code.as_str() != "OK")
            .collect();
        assert!(
            not_ok.is_empty(),
            "round {round}: replies not OK: {not_ok:?}"
        );
        assert!(
            twice <= WINDOW,
            "round {round}: {twice} requests answered twice, more than the {WINDOW} the killed worker could hold unacked"
        );
        duplicates.push(twice);
    }
    assert!(
        duplicates.iter().sum::<usize>() > 0,
        "no kill landed between replies and their acks ({duplicates:?} duplicates): the test proved nothing"
    );
    eprintln!("answered twice after each kill: {duplicates:?} (window {WINDOW})");
    let _ = worker.kill();
    let _ = worker.wait();
    collecting.abort();
    cleanup(&run.prefix, &run.prefix).await;
}
