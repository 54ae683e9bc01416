//! `Store::authenticate` under concurrency: requests in flight share lookup statements,
//! and each still gets exactly the answer it gets alone.

use std::collections::BTreeSet;

use chrono::{Duration, Utc};
use futures_util::future::join_all;
use uuid::Uuid;

use tucano_auth::error::Code;
use tucano_auth::request::{
    Credential, Identifier, InstalledItemKey, SubscriptionKey, SubscriptionTypeKey,
};
use tucano_auth::secret::Secret;
use tucano_auth::store::seed::seed_demo;
use tucano_auth::store::Store;

use super::{insert_session, insert_user, with_store};

const OTHER_TOKEN: &str = "00000000000000000000000000000A11";
const RELEASED_TOKEN: &str = "00000000000000000000000000000B22";
const UNKNOWN_TOKEN: &str = "00000000000000000000000000000C33";
const EXPIRED_TOKEN: &str = "00000000000000000000000000000D44";

/// What a user sees of an answer: the subscription number, or the code.
type Answer = Result<String, Code>;

async fn answer(store: &Store, token: &str, identifier: &Identifier) -> Answer {
    store
        .authenticate(&Secret::new(token), identifier, Utc::now())
        .await
        .map(|subscription| subscription.number)
        .map_err(|err| err.code())
}

#[tokio::test]
async fn concurrent_requests_share_statements_and_each_gets_its_own_answer() {
    with_store(|store| async move {
        let demo = seed_demo(store.pool()).await.unwrap();
        let user = insert_user(store.pool(), "ACTIVE").await;
        let tomorrow = Utc::now() + Duration::days(1);
        insert_session(store.pool(), user, Some(OTHER_TOKEN), tomorrow, None).await;
        insert_session(
            store.pool(),
            user,
            Some(RELEASED_TOKEN),
            tomorrow,
            Some(Utc::now()),
        )
        .await;
        let yesterday = Utc::now() - Duration::days(1);
        insert_session(store.pool(), user, Some(EXPIRED_TOKEN), yesterday, None).await;

        let tokens = [
            demo.session_token,
            OTHER_TOKEN,
            RELEASED_TOKEN,
            UNKNOWN_TOKEN,
            EXPIRED_TOKEN,
            "not a login token",
        ];
        let code = |code: &str| Credential::AuthenticationCode(code.to_owned());
        let identifiers = [
            Identifier::Subscription(SubscriptionKey::Number(demo.subscription_number.to_owned())),
            Identifier::Subscription(SubscriptionKey::Id(demo.subscription_id)),
            Identifier::Subscription(SubscriptionKey::Id(Uuid::new_v4())),
            Identifier::InstalledItem(InstalledItemKey::SerialNumber(
                demo.installed_item_serial_number.to_owned(),
            )),
            Identifier::InstalledItem(InstalledItemKey::SerialNumber("no-such-item".to_owned())),
            Identifier::AccessToken {
                credential: code(demo.access_token_authentication_code),
                subscription_type: None,
            },
            Identifier::AccessToken {
                credential: code(demo.ambiguous_authentication_code),
                subscription_type: None,
            },
            Identifier::AccessToken {
                credential: code(demo.ambiguous_authentication_code),
                subscription_type: Some(SubscriptionTypeKey::Name(
                    demo.premium_type_name.to_owned(),
                )),
            },
            Identifier::AccessToken {
                credential: Credential::Identifier {
                    identifier: demo.access_token_identifier.to_owned(),
                    pass_code: Secret::new(demo.access_token_pass_code),
                },
                subscription_type: None,
            },
            Identifier::Medium(code(demo.medium_authentication_code)),
            Identifier::Medium(code("no-such-medium")),
            // U+0000 is valid JSON but cannot be stored in PostgreSQL text: sent as a
            // parameter it would fail the statement, and every request sharing it.
            Identifier::Subscription(SubscriptionKey::Number("S\u{0}1".to_owned())),
            Identifier::AccessToken {
                credential: code(demo.ambiguous_authentication_code),
                subscription_type: Some(SubscriptionTypeKey::Name("Premium\u{0}".to_owned())),
            },
        ];
        let cases: Vec<(&str, &Identifier)> = tokens
            .iter()
            .flat_map(|token| {
                identifiers
                    .iter()
                    .map(move |identifier| (*token, identifier))
            })
            .collect();

        // Alone, one at a time: each request is a statement of its own.
        let mut alone = Vec::new();
        for (token, identifier) in &cases {
            alone.push(answer(&store, token, identifier).await);
        }
        // With the demo session's token (the first), both are simply not found.
        let with_nul = &alone[identifiers.len() - 2..identifiers.len()];
        assert_eq!(with_nul, [Err(Code::NotFound), Err(Code::NotFound)]);
        let distinct: BTreeSet<String> = alone.iter().map(|answer| format!("{answer:?}")).collect();
        assert!(
            distinct.len() >= 6,
            "too few distinct answers: {distinct:?}"
        );

        // All at once, eight times over, interleaved.
        let before = store.lookup_counts();
        let rounds = 8;
        let together = join_all((0..rounds).flat_map(|_| {
            cases
                .iter()
                .map(|(token, identifier)| answer(&store, token, identifier))
        }))
        .await;
        for (index, got) in together.iter().enumerate() {
            let (token, identifier) = cases[index % cases.len()];
            assert_eq!(
                got,
                &alone[index % cases.len()],
                "token {token:?}, identifier {identifier:?}"
            );
        }
        let after = store.lookup_counts();
        let requests = after.requests - before.requests;
        let statements = after.statements - before.statements;
        // The malformed token is refused before any read.
        let reads = (rounds * (tokens.len() - 1) * identifiers.len()) as u64;
        assert_eq!(requests, reads);
        assert!(
            statements * 4 <= requests,
            "{requests} requests took {statements} statements"
        );
    })
    .await;
}

#[tokio::test]
async fn a_lookup_connection_the_server_ends_is_replaced() {
    with_store(|store| async move {
        let demo = seed_demo(store.pool()).await.unwrap();
        let identifier =
            Identifier::Subscription(SubscriptionKey::Number(demo.subscription_number.to_owned()));
        let expected: Answer = Ok(demo.subscription_number.to_owned());
        assert_eq!(
            answer(&store, demo.session_token, &identifier).await,
            expected
        );

        // An administrator (or a failover) ends the lookup statement's connection.
        let ended: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'tucano-auth lookups'",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(ended, vec![true], "one lookup connection, ended");

        // The next lookup may still meet the dead connection: that is connection
        // trouble, which the handler retries, never an answer about the subscriber.
        let next = answer(&store, demo.session_token, &identifier).await;
        assert!(
            next == expected || next == Err(Code::TemporarilyUnavailable),
            "{next:?}"
        );
        assert_eq!(
            answer(&store, demo.session_token, &identifier).await,
            expected,
            "a new connection serves the lookup"
        );
    })
    .await;
}
