-- OAuth 2.0 authorization server state (package broker/oauth): fosite's
-- stored requests, client-assertion jtis and the initial access tokens
-- that let an approved firm register clients (RFC 7591).

-- oauth_requests holds one serialised fosite request per code, token, PKCE
-- challenge, pushed authorization request or login interaction, keyed by
-- kind and signature (never the token itself). request_id groups the
-- tokens of one grant so that replay and revocation can end them all.
CREATE TABLE oauth_requests (
    kind       TEXT NOT NULL CHECK (kind IN ('code', 'access', 'refresh', 'pkce', 'par', 'interaction')),
    signature  TEXT NOT NULL,
    request_id TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    active     BOOLEAN NOT NULL DEFAULT TRUE,
    data       TEXT NOT NULL, -- JSON
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, signature)
);
CREATE INDEX oauth_requests_request ON oauth_requests (request_id, kind);
CREATE INDEX oauth_requests_client ON oauth_requests (client_id);
CREATE INDEX oauth_requests_expiry ON oauth_requests (expires_at);

-- oauth_jtis remembers client-assertion jtis until the assertion expires
-- (RFC 7523 section 3, item 7).
CREATE TABLE oauth_jtis (
    jti        TEXT PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX oauth_jtis_expiry ON oauth_jtis (expires_at);

-- oauth_initial_access_tokens holds SHA-256 hashes of the tokens an
-- operator minted for a firm to register clients with.
CREATE TABLE oauth_initial_access_tokens (
    hash       TEXT PRIMARY KEY,
    firm_id    TEXT NOT NULL REFERENCES firms(id),
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX oauth_initial_access_tokens_expiry ON oauth_initial_access_tokens (expires_at);

-- oauth_regulator_clients are the OAuth clients of regulators: client
-- credentials only, read-only audit scope. Firms' clients live in clients.
CREATE TABLE oauth_regulator_clients (
    id           TEXT PRIMARY KEY,
    regulator_id TEXT NOT NULL REFERENCES regulators(id),
    name         TEXT NOT NULL,
    jwks         TEXT, -- verbatim RFC 7517 JSON
    jwks_uri     TEXT NOT NULL DEFAULT '',
    status       TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    created_at   TIMESTAMPTZ NOT NULL
);
