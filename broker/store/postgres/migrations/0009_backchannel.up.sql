-- Decoupled consent requests (OpenID CIBA, package broker/oauth).

-- share_codes are the one-time codes a signed-in customer hands to a firm
-- whose site they are not on; the firm sends one as the CIBA login_hint.
-- Only a keyed hash of the code is kept.
CREATE TABLE share_codes (
    code_hash   TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers(id),
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ
);
CREATE INDEX share_codes_customer ON share_codes (customer_id);
CREATE INDEX share_codes_expiry ON share_codes (expires_at);

-- backchannel_requests are backchannel authentication requests: one per
-- auth_req_id (kept as a keyed hash), naming the consent it asks for and
-- where it stands: pending (the customer has not answered), granted,
-- denied, or issued (tokens were issued; the auth_req_id is spent).
CREATE TABLE backchannel_requests (
    id                 TEXT PRIMARY KEY,
    auth_req_hash      TEXT NOT NULL UNIQUE,
    client_id          TEXT NOT NULL,
    firm_id            TEXT NOT NULL REFERENCES firms(id),
    customer_id        TEXT NOT NULL REFERENCES customers(id),
    consent_id         TEXT NOT NULL REFERENCES consents(id),
    state              TEXT NOT NULL CHECK (state IN ('pending', 'granted', 'denied', 'issued')),
    requested          TEXT NOT NULL, -- authorization_details JSON
    granted            TEXT NOT NULL DEFAULT '', -- authorization_details JSON
    binding_message    TEXT NOT NULL DEFAULT '',
    notification_token TEXT NOT NULL DEFAULT '',
    reasons            TEXT NOT NULL DEFAULT '[]', -- JSON array of strings
    interval_seconds   INTEGER NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    expires_at         TIMESTAMPTZ NOT NULL,
    last_polled_at     TIMESTAMPTZ,
    decided_at         TIMESTAMPTZ
);
CREATE INDEX backchannel_requests_customer ON backchannel_requests (customer_id, state);
CREATE INDEX backchannel_requests_expiry ON backchannel_requests (expires_at);
