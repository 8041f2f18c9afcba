-- OAuth hardening (issue #5).

-- consent_id names the consent an authorization-code grant rests on, so
-- that ending the consent ends every code and token issued under it in
-- the same transaction. Empty for grants without one (client credentials,
-- PAR and interactions).
ALTER TABLE oauth_requests ADD COLUMN consent_id TEXT NOT NULL DEFAULT '';
CREATE INDEX oauth_requests_consent ON oauth_requests (consent_id) WHERE consent_id <> '';
