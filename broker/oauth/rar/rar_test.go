package rar_test

import (
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/oauth/rar"
)

const api = "https://api.steward.example/v1/data"

// bounds is a regulatory table: marketing consents last at most a year.
func bounds(purpose string) (broker.Duration, bool) {
	if broker.PurposeCovers("Marketing", purpose) {
		return broker.MustParseDuration("P1Y"), true
	}
	return broker.Duration{}, false
}

var opts = rar.Options{MaxDuration: bounds, Locations: []string{api}, MaxDetails: 2}

func TestParseValid(t *testing.T) {
	for _, c := range []struct {
		name string
		in   string
		want []rar.Detail
	}{
		{
			name: "minimal",
			in:   `[{"type":"steward_customer_data","categories":["EmailAddress"],"purpose":"DirectMarketing","duration":"P90D"}]`,
			want: []rar.Detail{{Type: rar.Type, Categories: []string{"EmailAddress"}, Purpose: "DirectMarketing", Duration: broker.MustParseDuration("P90D")}},
		},
		{
			name: "everything",
			in: `[{"type":"steward_customer_data","locations":["` + api + `"],"actions":["read"],
				"categories":["PurchasesAndSpendingHabit","EmailAddress"],"fields":{"EmailAddress":["address"]},
				"purpose":"ServicePersonalisation","duration":"P2Y","frequency":{"max":4,"per":"P1D"}}]`,
			want: []rar.Detail{{
				Type: rar.Type, Locations: []string{api}, Actions: []string{"read"},
				Categories: []string{"EmailAddress", "PurchasesAndSpendingHabit"},
				Fields:     map[string][]string{"EmailAddress": {"address"}},
				Purpose:    "ServicePersonalisation", Duration: broker.MustParseDuration("P2Y"),
				Frequency: broker.Frequency{Max: 4, Per: broker.MustParseDuration("P1D")},
			}},
		},
		{
			name: "duration at the bound",
			in:   `[{"type":"steward_customer_data","categories":["Age"],"purpose":"Marketing","duration":"P1Y"}]`,
			want: []rar.Detail{{Type: rar.Type, Categories: []string{"Age"}, Purpose: "Marketing", Duration: broker.MustParseDuration("P1Y")}},
		},
		{
			name: "two details",
			in: `[{"type":"steward_customer_data","categories":["Age"],"purpose":"Marketing","duration":"P30D"},
				{"type":"steward_customer_data","categories":["Income"],"purpose":"CreditChecking","duration":"PT12H"}]`,
			want: []rar.Detail{
				{Type: rar.Type, Categories: []string{"Age"}, Purpose: "Marketing", Duration: broker.MustParseDuration("P30D")},
				{Type: rar.Type, Categories: []string{"Income"}, Purpose: "CreditChecking", Duration: broker.MustParseDuration("PT12H")},
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := rar.Parse(c.in, opts)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("Parse (-want +got):\n%s", diff)
			}
			// The canonical encoding parses back to the same details.
			enc, err := rar.Encode(got)
			if err != nil {
				t.Fatal(err)
			}
			again, err := rar.Parse(enc, opts)
			if err != nil {
				t.Fatalf("Parse(Encode(...)) = %v\n%s", err, enc)
			}
			if diff := cmp.Diff(got, again); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

// detail returns a valid detail with member k replaced by v (or removed
// when v is "-").
func detail(k, v string) string {
	m := map[string]string{
		"type":       `"steward_customer_data"`,
		"categories": `["EmailAddress"]`,
		"purpose":    `"DirectMarketing"`,
		"duration":   `"P90D"`,
	}
	if v == "-" {
		delete(m, k)
	} else if k != "" {
		m[k] = v
	}
	var parts []string
	for _, name := range []string{"type", "categories", "purpose", "duration", "fields", "frequency", "actions", "locations", "Categories", "datatypes", "privileges"} {
		if val, ok := m[name]; ok {
			parts = append(parts, `"`+name+`":`+val)
		}
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func TestParseInvalid(t *testing.T) {
	for _, c := range []struct {
		name, in, reason string
	}{
		{"not JSON", `[{`, rar.ReasonMalformed},
		{"object not array", detail("", ""), rar.ReasonMalformed},
		{"array of strings", `["steward_customer_data"]`, rar.ReasonMalformed},
		{"trailing data", `[` + detail("", "") + `] []`, rar.ReasonMalformed},
		{"duplicate member", `[{"type":"steward_customer_data","type":"other","categories":["Age"],"purpose":"Marketing","duration":"P1D"}]`, rar.ReasonMalformed},
		{"empty parameter", ``, rar.ReasonMissing},
		{"empty array", `[]`, rar.ReasonEmpty},
		{"too many", `[` + strings.Repeat(detail("", "")+",", 2) + detail("", "") + `]`, rar.ReasonTooMany},
		{"oversize", `[` + detail("purpose", `"`+strings.Repeat("x", rar.DefaultMaxSize)+`"`) + `]`, rar.ReasonTooLarge},
		{"missing type", `[` + detail("type", "-") + `]`, rar.ReasonMissingType},
		{"unknown type", `[` + detail("type", `"payment_initiation"`) + `]`, rar.ReasonUnknownType},
		{"type not a string", `[` + detail("type", `1`) + `]`, rar.ReasonMalformed},
		{"unknown member", `[` + detail("datatypes", `["x"]`) + `]`, rar.ReasonUnknownMember},
		{"member name case differs", `[` + detail("Categories", `["Age"]`) + `]`, rar.ReasonUnknownMember},
		{"missing categories", `[` + detail("categories", "-") + `]`, rar.ReasonMissingMember},
		{"missing purpose", `[` + detail("purpose", "-") + `]`, rar.ReasonMissingMember},
		{"missing duration", `[` + detail("duration", "-") + `]`, rar.ReasonMissingMember},
		{"empty categories", `[` + detail("categories", `[]`) + `]`, rar.ReasonEmpty},
		{"categories not strings", `[` + detail("categories", `[1]`) + `]`, rar.ReasonMalformed},
		{"categories null", `[` + detail("categories", `null`) + `]`, rar.ReasonMalformed},
		{"unknown category", `[` + detail("categories", `["ShoeSize"]`) + `]`, rar.ReasonUnknownCategory},
		{"category twice", `[` + detail("categories", `["Age","Age"]`) + `]`, rar.ReasonDuplicate},
		{"unknown purpose", `[` + detail("purpose", `"Surveillance"`) + `]`, rar.ReasonUnknownPurpose},
		{"malformed duration", `[` + detail("duration", `"90 days"`) + `]`, rar.ReasonBadDuration},
		{"fractional duration", `[` + detail("duration", `"P1.5D"`) + `]`, rar.ReasonBadDuration},
		{"zero duration", `[` + detail("duration", `"PT0S"`) + `]`, rar.ReasonBadDuration},
		{"duration not a string", `[` + detail("duration", `90`) + `]`, rar.ReasonBadDuration},
		{"duration above the bound", `[` + detail("duration", `"P13M"`) + `]`, rar.ReasonDurationBound},
		{"duration above the parent's bound", `[` + detail("duration", `"P2Y"`) + `]`, rar.ReasonDurationBound},
		{"frequency not an object", `[` + detail("frequency", `4`) + `]`, rar.ReasonBadFrequency},
		{"frequency without per", `[` + detail("frequency", `{"max":4}`) + `]`, rar.ReasonBadFrequency},
		{"frequency zero max", `[` + detail("frequency", `{"max":0,"per":"P1D"}`) + `]`, rar.ReasonBadFrequency},
		{"frequency fractional max", `[` + detail("frequency", `{"max":1.5,"per":"P1D"}`) + `]`, rar.ReasonBadFrequency},
		{"frequency bad per", `[` + detail("frequency", `{"max":4,"per":"daily"}`) + `]`, rar.ReasonBadFrequency},
		{"frequency unknown member", `[` + detail("frequency", `{"max":4,"per":"P1D","burst":9}`) + `]`, rar.ReasonUnknownMember},
		{"fields for a category not requested", `[` + detail("fields", `{"Age":["years"]}`) + `]`, rar.ReasonBadFields},
		{"fields empty object", `[` + detail("fields", `{}`) + `]`, rar.ReasonEmpty},
		{"fields empty list", `[` + detail("fields", `{"EmailAddress":[]}`) + `]`, rar.ReasonEmpty},
		{"field name malformed", `[` + detail("fields", `{"EmailAddress":["Address!"]}`) + `]`, rar.ReasonBadFields},
		{"unknown action", `[` + detail("actions", `["delete"]`) + `]`, rar.ReasonUnknownAction},
		{"empty actions", `[` + detail("actions", `[]`) + `]`, rar.ReasonEmpty},
		{"unknown location", `[` + detail("locations", `["https://evil.example/"]`) + `]`, rar.ReasonUnknownLocation},
		{"empty locations", `[` + detail("locations", `[]`) + `]`, rar.ReasonEmpty},
		{"nested too deep", `[` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `]`, rar.ReasonMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := rar.Parse(c.in, opts)
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", got)
			}
			if !errors.Is(err, rar.ErrInvalidAuthorizationDetails) {
				t.Fatalf("err = %v, want invalid_authorization_details", err)
			}
			if r := rar.ReasonOf(err); r != c.reason {
				t.Errorf("reason = %q, want %q (%v)", r, c.reason, err)
			}
			var e interface{ Reason() string }
			if !errors.As(err, &e) || !strings.HasPrefix(e.Reason(), c.reason+": ") {
				t.Errorf("hint %q does not start with the reason code", e.Reason())
			}
			if len(e.Reason()) > 300 {
				t.Errorf("hint is %d bytes; it must not echo the input", len(e.Reason()))
			}
		})
	}
}

func TestFromForm(t *testing.T) {
	d := `[` + detail("", "") + `]`
	if got, err := rar.FromForm(url.Values{}, opts); got != nil || err != nil {
		t.Errorf("absent: %v, %v", got, err)
	}
	if _, err := rar.FromForm(url.Values{rar.FormKey: {d, d}}, opts); rar.ReasonOf(err) != rar.ReasonMalformed {
		t.Errorf("repeated: %v", err)
	}
	if got, err := rar.FromForm(url.Values{rar.FormKey: {d}}, opts); len(got) != 1 || err != nil {
		t.Errorf("present: %v, %v", got, err)
	}
}

func TestScopeConversion(t *testing.T) {
	req, err := rar.Parse(`[{"type":"steward_customer_data","actions":["read"],"locations":["`+api+`"],
		"categories":["EmailAddress","Age"],"fields":{"EmailAddress":["address","domain"]},
		"purpose":"Marketing","duration":"P180D","frequency":{"max":10,"per":"P1D"}}]`, opts)
	if err != nil {
		t.Fatal(err)
	}
	s := rar.ToScope(req[0])
	want := broker.Scope{
		Categories: []string{"Age", "EmailAddress"},
		Fields:     map[string][]string{"EmailAddress": {"address", "domain"}},
		Purpose:    "Marketing", Duration: broker.MustParseDuration("P180D"),
		Frequency: broker.Frequency{Max: 10, Per: broker.MustParseDuration("P1D")},
	}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("ToScope (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(req[0], rar.FromScope(s, req[0])); diff != "" {
		t.Errorf("FromScope(ToScope(d)) (-want +got):\n%s", diff)
	}

	// The customer narrows: fewer categories, a narrower purpose, shorter.
	narrowed := broker.Scope{
		Categories: []string{"EmailAddress"}, Fields: map[string][]string{"EmailAddress": {"domain"}},
		Purpose: "DirectMarketing", Duration: broker.MustParseDuration("P30D"),
		Frequency: broker.Frequency{Max: 1, Per: broker.MustParseDuration("P1D")},
	}
	granted := rar.FromScope(narrowed, req[0])
	if !rar.Within(granted, req[0]) {
		t.Error("narrowed detail is not within the request")
	}
	b, err := json.Marshal(granted)
	if err != nil {
		t.Fatal(err)
	}
	const wantJSON = `{"type":"steward_customer_data","locations":["` + api + `"],"actions":["read"],"categories":["EmailAddress"],"fields":{"EmailAddress":["domain"]},"purpose":"DirectMarketing","duration":"P30D","frequency":{"max":1,"per":"P1D"}}`
	if string(b) != wantJSON {
		t.Errorf("granted JSON =\n%s\nwant\n%s", b, wantJSON)
	}

	for name, wider := range map[string]func(d *rar.Detail){
		"more categories": func(d *rar.Detail) { d.Categories = append(d.Categories, "Income") },
		"wider purpose":   func(d *rar.Detail) { d.Purpose = "ServiceProvision" },
		"longer":          func(d *rar.Detail) { d.Duration = broker.MustParseDuration("P1Y") },
		"more often":      func(d *rar.Detail) { d.Frequency.Max = 100 },
		"more fields":     func(d *rar.Detail) { d.Fields["EmailAddress"] = append(d.Fields["EmailAddress"], "local") },
		"another action":  func(d *rar.Detail) { d.Actions = append(d.Actions, "write") },
		"another place":   func(d *rar.Detail) { d.Locations = append(d.Locations, "https://evil.example/") },
		"another type":    func(d *rar.Detail) { d.Type = "other" },
	} {
		g := rar.FromScope(rar.ToScope(req[0]), req[0])
		wider(&g)
		if rar.Within(g, req[0]) {
			t.Errorf("%s: Within reports a wider grant as within the request", name)
		}
	}
}

func FuzzParseAuthorizationDetails(f *testing.F) {
	f.Add(`[` + detail("", "") + `]`)
	f.Add(`[{"type":"steward_customer_data","categories":["Age"],"purpose":"Marketing","duration":"P1Y","frequency":{"max":1,"per":"P1D"},"fields":{"Age":["years"]}}]`)
	f.Add(`[]`)
	f.Add(`[{"type":"x"}]`)
	f.Fuzz(func(t *testing.T, in string) {
		got, err := rar.Parse(in, opts)
		if err != nil {
			if !errors.Is(err, rar.ErrInvalidAuthorizationDetails) || rar.ReasonOf(err) == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if len(got) == 0 {
			t.Fatal("accepted no details")
		}
		for _, d := range got {
			if err := rar.ToScope(d).Validate(); err != nil {
				t.Fatalf("accepted an invalid scope: %v", err)
			}
			if !rar.Within(d, d) {
				t.Fatal("a detail is not within itself")
			}
		}
		enc, err := rar.Encode(got)
		if err != nil {
			t.Fatal(err)
		}
		again, err := rar.Parse(enc, opts)
		if err != nil {
			t.Fatalf("canonical form refused: %v\n%s", err, enc)
		}
		if diff := cmp.Diff(got, again); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
	})
}
