-- Decision records: why each request was allowed, refused or asked, kept so
-- the customer and a regulator can read the reasons. Keyed by the content
-- hash that ledger entries cite.
CREATE TABLE decision_records (
    hash        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('consent', 'access')),
    customer_id TEXT NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    firm_id     TEXT NOT NULL REFERENCES firms(id),
    consent_id  TEXT NOT NULL DEFAULT '',
    effect      TEXT NOT NULL CHECK (effect IN ('allow', 'deny', 'ask')),
    -- raw is the canonical JSON the hash is over.
    raw         TEXT NOT NULL,
    decided_at  TIMESTAMP NOT NULL
);
CREATE INDEX decision_records_customer ON decision_records (customer_id, decided_at);
CREATE INDEX decision_records_firm ON decision_records (firm_id, decided_at);
CREATE INDEX decision_records_consent ON decision_records (consent_id);
