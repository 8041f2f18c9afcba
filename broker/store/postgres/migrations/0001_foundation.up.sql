-- Foundation: parties, taxonomy, vault, terms, consents and their history,
-- disclosures, pairwise pseudonyms.

CREATE TABLE categories (
    name    TEXT PRIMARY KEY,
    label   TEXT NOT NULL,
    parent  TEXT REFERENCES categories(name),
    special BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE purposes (
    name   TEXT PRIMARY KEY,
    label  TEXT NOT NULL,
    parent TEXT REFERENCES purposes(name)
);

CREATE TABLE customers (
    id            TEXT PRIMARY KEY,
    handle        TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    email         TEXT NOT NULL DEFAULT '',
    jurisdiction  TEXT NOT NULL,
    minor         BOOLEAN NOT NULL DEFAULT FALSE,
    password_hash TEXT NOT NULL DEFAULT '',
    created_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE firms (
    id           TEXT PRIMARY KEY,
    legal_name   TEXT NOT NULL,
    sector       TEXT NOT NULL,
    jurisdiction TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'suspended')),
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE clients (
    id            TEXT PRIMARY KEY,
    firm_id       TEXT NOT NULL REFERENCES firms(id),
    name          TEXT NOT NULL,
    redirect_uris JSONB NOT NULL,
    jwks          TEXT, -- verbatim RFC 7517 JSON
    jwks_uri      TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX clients_firm ON clients (firm_id);

CREATE TABLE regulators (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    jurisdiction TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE records (
    customer_id TEXT NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    category    TEXT NOT NULL REFERENCES categories(name),
    value       JSONB NOT NULL,
    source      TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (customer_id, category)
);

CREATE TABLE terms_versions (
    customer_id TEXT NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    version     INTEGER NOT NULL CHECK (version > 0),
    document    JSONB NOT NULL,
    -- raw keeps the exact bytes that were hashed; jsonb reorders keys.
    raw         TEXT NOT NULL,
    hash        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (customer_id, version)
);

CREATE TABLE consents (
    id           TEXT PRIMARY KEY,
    customer_id  TEXT NOT NULL REFERENCES customers(id),
    firm_id      TEXT NOT NULL REFERENCES firms(id),
    client_id    TEXT NOT NULL DEFAULT '',
    state        TEXT NOT NULL CHECK (state IN ('requested', 'granted', 'denied', 'revoked', 'expired')),
    requested    JSONB NOT NULL,
    granted      JSONB NOT NULL,
    requested_at TIMESTAMPTZ NOT NULL,
    decided_at   TIMESTAMPTZ,
    expires_at   TIMESTAMPTZ,
    ended_at     TIMESTAMPTZ,
    version      INTEGER NOT NULL CHECK (version > 0)
);
CREATE INDEX consents_customer ON consents (customer_id, id);
CREATE INDEX consents_firm ON consents (firm_id, id);
CREATE INDEX consents_expiry ON consents (expires_at) WHERE state = 'granted';

CREATE TABLE consent_events (
    consent_id TEXT NOT NULL REFERENCES consents(id),
    seq        INTEGER NOT NULL,
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    scope      JSONB NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    actor      TEXT NOT NULL,
    reason     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (consent_id, seq)
);

CREATE TABLE disclosures (
    id          TEXT PRIMARY KEY,
    consent_id  TEXT NOT NULL REFERENCES consents(id),
    firm_id     TEXT NOT NULL REFERENCES firms(id),
    customer_id TEXT NOT NULL REFERENCES customers(id),
    categories  JSONB NOT NULL,
    fields      JSONB NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    receipt_id  TEXT NOT NULL
);
CREATE INDEX disclosures_customer ON disclosures (customer_id, at);
CREATE INDEX disclosures_consent ON disclosures (consent_id, at);

CREATE TABLE pseudonyms (
    customer_id TEXT NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    firm_id     TEXT NOT NULL REFERENCES firms(id),
    pseudonym   TEXT NOT NULL UNIQUE,
    PRIMARY KEY (customer_id, firm_id)
);
