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
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX oauth_dpop_proofs_expiry ON oauth_dpop_proofs (expires_at);

-- The RFC 7591 token_endpoint_auth_signing_alg a client registered: its
-- client assertions MUST use that algorithm. Empty: any accepted one.
ALTER TABLE clients ADD COLUMN token_endpoint_auth_signing_alg TEXT NOT NULL DEFAULT '';
ALTER TABLE oauth_regulator_clients ADD COLUMN token_endpoint_auth_signing_alg TEXT NOT NULL DEFAULT '';
