-- A consent's disclosures are numbered in the order they were made
-- (seq = 1, 2, …; ties in time ordered by seq), so that the number in a
-- frequency window is the last disclosure's seq minus the first in the
-- window's, plus one: two index probes on (consent_id, at, seq), however
-- many disclosures the window holds, where COUNT(*) visited every one of
-- them (a consent allowed 10,000 a day would count up to 10,000 rows on
-- every fetch). The store numbers each disclosure when it writes it,
-- under the consent's row lock the Data API holds.
ALTER TABLE disclosures ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
UPDATE disclosures d SET seq = n.seq
    FROM (SELECT id, row_number() OVER (PARTITION BY consent_id ORDER BY at, id) AS seq FROM disclosures) n
    WHERE n.id = d.id;
DROP INDEX disclosures_consent;
CREATE INDEX disclosures_consent ON disclosures (consent_id, at, seq);
