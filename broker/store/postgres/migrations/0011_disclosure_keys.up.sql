-- A disclosure is made under a consent, to the consent's firm, of the
-- consent's customer. One foreign key on (consent, customer, firm) says
-- exactly that, which three separate keys did not (they let a disclosure
-- name another firm than its consent's). It is also cheaper: the Data API
-- holds the consent row locked already, so the check takes no new lock,
-- where the keys on customers and firms took a share lock on both rows for
-- every disclosure (a busy firm's row shared by all its concurrent
-- disclosures, through multixacts).
ALTER TABLE consents ADD CONSTRAINT consents_parties UNIQUE (id, customer_id, firm_id);
ALTER TABLE disclosures
    DROP CONSTRAINT disclosures_consent_id_fkey,
    DROP CONSTRAINT disclosures_customer_id_fkey,
    DROP CONSTRAINT disclosures_firm_id_fkey,
    ADD CONSTRAINT disclosures_consent_fkey FOREIGN KEY (consent_id, customer_id, firm_id)
        REFERENCES consents (id, customer_id, firm_id);

-- Decision records are listed by customer or by consent, never by firm
-- alone; the index cost a write on every decision.
DROP INDEX decision_records_firm;
