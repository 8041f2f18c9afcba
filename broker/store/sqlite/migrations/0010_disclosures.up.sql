-- Data API (broker/dataapi): what a disclosure committed to, and firms'
-- attestations that they deleted a consent's data.

-- purpose is the consent's purpose at the time of the disclosure;
-- commitment is the salted commitment written to the ledger entry, and
-- salt opens it. ForgetCustomer clears salt, so after erasure nobody can
-- confirm a guess of what was disclosed.
ALTER TABLE disclosures ADD COLUMN purpose TEXT NOT NULL DEFAULT '';
ALTER TABLE disclosures ADD COLUMN commitment TEXT NOT NULL DEFAULT '';
ALTER TABLE disclosures ADD COLUMN salt BLOB;

-- One attestation per consent: the firm says it deleted what it received.
CREATE TABLE deletion_attestations (
    consent_id TEXT PRIMARY KEY REFERENCES consents(id),
    firm_id    TEXT NOT NULL REFERENCES firms(id),
    categories TEXT NOT NULL,
    at         TIMESTAMP NOT NULL
);
