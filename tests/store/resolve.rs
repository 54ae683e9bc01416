//! `Store::resolve`: every identifier path, every step-6 code and the order between
//! them.

use sqlx::PgPool;
use uuid::Uuid;

use tucano_auth::error::{Code, Error};
use tucano_auth::request::{
    Credential, Identifier, InstalledItemKey, SubscriptionKey, SubscriptionTypeKey,
};
use tucano_auth::secret::Secret;
use tucano_auth::store::{Store, Subscription};

use super::{
    insert_account, insert_credential, insert_item, insert_subscription, insert_type, with_store,
    Checks as _,
};

const TOKENS: &str = "access_tokens";
const MEDIUMS: &str = "customer_identification_mediums";
const INACTIVE: [&str; 5] = [
    "DRAFT",
    "CANCELLED",
    "REGRETTED",
    "REPLACED",
    "PENDING_VERIFICATION",
];
const ACTIVE: [&str; 5] = [
    "EFFECTIVE",
    "NOT_EFFECTIVE",
    "SHORT_TERM_EFFECTIVE",
    "SHORT_TERM_NOT_EFFECTIVE",
    "IN_RESTING",
];

fn by_number(number: &str) -> Identifier {
    Identifier::Subscription(SubscriptionKey::Number(number.to_owned()))
}

fn by_serial(serial: &str) -> Identifier {
    Identifier::InstalledItem(InstalledItemKey::SerialNumber(serial.to_owned()))
}

fn code(code: &str) -> Credential {
    Credential::AuthenticationCode(code.to_owned())
}

fn pass(identifier: &str, pass_code: &str) -> Credential {
    Credential::Identifier {
        identifier: identifier.to_owned(),
        pass_code: Secret::new(pass_code),
    }
}

fn token(credential: Credential, kind: Option<SubscriptionTypeKey>) -> Identifier {
    Identifier::AccessToken {
        credential,
        subscription_type: kind,
    }
}

/// The code and message of a refusal; messages never carry a pass code.
async fn refusal(store: &Store, identifier: Identifier) -> (Code, String) {
    let err: Error = store.resolve(&identifier).await.unwrap_err();
    let message = err.message();
    assert!(!message.contains("secret-pass"), "{message}");
    (err.code(), message)
}

/// An account with one type `Basic` and one subscription of it.
async fn account(
    pool: &PgPool,
    number: &str,
    state: &str,
    provider: Option<&str>,
) -> (Uuid, Uuid, Uuid) {
    let account = insert_account(pool, &format!("AR-{number}")).await;
    let kind = insert_type(pool, &format!("Basic {number}"), None).await;
    let subscription = insert_subscription(pool, number, account, kind, state, provider).await;
    (account, kind, subscription)
}

#[tokio::test]
async fn subscription_is_found_by_number_and_by_id() {
    with_store(|store| async move {
        let (_, _, id) = account(store.pool(), "S1", "EFFECTIVE", Some("TUCANO")).await;
        let expected = Subscription {
            id,
            number: "S1".to_owned(),
        };
        assert_eq!(store.resolve(&by_number("S1")).await.unwrap(), expected);
        let by_id = Identifier::Subscription(SubscriptionKey::Id(id));
        assert_eq!(store.resolve(&by_id).await.unwrap(), expected);
    })
    .await;
}

#[tokio::test]
async fn unknown_subscription_is_not_found_by_number_or_id() {
    with_store(|store| async move {
        let (code, message) = refusal(&store, by_number("S404")).await;
        assert_eq!(code, Code::NotFound);
        assert_eq!(message, "subscription with number S404 not found");
        let id = Uuid::new_v4();
        let (code, message) =
            refusal(&store, Identifier::Subscription(SubscriptionKey::Id(id))).await;
        assert_eq!(code, Code::NotFound);
        assert!(
            message.contains(&id.simple().to_string().to_uppercase()),
            "{message}"
        );
    })
    .await;
}

#[tokio::test]
async fn subscription_not_provisioned_by_tucano_is_refused_before_its_state() {
    with_store(|store| async move {
        account(store.pool(), "S-NONE", "EFFECTIVE", None).await;
        account(store.pool(), "S-OTHER", "CANCELLED", Some("OTHER")).await;
        for number in ["S-NONE", "S-OTHER"] {
            assert_eq!(
                refusal(&store, by_number(number)).await.0,
                Code::NotProvisionedByTucano
            );
        }
    })
    .await;
}

#[tokio::test]
async fn each_inactive_state_is_subscription_inactive_and_the_others_resolve() {
    with_store(|store| async move {
        for state in INACTIVE {
            account(store.pool(), state, state, Some("TUCANO")).await;
            let (code, message) = refusal(&store, by_number(state)).await;
            assert_eq!(code, Code::SubscriptionInactive);
            assert_eq!(message, format!("subscription {state} is {state}"));
        }
        for state in ACTIVE {
            account(store.pool(), state, state, Some("TUCANO")).await;
            assert_eq!(
                store.resolve(&by_number(state)).await.unwrap().number,
                state
            );
        }
    })
    .await;
}

#[tokio::test]
async fn installed_item_leads_to_its_subscription_by_any_key() {
    with_store(|store| async move {
        let (_, _, subscription) = account(store.pool(), "S1", "EFFECTIVE", Some("TUCANO")).await;
        let item = insert_item(
            store.pool(),
            "SN-1",
            Some("ALT-1"),
            "EFFECTIVE",
            Some(subscription),
        )
        .await;
        for key in [
            InstalledItemKey::Id(item),
            InstalledItemKey::SerialNumber("SN-1".to_owned()),
            InstalledItemKey::AlternativeCode("ALT-1".to_owned()),
        ] {
            let found = store
                .resolve(&Identifier::InstalledItem(key))
                .await
                .unwrap();
            assert_eq!(
                found,
                Subscription {
                    id: subscription,
                    number: "S1".to_owned()
                }
            );
        }
    })
    .await;
}

#[tokio::test]
async fn installed_item_refusals_follow_item_then_state_then_subscription() {
    with_store(|store| async move {
        let pool = store.pool();
        let (_, _, cancelled) = account(pool, "S-C", "CANCELLED", Some("TUCANO")).await;
        let (_, _, not_tucano) = account(pool, "S-N", "EFFECTIVE", None).await;
        insert_item(pool, "SN-OFF", None, "NOT_EFFECTIVE", Some(cancelled)).await;
        insert_item(pool, "SN-BARE", None, "EFFECTIVE", None).await;
        insert_item(pool, "SN-C", None, "EFFECTIVE", Some(cancelled)).await;
        insert_item(pool, "SN-N", None, "EFFECTIVE", Some(not_tucano)).await;
        let missing =
            Identifier::InstalledItem(InstalledItemKey::AlternativeCode("NOPE".to_owned()));
        assert_eq!(
            refusal(&store, missing).await,
            (
                Code::NotFound,
                "installed item with alternative code NOPE not found".to_owned()
            )
        );
        assert_eq!(
            refusal(&store, by_serial("SN-OFF")).await,
            (
                Code::NotEffective,
                "installed item with serial number SN-OFF is NOT_EFFECTIVE".to_owned()
            )
        );
        assert_eq!(
            refusal(&store, by_serial("SN-BARE")).await,
            (
                Code::NotFound,
                "installed item with serial number SN-BARE has no subscription".to_owned()
            )
        );
        assert_eq!(
            refusal(&store, by_serial("SN-C")).await.0,
            Code::SubscriptionInactive
        );
        assert_eq!(
            refusal(&store, by_serial("SN-N")).await.0,
            Code::NotProvisionedByTucano
        );
    })
    .await;
}

#[tokio::test]
async fn access_token_and_medium_lead_to_the_accounts_tucano_subscription() {
    with_store(|store| async move {
        let pool = store.pool();
        let (account, kind, id) = account(pool, "S1", "EFFECTIVE", Some("TUCANO")).await;
        // Neither an inactive nor a foreign subscription makes it ambiguous.
        insert_subscription(pool, "S1-OLD", account, kind, "CANCELLED", Some("TUCANO")).await;
        insert_subscription(pool, "S1-DVB", account, kind, "EFFECTIVE", None).await;
        insert_credential(
            pool,
            TOKENS,
            "AC1",
            Some("secret-pass"),
            "EFFECTIVE",
            account,
        )
        .await;
        insert_credential(
            pool,
            MEDIUMS,
            "CM1",
            Some("secret-pass"),
            "EFFECTIVE",
            account,
        )
        .await;
        let expected = Subscription {
            id,
            number: "S1".to_owned(),
        };
        for identifier in [
            token(code("AC1"), None),
            token(pass("AC1-id", "secret-pass"), None),
            Identifier::Medium(code("CM1")),
            Identifier::Medium(pass("CM1-id", "secret-pass")),
        ] {
            assert_eq!(
                store.resolve(&identifier).await.unwrap(),
                expected,
                "{identifier:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn wrong_pass_code_unknown_identifier_or_missing_hash_is_authentication_failed() {
    with_store(|store| async move {
        let pool = store.pool();
        let (account, _, _) = account(pool, "S1", "EFFECTIVE", Some("TUCANO")).await;
        insert_credential(pool, TOKENS, "AC1", Some("right"), "EFFECTIVE", account).await;
        insert_credential(pool, TOKENS, "AC-NOHASH", None, "EFFECTIVE", account).await;
        insert_credential(pool, MEDIUMS, "CM1", Some("right"), "EFFECTIVE", account).await;
        for identifier in [
            token(pass("AC1-id", "secret-pass"), None),
            token(pass("nobody", "secret-pass"), None),
            token(pass("AC-NOHASH-id", "secret-pass"), None),
            Identifier::Medium(pass("CM1-id", "secret-pass")),
            Identifier::Medium(pass("nobody", "secret-pass")),
        ] {
            assert_eq!(
                refusal(&store, identifier).await.0,
                Code::AuthenticationFailed
            );
        }
    })
    .await;
}

#[tokio::test]
async fn pass_code_is_checked_before_the_state_is_revealed() {
    with_store(|store| async move {
        let pool = store.pool();
        let (account, _, _) = account(pool, "S1", "EFFECTIVE", Some("TUCANO")).await;
        insert_credential(
            pool,
            TOKENS,
            "AC-OFF",
            Some("right"),
            "NOT_EFFECTIVE",
            account,
        )
        .await;
        let wrong = token(pass("AC-OFF-id", "secret-pass"), None);
        assert_eq!(refusal(&store, wrong).await.0, Code::AuthenticationFailed);
        let (code, message) = refusal(&store, token(pass("AC-OFF-id", "right"), None)).await;
        assert_eq!(code, Code::NotEffective);
        assert_eq!(
            message,
            "access token with identifier AC-OFF-id is NOT_EFFECTIVE"
        );
    })
    .await;
}

#[tokio::test]
async fn unknown_or_not_effective_access_token_and_medium_are_refused() {
    with_store(|store| async move {
        let pool = store.pool();
        let (account, _, _) = account(pool, "S1", "EFFECTIVE", Some("TUCANO")).await;
        insert_credential(pool, TOKENS, "AC-PV", None, "PENDING_VERIFICATION", account).await;
        insert_credential(pool, MEDIUMS, "CM-OFF", None, "NOT_EFFECTIVE", account).await;
        assert_eq!(
            refusal(&store, token(code("AC404"), None)).await,
            (
                Code::NotFound,
                "access token with the given authentication code not found".to_owned()
            )
        );
        assert_eq!(
            refusal(&store, Identifier::Medium(code("CM404"))).await,
            (
                Code::NotFound,
                "customer identification medium with the given authentication code not found"
                    .to_owned()
            )
        );
        assert_eq!(
            refusal(&store, token(code("AC-PV"), None)).await.0,
            Code::NotEffective
        );
        // The state is revealed before the type filter is looked at.
        let missing_type = Some(SubscriptionTypeKey::Name("Nope".to_owned()));
        assert_eq!(
            refusal(&store, token(code("AC-PV"), missing_type)).await.0,
            Code::NotEffective
        );
        assert_eq!(
            refusal(&store, Identifier::Medium(code("CM-OFF"))).await.0,
            Code::NotEffective
        );
    })
    .await;
}

#[tokio::test]
async fn two_tucano_subscriptions_are_ambiguous_until_narrowed_by_type() {
    with_store(|store| async move {
        let pool = store.pool();
        let (account, basic, _) = account(pool, "S1", "EFFECTIVE", Some("TUCANO")).await;
        let premium = insert_type(pool, "Premium", Some("PREM")).await;
        let id =
            insert_subscription(pool, "S2", account, premium, "IN_RESTING", Some("TUCANO")).await;
        insert_credential(pool, TOKENS, "AC1", None, "EFFECTIVE", account).await;
        insert_credential(pool, MEDIUMS, "CM1", None, "EFFECTIVE", account).await;
        assert_eq!(
            refusal(&store, token(code("AC1"), None)).await.0,
            Code::AmbiguousSubscription
        );
        let err = store
            .resolve(&Identifier::Medium(code("CM1")))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::AmbiguousSubscription(2)), "{err:?}");
        let expected = Subscription {
            id,
            number: "S2".to_owned(),
        };
        for kind in [
            SubscriptionTypeKey::Id(premium),
            SubscriptionTypeKey::Name("Premium".to_owned()),
            SubscriptionTypeKey::AlternativeCode("PREM".to_owned()),
        ] {
            assert_eq!(
                store
                    .resolve(&token(code("AC1"), Some(kind)))
                    .await
                    .unwrap(),
                expected
            );
        }
        let basic = store
            .resolve(&token(code("AC1"), Some(SubscriptionTypeKey::Id(basic))))
            .await;
        assert_eq!(basic.unwrap().number, "S1");
    })
    .await;
}

#[tokio::test]
async fn unknown_subscription_type_and_a_type_without_subscription_are_not_found() {
    with_store(|store| async move {
        let pool = store.pool();
        let (account, _, _) = account(pool, "S1", "EFFECTIVE", Some("TUCANO")).await;
        insert_type(pool, "Unused", None).await;
        insert_credential(pool, TOKENS, "AC1", None, "EFFECTIVE", account).await;
        let unknown = Some(SubscriptionTypeKey::AlternativeCode("NOPE".to_owned()));
        assert_eq!(
            refusal(&store, token(code("AC1"), unknown)).await,
            (
                Code::NotFound,
                "subscription type with alternative code NOPE not found".to_owned()
            )
        );
        let unused = Some(SubscriptionTypeKey::Name("Unused".to_owned()));
        assert_eq!(
            refusal(&store, token(code("AC1"), unused)).await,
            (
                Code::NotFound,
                "access token with the given authentication code leads to no active Tucano subscription \
                 of subscription type with name Unused"
                    .to_owned()
            )
        );
    })
    .await;
}

#[tokio::test]
async fn account_whose_only_tucano_subscription_is_cancelled_is_not_found() {
    with_store(|store| async move {
        let pool = store.pool();
        let (account, kind, _) = account(pool, "S-C", "CANCELLED", Some("TUCANO")).await;
        insert_subscription(pool, "S-DVB", account, kind, "EFFECTIVE", None).await;
        insert_credential(pool, TOKENS, "AC1", None, "EFFECTIVE", account).await;
        insert_credential(
            pool,
            MEDIUMS,
            "CM1",
            Some("secret-pass"),
            "EFFECTIVE",
            account,
        )
        .await;
        assert_eq!(
            refusal(&store, token(code("AC1"), None)).await,
            (
                Code::NotFound,
                "access token with the given authentication code leads to no active Tucano subscription"
                    .to_owned()
            )
        );
        let medium = Identifier::Medium(pass("CM1-id", "secret-pass"));
        assert_eq!(refusal(&store, medium).await.0, Code::NotFound);
    })
    .await;
}
