-- The data model of contract section 5: written by the CRM loader, read by the worker.
--
-- IDs are uuid (gen_random_uuid() is built into PostgreSQL 13 and later). States are
-- upper-case text with check constraints. Every lookup the worker makes is served by
-- an index: most by the unique constraints, the rest by the indexes created below.

CREATE TABLE api_users (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username         text NOT NULL UNIQUE,
    organisation     text NOT NULL,
    password_hash    text CHECK (password_hash ~ '^\$argon2(id|i|d)\$'),
    life_cycle_state text NOT NULL DEFAULT 'ACTIVE'
        CHECK (life_cycle_state IN ('ACTIVE', 'INACTIVE'))
);
COMMENT ON TABLE api_users IS
    'CRM API users who log in; a login token is valid only while its user is ACTIVE.';
COMMENT ON COLUMN api_users.password_hash IS 'Argon2 PHC string; null when the user cannot log in by password.';

CREATE TABLE sessions (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    api_user_id  uuid NOT NULL REFERENCES api_users (id),
    token_sha256 bytea UNIQUE CHECK (octet_length(token_sha256) = 32),
    issued_at    timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    released_at  timestamptz
);
COMMENT ON TABLE sessions IS
    'Login sessions of API users. A 32-hex login token is found by token_sha256, a JWT login token by id (its jti claim).';
COMMENT ON COLUMN sessions.token_sha256 IS
    'SHA-256 of the 32-hex login token, upper-cased, as ASCII bytes; null for sessions known only by JWT.';
COMMENT ON COLUMN sessions.released_at IS 'When the session was logged out; a released session never validates again.';
-- Foreign-key maintenance (deleting an API user); the worker looks sessions up by
-- token_sha256 (unique) and by id (primary key).
CREATE INDEX sessions_api_user_id_idx ON sessions (api_user_id);

CREATE TABLE accounts_receivable (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    number           text NOT NULL UNIQUE,
    name             text NOT NULL,
    life_cycle_state text NOT NULL
        CHECK (life_cycle_state <> '' AND life_cycle_state = upper(life_cycle_state))
);
COMMENT ON TABLE accounts_receivable IS
    'Customer accounts; access tokens and customer identification mediums lead to their subscriptions through them.';
COMMENT ON COLUMN accounts_receivable.life_cycle_state IS 'Free upper-case text (e.g. ACTIVE); not checked by the worker.';

CREATE TABLE subscription_types (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name             text NOT NULL UNIQUE,
    alternative_code text UNIQUE
);
COMMENT ON TABLE subscription_types IS
    'Types of subscription; subscription_type_identifier narrows an access token''s subscriptions to one type.';

CREATE TABLE subscriptions (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    number                 text NOT NULL UNIQUE,
    accounts_receivable_id uuid NOT NULL REFERENCES accounts_receivable (id),
    subscription_type_id   uuid NOT NULL REFERENCES subscription_types (id),
    life_cycle_state       text NOT NULL CHECK (life_cycle_state IN (
        'DRAFT', 'EFFECTIVE', 'NOT_EFFECTIVE', 'SHORT_TERM_EFFECTIVE', 'SHORT_TERM_NOT_EFFECTIVE',
        'IN_RESTING', 'CANCELLED', 'REGRETTED', 'REPLACED', 'PENDING_VERIFICATION')),
    provisioning_provider  text
        CHECK (provisioning_provider <> '' AND provisioning_provider = upper(provisioning_provider))
);
COMMENT ON TABLE subscriptions IS
    'Subscriptions; the worker authenticates only those provisioned by Tucano and not in an inactive state.';
COMMENT ON COLUMN subscriptions.provisioning_provider IS
    'Who provisions the subscription: TUCANO = AlphaNetworks Tucano; null = none.';
-- The access-token / medium path: an account's active Tucano subscriptions, optionally
-- of one type. The predicate is written exactly as the worker's query writes it so the
-- planner can prove the query implies it.
CREATE INDEX subscriptions_active_tucano_idx
    ON subscriptions (accounts_receivable_id, subscription_type_id)
    WHERE provisioning_provider = 'TUCANO'
      AND life_cycle_state NOT IN ('DRAFT', 'CANCELLED', 'REGRETTED', 'REPLACED', 'PENDING_VERIFICATION');
-- Foreign-key maintenance (deleting an account or a type).
CREATE INDEX subscriptions_accounts_receivable_id_idx ON subscriptions (accounts_receivable_id);
CREATE INDEX subscriptions_subscription_type_id_idx ON subscriptions (subscription_type_id);

CREATE TABLE installed_items (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    serial_number    text UNIQUE,
    alternative_code text UNIQUE,
    state            text NOT NULL CHECK (state IN ('EFFECTIVE', 'NOT_EFFECTIVE')),
    subscription_id  uuid REFERENCES subscriptions (id)
);
COMMENT ON TABLE installed_items IS
    'Installed items (set-top boxes, smart cards); an EFFECTIVE item leads to its subscription.';
-- Foreign-key maintenance (deleting a subscription).
CREATE INDEX installed_items_subscription_id_idx ON installed_items (subscription_id);

CREATE TABLE access_tokens (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    number                 text NOT NULL UNIQUE,
    authentication_code    text UNIQUE,
    identifier             text UNIQUE,
    pass_code_hash         text CHECK (pass_code_hash ~ '^\$argon2(id|i|d)\$'),
    life_cycle_state       text NOT NULL
        CHECK (life_cycle_state IN ('EFFECTIVE', 'NOT_EFFECTIVE', 'PENDING_VERIFICATION')),
    accounts_receivable_id uuid NOT NULL REFERENCES accounts_receivable (id)
);
COMMENT ON TABLE access_tokens IS
    'Access tokens of an account, named by authentication_code or by identifier + pass code; an EFFECTIVE one leads to the account''s Tucano subscription.';
COMMENT ON COLUMN access_tokens.pass_code_hash IS
    'Argon2 PHC string of the pass code; null means identifier + pass code never authenticates.';
-- Foreign-key maintenance (deleting an account).
CREATE INDEX access_tokens_accounts_receivable_id_idx ON access_tokens (accounts_receivable_id);

CREATE TABLE customer_identification_mediums (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    number                 text NOT NULL UNIQUE,
    authentication_code    text UNIQUE,
    identifier             text UNIQUE,
    pass_code_hash         text CHECK (pass_code_hash ~ '^\$argon2(id|i|d)\$'),
    life_cycle_state       text NOT NULL
        CHECK (life_cycle_state IN ('EFFECTIVE', 'NOT_EFFECTIVE', 'PENDING_VERIFICATION')),
    accounts_receivable_id uuid NOT NULL REFERENCES accounts_receivable (id)
);
COMMENT ON TABLE customer_identification_mediums IS
    'Customer identification mediums (CRM.COM R18 and later; the successor of access tokens), with the same columns and resolution.';
COMMENT ON COLUMN customer_identification_mediums.pass_code_hash IS
    'Argon2 PHC string of the pass code; null means identifier + pass code never authenticates.';
-- Foreign-key maintenance (deleting an account).
CREATE INDEX customer_identification_mediums_accounts_receivable_id_idx
    ON customer_identification_mediums (accounts_receivable_id);
