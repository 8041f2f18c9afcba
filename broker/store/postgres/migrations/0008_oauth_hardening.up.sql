-- OAuth hardening (issue #5).

-- consent_id names the consent an authorization-code grant rests on, so
-- that ending the consent ends every code and token issued under it in
-- the same transaction. Empty for grants without one (client credentials,
-- PAR and interactions).
ALTER TABLE oauth_requests ADD COLUMN consent_id TEXT NOT NULL DEFAULT '';
CREATE INDEX oauth_requests_consent ON oauth_requests (consent_id) WHERE consent_id <> '';

-- oauth_dpop_proofs remembers accepted DPoP proofs (RFC 9449 §11.1) until
-- they could no longer be accepted anyway; proof_key is the SHA-256 of
-- the validator's replay key (the proof key's thumbprint and the jti).
CREATE TABLE oauth_dpop_proofs (
    proof_key  TEXT PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX oauth_dpop_proofs_expiry ON oauth_dpop_proofs (expires_at);

-- The RFC 7591 token_endpoint_auth_signing_alg a client registered: its
-- client assertions MUST use that algorithm. Empty: any accepted one.
ALTER TABLE clients ADD COLUMN token_endpoint_auth_signing_alg TEXT NOT NULL DEFAULT '';
ALTER TABLE oauth_regulator_clients ADD COLUMN token_endpoint_auth_signing_alg TEXT NOT NULL DEFAULT '';

-- oauth_login_failures holds one row per failed customer sign-in, per
-- throttled subject ("handle:" and a keyed hash of the handle, never the
-- handle itself; or "ip:" and the client's address or IPv6 /64), until
-- it leaves the throttling window, so throttling holds across replicas.
CREATE TABLE oauth_login_failures (
    subject    TEXT NOT NULL,
    failed_at  TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX oauth_login_failures_subject ON oauth_login_failures (subject, expires_at);
CREATE INDEX oauth_login_failures_expiry ON oauth_login_failures (expires_at);
