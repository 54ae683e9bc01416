//! `seed_demo`: idempotent, and every demo path gives what the module docs promise.

use chrono::{Duration, Utc};

use tucano_auth::error::Code;
use tucano_auth::request::{
    Credential, Identifier, InstalledItemKey, SubscriptionKey, SubscriptionTypeKey,
};
use tucano_auth::secret::Secret;
use tucano_auth::store::seed::{self, seed_demo};
use tucano_auth::store::Store;

use super::{with_store, Checks as _};

const TABLES: [&str; 8] = [
    "api_users",
    "sessions",
    "accounts_receivable",
    "subscription_types",
    "subscriptions",
    "installed_items",
    "access_tokens",
    "customer_identification_mediums",
];

async fn counts(store: &Store) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in TABLES {
        let sql = format!("SELECT count(*) FROM {table}");
        counts.push(
            sqlx::query_scalar(&sql)
                .fetch_one(store.pool())
                .await
                .unwrap(),
        );
    }
    counts
}

async fn number(store: &Store, identifier: Identifier) -> String {
    store.resolve(&identifier).await.unwrap().number
}

async fn code(store: &Store, identifier: Identifier) -> Code {
    store.resolve(&identifier).await.unwrap_err().code()
}

fn access_token(code: &str, kind: Option<&str>) -> Identifier {
    Identifier::AccessToken {
        credential: Credential::AuthenticationCode(code.to_owned()),
        subscription_type: kind.map(|name| SubscriptionTypeKey::Name(name.to_owned())),
    }
}

fn subscription(number: &str) -> Identifier {
    Identifier::Subscription(SubscriptionKey::Number(number.to_owned()))
}

fn item(serial: &str) -> Identifier {
    Identifier::InstalledItem(InstalledItemKey::SerialNumber(serial.to_owned()))
}

#[tokio::test]
async fn seeding_twice_keeps_one_copy_and_refreshes_the_session() {
    with_store(|store| async move {
        let first = seed_demo(store.pool()).await.unwrap();
        let loaded = counts(&store).await;
        assert_eq!(loaded, vec![1, 1, 2, 2, 5, 2, 2, 1]);
        sqlx::query(
            "UPDATE sessions SET expires_at = now() - interval '1 day', released_at = now()",
        )
        .execute(store.pool())
        .await
        .unwrap();
        let token = Secret::new(first.session_token);
        assert_eq!(
            store
                .check_login(&token, Utc::now())
                .await
                .unwrap_err()
                .code(),
            Code::InvalidToken
        );

        let second = seed_demo(store.pool()).await.unwrap();
        assert_eq!(counts(&store).await, loaded);
        assert!(second.session_expires_at >= first.session_expires_at);
        assert!(second.session_expires_at > Utc::now() + Duration::days(364));
        store.check_login(&token, Utc::now()).await.unwrap();
        store
            .check_login(&token, Utc::now() + Duration::days(364))
            .await
            .unwrap();
        assert_eq!(
            store
                .check_login(&token, Utc::now() + Duration::days(366))
                .await
                .unwrap_err()
                .code(),
            Code::TokenExpired
        );
    })
    .await;
}

#[tokio::test]
async fn every_demo_path_gives_what_the_docs_promise() {
    with_store(|store| async move {
        let demo = seed_demo(store.pool()).await.unwrap();
        assert_eq!(
            demo.subscription_id.simple().to_string().to_uppercase(),
            "75E3E50139F24DC3A6C9AA0C026D0292"
        );
        assert_eq!(demo.session_token, "35108255345D4F98ABFD7810A08E432F");
        let s329 = demo.subscription_number;
        assert_eq!(s329, "S0000000329");

        let by_id = Identifier::Subscription(SubscriptionKey::Id(demo.subscription_id));
        assert_eq!(number(&store, by_id).await, s329);
        assert_eq!(number(&store, subscription(s329)).await, s329);
        assert_eq!(
            number(&store, item(demo.installed_item_serial_number)).await,
            s329
        );
        let alternative =
            InstalledItemKey::AlternativeCode(seed::INSTALLED_ITEM_ALTERNATIVE_CODE.to_owned());
        assert_eq!(
            number(&store, Identifier::InstalledItem(alternative)).await,
            s329
        );
        assert_eq!(
            number(
                &store,
                access_token(demo.access_token_authentication_code, None)
            )
            .await,
            s329
        );
        let with_pass = Identifier::AccessToken {
            credential: Credential::Identifier {
                identifier: demo.access_token_identifier.to_owned(),
                pass_code: Secret::new(demo.access_token_pass_code),
            },
            subscription_type: None,
        };
        assert_eq!(number(&store, with_pass).await, s329);
        let medium = Identifier::Medium(Credential::AuthenticationCode(
            demo.medium_authentication_code.to_owned(),
        ));
        assert_eq!(number(&store, medium).await, s329);
        let medium = Identifier::Medium(Credential::Identifier {
            identifier: demo.medium_identifier.to_owned(),
            pass_code: Secret::new(demo.medium_pass_code),
        });
        assert_eq!(number(&store, medium).await, s329);
        assert_eq!(
            number(
                &store,
                access_token(
                    demo.access_token_authentication_code,
                    Some(demo.basic_type_name)
                )
            )
            .await,
            s329
        );

        let ambiguous = demo.ambiguous_authentication_code;
        assert_eq!(
            code(&store, access_token(ambiguous, None)).await,
            Code::AmbiguousSubscription
        );
        assert_eq!(
            number(
                &store,
                access_token(ambiguous, Some(demo.premium_type_name))
            )
            .await,
            demo.premium_subscription_number
        );
        assert_eq!(
            number(&store, access_token(ambiguous, Some(demo.basic_type_name))).await,
            seed::SECOND_BASIC_SUBSCRIPTION_NUMBER
        );

        assert_eq!(
            code(&store, subscription(seed::NOT_TUCANO_SUBSCRIPTION_NUMBER)).await,
            Code::NotProvisionedByTucano
        );
        assert_eq!(
            code(&store, subscription(seed::CANCELLED_SUBSCRIPTION_NUMBER)).await,
            Code::SubscriptionInactive
        );
        assert_eq!(
            code(&store, item(seed::NOT_EFFECTIVE_ITEM_SERIAL_NUMBER)).await,
            Code::NotEffective
        );
        let wrong_pass = Identifier::AccessToken {
            credential: Credential::Identifier {
                identifier: demo.access_token_identifier.to_owned(),
                pass_code: Secret::new("0000"),
            },
            subscription_type: None,
        };
        assert_eq!(code(&store, wrong_pass).await, Code::AuthenticationFailed);
    })
    .await;
}
