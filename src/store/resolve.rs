//! Step 6 of the order of checks (docs/protocol.md §3): which subscription does the identifier
//! lead to? (docs/protocol.md §5, "Resolution").
//!
//! [`entity_key`] says which branch of the lookup statement (`lookup.rs`) reads the
//! named entity together with everything the later checks need (its subscription, or
//! the account's active Tucano subscriptions and whether the type filter names a
//! type). [`check_entity`] then runs the checks in Rust in the documented order (docs/protocol.md §3): the
//! entity named first, then its state, then the subscription it leads to. A pass code
//! is verified before the state of its access token or medium is revealed.

use super::lockout::{Holder, Lockout};
use super::lookup::{EntityKey, EntityRow, Path, TypeColumn, INACTIVE_STATES};
use super::pass_code::Backlog;
use super::{pass_code, show_id, Subscription};
use crate::error::Error;
use crate::request::{
    Credential, Identifier, InstalledItemKey, SubscriptionKey, SubscriptionTypeKey,
};

/// The statement parameters that find `identifier`'s entity.
pub(super) fn entity_key(identifier: &Identifier) -> EntityKey {
    let (path, id, text, type_filter) = match identifier {
        Identifier::Subscription(SubscriptionKey::Id(id)) => {
            (Path::SubscriptionId, Some(*id), None, None)
        }
        Identifier::Subscription(SubscriptionKey::Number(number)) => {
            (Path::SubscriptionNumber, None, Some(number), None)
        }
        Identifier::InstalledItem(InstalledItemKey::Id(id)) => {
            (Path::ItemId, Some(*id), None, None)
        }
        Identifier::InstalledItem(InstalledItemKey::SerialNumber(serial)) => {
            (Path::ItemSerialNumber, None, Some(serial), None)
        }
        Identifier::InstalledItem(InstalledItemKey::AlternativeCode(code)) => {
            (Path::ItemAlternativeCode, None, Some(code), None)
        }
        Identifier::AccessToken {
            credential,
            subscription_type,
        } => {
            let (path, key) = match credential {
                Credential::AuthenticationCode(code) => (Path::TokenAuthenticationCode, code),
                Credential::Identifier { identifier, .. } => (Path::TokenIdentifier, identifier),
            };
            let filter = subscription_type.as_ref().map(|key| match key {
                SubscriptionTypeKey::Id(id) => (TypeColumn::Id, Some(*id), None),
                SubscriptionTypeKey::Name(name) => (TypeColumn::Name, None, storable(name)),
                SubscriptionTypeKey::AlternativeCode(code) => {
                    (TypeColumn::AlternativeCode, None, storable(code))
                }
            });
            (path, None, Some(key), filter)
        }
        Identifier::Medium(credential) => {
            let (path, key) = match credential {
                Credential::AuthenticationCode(code) => (Path::MediumAuthenticationCode, code),
                Credential::Identifier { identifier, .. } => (Path::MediumIdentifier, identifier),
            };
            (path, None, Some(key), None)
        }
    };
    EntityKey {
        path,
        id,
        text: text.and_then(|text| storable(text)),
        type_filter,
    }
}

/// `text` as a statement parameter, or `None` (which matches no row) when it holds
/// U+0000: JSON strings may, PostgreSQL text cannot, so no stored key can equal it.
/// Sent as it is, it would fail the whole statement, and with it every other request
/// of the batch.
fn storable(text: &str) -> Option<String> {
    (!text.contains('\0')).then(|| text.to_owned())
}

/// The step-6 checks on what the lookup found for `identifier`, in the documented
/// order (docs/protocol.md §3): the entity named first, then its state, then the subscription it leads to.
/// A pass code is verified (even against a missing row) before anything else is
/// revealed, unless `lockout` says its identifier is locked.
pub(super) async fn check_entity(
    identifier: &Identifier,
    row: Option<EntityRow>,
    lockout: &Lockout,
    backlog: &Backlog,
) -> Result<Subscription, Error> {
    match identifier {
        Identifier::Subscription(key) => {
            let shown = match key {
                SubscriptionKey::Id(id) => format!("id {}", show_id(id)),
                SubscriptionKey::Number(number) => format!("number {number}"),
            };
            let row =
                row.ok_or_else(|| Error::NotFound(format!("subscription with {shown} not found")))?;
            check_subscription(row)
        }
        Identifier::InstalledItem(key) => {
            let shown = match key {
                InstalledItemKey::Id(id) => format!("id {}", show_id(id)),
                InstalledItemKey::SerialNumber(serial) => format!("serial number {serial}"),
                InstalledItemKey::AlternativeCode(code) => format!("alternative code {code}"),
            };
            let row = row
                .ok_or_else(|| Error::NotFound(format!("installed item with {shown} not found")))?;
            let state = row.state.clone().unwrap_or_default();
            if state != "EFFECTIVE" {
                return Err(Error::NotEffective(format!(
                    "installed item with {shown} is {state}"
                )));
            }
            if row.id.is_none() {
                return Err(Error::NotFound(format!(
                    "installed item with {shown} has no subscription"
                )));
            }
            check_subscription(row)
        }
        Identifier::AccessToken {
            credential,
            subscription_type,
        } => {
            check_credential(
                Holder::AccessToken,
                credential,
                subscription_type.as_ref(),
                row,
                lockout,
                backlog,
            )
            .await
        }
        Identifier::Medium(credential) => {
            check_credential(Holder::Medium, credential, None, row, lockout, backlog).await
        }
    }
}

async fn check_credential(
    holder: Holder,
    credential: &Credential,
    subscription_type: Option<&SubscriptionTypeKey>,
    row: Option<EntityRow>,
    lockout: &Lockout,
    backlog: &Backlog,
) -> Result<Subscription, Error> {
    let shown = match credential {
        // An authentication code is a credential: it is never echoed.
        Credential::AuthenticationCode(_) => {
            format!("{} with the given authentication code", holder_name(holder))
        }
        Credential::Identifier {
            identifier,
            pass_code,
        } => {
            // Held until the verdict is recorded: the lockout's reads and writes are
            // part of a pass-code request's cost too.
            let _place = backlog.enter()?;
            let stored = match row.as_ref().and_then(|row| row.pass_code_hash.as_deref()) {
                Some(stored) => match pass_code::bounds::usable(stored) {
                    Ok(_) => Some(stored.to_owned()),
                    // Never computed: verified like a missing hash, so in the same
                    // time and with the same answer.
                    Err(why) => {
                        report_unusable(lockout, holder, identifier, stored, why).await;
                        None
                    }
                },
                None => None,
            };
            // An identifier holding U+0000 names no row (see `storable`), and no pass
            // code verifies against a missing row: there is nothing to guess, and
            // nothing PostgreSQL could store as its count.
            let slot = match storable(identifier) {
                Some(_) => Some(take_try(lockout, holder, identifier).await?),
                None => None,
            };
            // Verified even when the row is missing, so timing reveals nothing.
            let verify = pass_code::verify(stored, pass_code);
            let matched = tracing::Instrument::instrument(
                verify,
                crate::observe::traces::child("verify pass code"),
            )
            .await?;
            if let Some(slot) = slot {
                lockout.settle(holder, identifier, slot, matched).await?;
            }
            if !matched {
                return Err(Error::AuthenticationFailed);
            }
            format!("{} with identifier {identifier}", holder_name(holder))
        }
    };
    let row = row.ok_or_else(|| Error::NotFound(format!("{shown} not found")))?;
    let state = row.state.as_deref().unwrap_or_default();
    if state != "EFFECTIVE" {
        return Err(Error::NotEffective(format!("{shown} is {state}")));
    }
    let type_shown = subscription_type.map(|key| match key {
        SubscriptionTypeKey::Id(id) => format!("id {}", show_id(id)),
        SubscriptionTypeKey::Name(name) => format!("name {name}"),
        SubscriptionTypeKey::AlternativeCode(code) => format!("alternative code {code}"),
    });
    if let (false, Some(type_shown)) = (row.type_found, &type_shown) {
        return Err(Error::NotFound(format!(
            "subscription type with {type_shown} not found"
        )));
    }
    match (row.total, row.id, row.number) {
        (Some(1), Some(id), Some(number)) => Ok(Subscription { id, number }),
        (Some(total), Some(_), Some(_)) if total > 1 => Err(Error::AmbiguousSubscription(
            usize::try_from(total).unwrap_or(usize::MAX),
        )),
        _ => Err(Error::NotFound(match type_shown {
            Some(type_shown) => format!(
                "{shown} leads to no active Tucano subscription of subscription type with {type_shown}"
            ),
            None => format!("{shown} leads to no active Tucano subscription"),
        })),
    }
}

/// How long a try waits, at most, for the tries of its identifier being verified to
/// settle, before it is answered `TEMPORARILY_UNAVAILABLE`.
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// A try of `identifier`'s pass code to verify, from the lockout. While every try left
/// is being verified (a burst, or a client sending the same right pass code many times
/// at once), it waits for one of them to settle, a verification's time at a time: a
/// right pass code frees them all, wrong ones lock. A locked identifier is refused
/// `AUTHENTICATION_FAILED` after as long as a verification.
async fn take_try(
    lockout: &Lockout,
    holder: Holder,
    identifier: &str,
) -> Result<super::lockout::Slot, Error> {
    use super::lockout::Take;
    let deadline = tokio::time::Instant::now() + BUSY_WAIT;
    loop {
        match lockout.take(holder, identifier).await? {
            Take::Slot(slot) => return Ok(slot),
            Take::Locked => {
                pass_code::pretend().await;
                return Err(Error::AuthenticationFailed);
            }
            Take::Busy if tokio::time::Instant::now() >= deadline => {
                return Err(Error::PassCodeBacklogFull);
            }
            Take::Busy => pass_code::pretend().await,
        }
    }
}

/// Logs, once per credential and stored value, that `identifier`'s stored hash is
/// outside the bounds: an error naming the credential's `number` and the bound, never
/// the hash nor the identifier. Once, because every try for the identifier finds the
/// same row, and a flood of them must not become a flood of log lines.
async fn report_unusable(
    lockout: &Lockout,
    holder: Holder,
    identifier: &str,
    stored: &str,
    why: pass_code::bounds::OutOfBounds,
) {
    use std::collections::HashSet;
    use std::hash::{DefaultHasher, Hash as _, Hasher as _};
    use std::sync::{LazyLock, Mutex};
    /// Fingerprints of what was reported; forgotten wholesale when full, which at
    /// worst logs a credential again.
    static REPORTED: LazyLock<Mutex<HashSet<u64>>> = LazyLock::new(Default::default);
    const REMEMBERED: usize = 4096;
    // Of the value's length and first bytes only: a stored value may be a gigabyte
    // long, and hashing it all would stall the task thread.
    let head = &stored.as_bytes()[..stored.len().min(pass_code::bounds::MAX_CHARS)];
    let mut fingerprint = DefaultHasher::new();
    (holder_name(holder), identifier, stored.len(), head).hash(&mut fingerprint);
    let fingerprint = fingerprint.finish();
    {
        let mut reported = REPORTED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if reported.len() >= REMEMBERED {
            reported.clear();
        }
        if !reported.insert(fingerprint) {
            return;
        }
    }
    let number = lockout.number(holder, identifier).await;
    tracing::error!(
        credential = holder_name(holder),
        number = number.as_deref().unwrap_or("(unknown)"),
        reason = %why,
        "a stored pass_code_hash is outside the Argon2 parameters the worker computes; \
         it matches no pass code until it is replaced (import it again, or write a hash \
         within the bounds)"
    );
}

/// What a reply's message calls the entity of one of the two tables with pass codes.
fn holder_name(holder: Holder) -> &'static str {
    match holder {
        Holder::AccessToken => "access token",
        Holder::Medium => "customer identification medium",
    }
}

/// The subscription found must be provisioned by Tucano and not inactive.
fn check_subscription(row: EntityRow) -> Result<Subscription, Error> {
    let (Some(id), Some(number), Some(life_cycle_state)) =
        (row.id, row.number, row.life_cycle_state)
    else {
        return Err(Error::Internal(anyhow::anyhow!(
            "the lookup found a subscription without id, number or state"
        )));
    };
    if row.provisioning_provider.as_deref() != Some("TUCANO") {
        return Err(Error::NotProvisionedByTucano(number));
    }
    if INACTIVE_STATES.contains(&life_cycle_state.as_str()) {
        return Err(Error::SubscriptionInactive {
            number,
            state: life_cycle_state,
        });
    }
    Ok(Subscription { id, number })
}
