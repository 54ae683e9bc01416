-- Wrong pass codes by identifier, shared by every worker on this database, so that
-- guessing a short PIN is stopped however many workers an attacker spreads tries over.
-- A row counts the failures of one identifier since its count last started; a success
-- deletes it. `holder` keeps access tokens and customer identification media apart:
-- the same identifier string in both tables names two different credentials.
CREATE TABLE pass_code_failures (
    holder       text        NOT NULL CHECK (holder IN ('access_token', 'medium')),
    identifier   text        NOT NULL,
    failures     integer     NOT NULL CHECK (failures > 0),
    last_failure timestamptz NOT NULL,
    PRIMARY KEY (holder, identifier)
);
