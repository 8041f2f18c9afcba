-- A searchable index of sequenced ledger entries for the regulator's audit
-- API. It is derived data: the leaves are the record, and the verifier
-- never trusts this table. Rows are written by the sequencer in the same
-- transaction that gives an entry its index.
CREATE TABLE ledger_index (
    idx        BIGINT PRIMARY KEY,
    type       TEXT NOT NULL,
    at         TIMESTAMP NOT NULL,
    firm_id    TEXT NOT NULL DEFAULT '',
    customer   TEXT NOT NULL DEFAULT '',
    purpose    TEXT NOT NULL DEFAULT '',
    consent_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX ledger_index_type ON ledger_index (type, at);
CREATE INDEX ledger_index_firm ON ledger_index (firm_id, at);
CREATE INDEX ledger_index_consent ON ledger_index (consent_id, at);
CREATE INDEX ledger_index_purpose ON ledger_index (purpose, at);

CREATE TABLE ledger_index_categories (
    idx      BIGINT NOT NULL REFERENCES ledger_index(idx),
    category TEXT NOT NULL,
    PRIMARY KEY (category, idx)
);
