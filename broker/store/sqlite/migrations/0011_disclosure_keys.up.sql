-- A disclosure is made under a consent, to the consent's firm, of the
-- consent's customer: one foreign key on (consent, customer, firm) says
-- exactly that, which three separate keys did not (they let a disclosure
-- name another firm than its consent's). SQLite cannot change a table's
-- keys in place, so the table is rebuilt.
CREATE UNIQUE INDEX consents_parties ON consents (id, customer_id, firm_id);

CREATE TABLE disclosures_new (
    id          TEXT PRIMARY KEY,
    consent_id  TEXT NOT NULL,
    firm_id     TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    categories  TEXT NOT NULL,
    fields      TEXT NOT NULL,
    at          TIMESTAMP NOT NULL,
    receipt_id  TEXT NOT NULL,
    purpose     TEXT NOT NULL DEFAULT '',
    commitment  TEXT NOT NULL DEFAULT '',
    salt        BLOB,
    FOREIGN KEY (consent_id, customer_id, firm_id) REFERENCES consents (id, customer_id, firm_id)
);
INSERT INTO disclosures_new (id, consent_id, firm_id, customer_id, categories, fields, at, receipt_id, purpose, commitment, salt)
    SELECT id, consent_id, firm_id, customer_id, categories, fields, at, receipt_id, purpose, commitment, salt FROM disclosures;
DROP TABLE disclosures;
ALTER TABLE disclosures_new RENAME TO disclosures;
CREATE INDEX disclosures_customer ON disclosures (customer_id, at);
CREATE INDEX disclosures_consent ON disclosures (consent_id, at);

-- Decision records are listed by customer or by consent, never by firm
-- alone; the index cost a write on every decision.
DROP INDEX decision_records_firm;
