package audit_test

import (
	"bytes"
	"encoding/csv"
	"testing"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/audit"
	"github.com/stewardhq/steward/broker/store"
)

// TestReportCSVNeutralisesFormulas: a value a spreadsheet would evaluate
// is written with a leading quote, so an exported report cannot run code
// in the regulator's spreadsheet.
func TestReportCSVNeutralisesFormulas(t *testing.T) {
	r := store.LedgerReport{
		Consents:        []store.ConsentCounts{{FirmID: "=HYPERLINK(\"http://evil\")", Purpose: "@SUM(A1)", Granted: 1}},
		Disclosures:     []store.DisclosureCount{{FirmID: "+cmd", Disclosures: 2}},
		AfterRevocation: []store.LateDisclosure{{Index: 7, ConsentID: "-2+3", FirmID: broker.FirmID("firm_x")}},
		RefusalsAfterEnd: []store.RefusalAfterEnd{{ConsentID: "con_a", FirmID: "firm_b", Ended: broker.EntryConsentRevoked,
			EndedAt: time.Unix(0, 0).UTC(), LastRefusedAt: time.Unix(90, 0).UTC(), Seconds: 90}},
	}
	var buf bytes.Buffer
	if err := audit.WriteReportCSV(&buf, r); err != nil {
		t.Fatal(err)
	}
	cr := csv.NewReader(&buf)
	cr.FieldsPerRecord = -1
	rows, err := cr.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		for _, c := range row {
			if c != "" && (c[0] == '=' || c[0] == '@' || c[0] == '+' || c[0] == '-') {
				t.Errorf("cell %q would be evaluated by a spreadsheet", c)
			}
		}
	}
	if rows[1][1] != "'=HYPERLINK(\"http://evil\")" {
		t.Errorf("firm cell = %q", rows[1][1])
	}
}
