package vault_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/store/backend/backendtest"
	"github.com/stewardhq/steward/broker/vault"
)

const goodJSON = `[
 {"category": "Contact", "value": {"email": "alice@example.org", "phone": "+44 20 7946 0018"}},
 {"category": "Demographic", "value": {"birth_year": 1988, "household_size": 3}},
 {"category": "PurchasesAndSpendingHabit", "value": {"purchases": [
   {"merchant": "Acme Retail", "amount": 21.5, "currency": "GBP", "date": "2026-10-01"},
   {"merchant": "Northwind", "amount": 3, "currency": "EUR"}]}},
 {"category": "Preference", "value": {"interests": ["cycling", "jazz"]}}
]`

const goodCSV = "category,field,value\r\n" +
	"Contact,email,alice@example.org\r\n" +
	"Contact,phone,+44 20 7946 0018\n" + // mixed line endings
	"Demographic,birth_year,1988\n" +
	"Demographic,household_size,3\r\n" +
	"PurchasesAndSpendingHabit,purchases[0].merchant,Acme Retail\n" +
	"PurchasesAndSpendingHabit,purchases[0].amount,21.50\n" +
	"PurchasesAndSpendingHabit,purchases[0].currency,GBP\n" +
	"PurchasesAndSpendingHabit,purchases[0].date,2026-10-01\n" +
	"PurchasesAndSpendingHabit,purchases[1].merchant,\"Northwind, Ltd\"\n" +
	"PurchasesAndSpendingHabit,purchases[1].amount,3\n" +
	"PurchasesAndSpendingHabit,purchases[1].currency,EUR\n" +
	"Preference,interests[0],cycling\n" +
	"Preference,interests[1],jazz\n"

func values(recs []vault.ImportRecord) map[string]string {
	m := map[string]string{}
	for _, r := range recs {
		m[r.Category] = string(r.Value)
	}
	return m
}

func TestParseImportGood(t *testing.T) {
	want := map[string]string{
		"Contact":                   `{"email":"alice@example.org","phone":"+44 20 7946 0018"}`,
		"Demographic":               `{"birth_year":1988,"household_size":3}`,
		"PurchasesAndSpendingHabit": `{"purchases":[{"amount":21.5,"currency":"GBP","date":"2026-10-01","merchant":"Acme Retail"},{"amount":3,"currency":"EUR","merchant":"Northwind"}]}`,
		"Preference":                `{"interests":["cycling","jazz"]}`,
	}
	for _, tc := range []struct {
		name   string
		format vault.Format
		in     string
	}{
		{"json", vault.JSON, goodJSON},
		{"json with BOM", vault.JSON, "\xef\xbb\xbf" + goodJSON},
		{"csv", vault.CSV, goodCSV},
		{"csv with BOM", vault.CSV, "\xef\xbb\xbf" + goodCSV},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := vault.ParseImport(tc.format, strings.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			got := values(recs)
			if tc.format == vault.CSV {
				want := maps(want)
				want["PurchasesAndSpendingHabit"] = strings.Replace(want["PurchasesAndSpendingHabit"], `"Northwind"`, `"Northwind, Ltd"`, 1)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("records (-want +got):\n%s", diff)
				}
				return
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("records (-want +got):\n%s", diff)
			}
		})
	}
}

func maps(m map[string]string) map[string]string {
	c := map[string]string{}
	for k, v := range m {
		c[k] = v
	}
	return c
}

// TestParseImportHostile feeds hostile files and checks each is refused
// with the expected row, field and message.
func TestParseImportHostile(t *testing.T) {
	huge := strings.Repeat("a", vault.MaxImportBytes)
	manyCSV := "category,field,value\n" + strings.Repeat("Contact,email,a@example.org\n", vault.MaxImportRows+1)
	manyJSON := "[" + strings.Repeat(`{"category":"Contact","value":{"email":"a@example.org"}},`, vault.MaxImportRows) + `{"category":"Age","value":{"age":3}}]`
	tests := []struct {
		name   string
		format vault.Format
		in     string
		want   vault.RowError // the first error; Message is a substring
	}{
		// Wrong types.
		{"json string for integer", vault.JSON, `[{"category":"Demographic","value":{"birth_year":"1988"}}]`, vault.RowError{Row: 1, Field: "birth_year", Message: "must be a number"}},
		{"json fraction for integer", vault.JSON, `[{"category":"Demographic","value":{"household_size":2.5}}]`, vault.RowError{Row: 1, Field: "household_size", Message: "whole number"}},
		{"json object for string", vault.JSON, `[{"category":"Contact","value":{"address":{"line":"x"}}}]`, vault.RowError{Row: 1, Field: "address", Message: "must be a string"}},
		{"json value not object", vault.JSON, `[{"category":"Contact","value":["x"]}]`, vault.RowError{Row: 1, Field: "value", Message: "must be an object"}},
		{"json row not object", vault.JSON, `[{"category":"Contact","value":{"email":"a@example.org"}}, 7]`, vault.RowError{Row: 2, Message: "must be an object"}},
		{"json not an array", vault.JSON, `{"category":"Contact"}`, vault.RowError{Row: 0, Message: "JSON array"}},
		{"csv letters for integer", vault.CSV, "category,field,value\nDemographic,household_size,three\n", vault.RowError{Row: 2, Field: "household_size", Message: "whole number"}},
		{"csv NaN for number", vault.CSV, "category,field,value\nIncome,annual_income,NaN\n", vault.RowError{Row: 2, Field: "annual_income", Message: "decimal number"}},
		{"birth year in the future", vault.JSON, `[{"category":"Demographic","value":{"birth_year":3000}}]`, vault.RowError{Row: 1, Field: "birth_year", Message: "between 1900"}},
		{"household of 31", vault.CSV, "category,field,value\nDemographic,household_size,31\n", vault.RowError{Row: 2, Field: "household_size", Message: "between 1 and 30"}},
		{"bad email", vault.CSV, "category,field,value\nContact,email,Alice <alice@example.org>\n", vault.RowError{Row: 2, Field: "email", Message: "email"}},
		{"bad phone", vault.JSON, `[{"category":"Contact","value":{"phone":"0207 946 0018"}}]`, vault.RowError{Row: 1, Field: "phone", Message: "international"}},
		{"missing required item field", vault.CSV, "category,field,value\nPurchasesAndSpendingHabit,purchases[0].merchant,Acme\nPurchasesAndSpendingHabit,purchases[0].amount,1\n", vault.RowError{Row: 2, Field: "purchases[0].currency", Message: "required"}},
		{"list gap", vault.CSV, "category,field,value\nPreference,interests[0],a\nPreference,interests[2],b\n", vault.RowError{Row: 3, Field: "interests[2]", Message: "without gaps"}},
		{"scalar written as list", vault.CSV, "category,field,value\nContact,email[0],a@example.org\n", vault.RowError{Row: 2, Field: "email[0]", Message: "not a list"}},
		// Huge rows and fields.
		{"file too large", vault.JSON, huge + "x", vault.RowError{Row: 0, Message: "larger than"}},
		{"address over 500", vault.JSON, `[{"category":"Contact","value":{"address":"` + strings.Repeat("a", 501) + `"}}]`, vault.RowError{Row: 1, Field: "address", Message: "at most 500"}},
		{"cell over 4 KiB", vault.CSV, "category,field,value\nGenetic,summary," + strings.Repeat("a", vault.MaxStringBytes+1) + "\n", vault.RowError{Row: 2, Field: "value", Message: "longer than"}},
		{"too many list items", vault.JSON, `[{"category":"Preference","value":{"interests":[` + strings.TrimSuffix(strings.Repeat(`"x",`, 51), ",") + `]}}]`, vault.RowError{Row: 1, Field: "interests", Message: "1 to 50 items"}},
		{"deep nesting", vault.JSON, `[{"category":"Contact","value":{"address":` + strings.Repeat("[", 20) + strings.Repeat("]", 20) + `}}]`, vault.RowError{Row: 1, Message: "nested deeper"}},
		// CSV formula injection.
		{"formula =", vault.CSV, "category,field,value\nContact,address,\"=HYPERLINK(\"\"http://evil\"\")\"\n", vault.RowError{Row: 2, Field: "value", Message: "formula"}},
		{"formula @", vault.CSV, "category,field,value\nGender,gender,@SUM(A1)\n", vault.RowError{Row: 2, Field: "value", Message: "formula"}},
		{"formula +", vault.CSV, "category,field,value\nGender,gender,+cmd|' /C calc'!A0\n", vault.RowError{Row: 2, Field: "value", Message: "formula"}},
		{"formula -", vault.CSV, "category,field,value\nGender,gender,-2+3+cmd|' /C calc'!A0\n", vault.RowError{Row: 2, Field: "value", Message: "formula"}},
		{"formula - letter", vault.CSV, "category,field,value\nGender,gender,-x\n", vault.RowError{Row: 2, Field: "value", Message: "formula"}},
		{"formula after spaces", vault.CSV, "category,field,value\nGender,gender,  =1+1\n", vault.RowError{Row: 2, Field: "value", Message: "formula"}},
		{"formula in category cell", vault.CSV, "category,field,value\n=Contact,email,a@example.org\n", vault.RowError{Row: 2, Field: "category", Message: "formula"}},
		{"formula in json", vault.JSON, `[{"category":"Gender","value":{"gender":"=1+1"}}]`, vault.RowError{Row: 1, Field: "gender", Message: "formula"}},
		// Invalid UTF-8 and control characters.
		{"csv invalid utf-8", vault.CSV, "category,field,value\nGender,gender,caf\xe9\n", vault.RowError{Row: 2, Field: "value", Message: "UTF-8"}},
		{"json invalid utf-8", vault.JSON, "[{\"category\":\"Gender\",\"value\":{\"gender\":\"caf\xe9\"}}]", vault.RowError{Row: 1, Message: "UTF-8"}},
		{"control character", vault.JSON, `[{"category":"Gender","value":{"gender":"a\u0000b"}}]`, vault.RowError{Row: 1, Field: "gender", Message: "control"}},
		{"lone CR line ending", vault.CSV, "category,field,value\rContact,email,a@example.org\r", vault.RowError{Row: 1, Message: "header"}},
		// Duplicates and unknowns.
		{"duplicate category json", vault.JSON, `[{"category":"Contact","value":{"email":"a@example.org"}},{"category":"Contact","value":{"email":"b@example.org"}}]`, vault.RowError{Row: 2, Field: "category", Message: "already given in row 1"}},
		{"duplicate field csv", vault.CSV, "category,field,value\nContact,email,a@example.org\nContact,email,b@example.org\n", vault.RowError{Row: 3, Field: "email", Message: "already given in row 2"}},
		{"duplicate member json", vault.JSON, `[{"category":"Contact","value":{"email":"a@example.org","email":"b@example.org"}}]`, vault.RowError{Row: 1, Message: "appears twice"}},
		{"unknown category json", vault.JSON, `[{"category":"Horoscope","value":{"sign":"leo"}}]`, vault.RowError{Row: 1, Field: "category", Message: "unknown category"}},
		{"unknown category csv", vault.CSV, "category,field,value\nHoroscope,sign,leo\n", vault.RowError{Row: 2, Field: "category", Message: "unknown category"}},
		{"unknown field", vault.JSON, `[{"category":"Contact","value":{"fax":"+44 20 7946 0018"}}]`, vault.RowError{Row: 1, Field: "fax", Message: "unknown field"}},
		{"unknown row member", vault.JSON, `[{"category":"Contact","value":{"email":"a@example.org"},"extra":1}]`, vault.RowError{Row: 1, Field: "extra", Message: "unknown member"}},
		{"bad header", vault.CSV, "cat,field,value\nContact,email,a@example.org\n", vault.RowError{Row: 1, Message: "header"}},
		{"wrong cell count", vault.CSV, "category,field,value\nContact,email\n", vault.RowError{Row: 2, Message: "want 3"}},
		{"bare quote", vault.CSV, "category,field,value\nContact,email,a\"b@example.org\n", vault.RowError{Row: 2, Message: "not valid CSV"}},
		{"empty json", vault.JSON, `[]`, vault.RowError{Row: 0, Message: "no records"}},
		{"empty csv", vault.CSV, "category,field,value\n", vault.RowError{Row: 0, Message: "no records"}},
		{"trailing json", vault.JSON, `[{"category":"Contact","value":{"email":"a@example.org"}}] []`, vault.RowError{Row: 0, Message: "after the array"}},
		// Too many rows.
		{"too many csv rows", vault.CSV, manyCSV, vault.RowError{Row: 0, Message: "more than"}},
		{"too many json rows", vault.JSON, manyJSON, vault.RowError{Row: 0, Message: "more than"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := vault.ParseImport(tc.format, strings.NewReader(tc.in))
			var ie *vault.ImportError
			if !errors.As(err, &ie) || !errors.Is(err, broker.ErrInvalid) {
				t.Fatalf("ParseImport = %d records, %v; want an *ImportError", len(recs), err)
			}
			if recs != nil {
				t.Errorf("records returned with an error: %v", recs)
			}
			got := ie.Rows[0]
			if got.Row != tc.want.Row || got.Field != tc.want.Field || !strings.Contains(got.Message, tc.want.Message) {
				t.Errorf("first error = %+v, want %+v (message containing %q); all: %v", got, tc.want, tc.want.Message, ie.Rows)
			}
		})
	}
}

// TestParseImportReportsEveryRow checks that one file with several bad
// rows gets one error per row, not just the first.
func TestParseImportReportsEveryRow(t *testing.T) {
	in := "category,field,value\n" +
		"Contact,email,ok@example.org\n" +
		"Contact,phone,12\n" +
		"Demographic,birth_year,1700\n" +
		"Gender,gender,=evil()\n"
	_, err := vault.ParseImport(vault.CSV, strings.NewReader(in))
	var ie *vault.ImportError
	if !errors.As(err, &ie) {
		t.Fatal(err)
	}
	var rows []int
	for _, r := range ie.Rows {
		rows = append(rows, r.Row)
	}
	if diff := cmp.Diff([]int{3, 4, 5}, rows); diff != "" {
		t.Errorf("error rows (-want +got):\n%s\n%v", diff, ie.Rows)
	}
	// Many bad rows are capped.
	var b strings.Builder
	b.WriteString("category,field,value\n")
	for i := range 300 {
		fmt.Fprintf(&b, "Preference,interests[%d],=x\n", i)
	}
	_, err = vault.ParseImport(vault.CSV, strings.NewReader(b.String()))
	if !errors.As(err, &ie) || len(ie.Rows) != vault.MaxImportErrors || !ie.More {
		t.Errorf("300 bad rows: %d errors, more=%v; want %d and more", len(ie.Rows), ie.More, vault.MaxImportErrors)
	}
}

func TestImport(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		ctx := t.Context()
		v := newService(t, s, vault.Config{})
		alice := createCustomer(t, s, "alice")
		mustPut(t, v, alice.ID, "Gender", `{"gender":"female"}`)
		cats, err := v.Import(ctx, alice.ID, vault.CSV, strings.NewReader(goodCSV))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"Contact", "Demographic", "PurchasesAndSpendingHabit", "Preference"}, cats); diff != "" {
			t.Errorf("imported categories (-want +got):\n%s", diff)
		}
		recs, err := v.Records(ctx, alice.ID)
		if err != nil || len(recs) != 5 {
			t.Fatalf("after import: %d records, %v; want 5", len(recs), err)
		}
		for _, r := range recs {
			if want := map[bool]string{true: "customer", false: "import"}[r.Category == "Gender"]; r.Source != want {
				t.Errorf("%s source = %s, want %s", r.Category, r.Source, want)
			}
		}
		// One bad row: nothing of the file is stored, earlier data stays.
		bad := strings.Replace(goodJSON, `"household_size": 3`, `"household_size": 300`, 1)
		bad = strings.Replace(bad, "alice@example.org", "new@example.org", 1)
		_, err = v.Import(ctx, alice.ID, vault.JSON, strings.NewReader(bad))
		var ie *vault.ImportError
		if !errors.As(err, &ie) || ie.Rows[0].Row != 2 || ie.Rows[0].Field != "household_size" {
			t.Fatalf("bad import = %v, want an error at row 2 household_size", err)
		}
		after, err := v.Records(ctx, alice.ID, "Contact")
		if err != nil || !bytes.Contains(after[0].Value, []byte("alice@example.org")) {
			t.Errorf("Contact after refused import = %s, %v; want the earlier value", after[0].Value, err)
		}
		// Importing for an unknown customer stores nothing.
		if _, err := v.Import(ctx, broker.NewCustomerID(), vault.JSON, strings.NewReader(goodJSON)); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("import for unknown customer: %v", err)
		}
	})
}

// checkParsed is the fuzzers' invariant: ParseImport never panics, returns
// records or an *ImportError but not both, and every record it returns is
// of a known, unique category with a value CheckRecord accepts unchanged.
func checkParsed(t *testing.T, recs []vault.ImportRecord, err error) {
	if err != nil {
		var ie *vault.ImportError
		if !errors.As(err, &ie) || len(ie.Rows) == 0 || len(ie.Rows) > vault.MaxImportErrors || recs != nil {
			t.Fatalf("error %v with %d records", err, len(recs))
		}
		return
	}
	if len(recs) == 0 {
		t.Fatal("no records and no error")
	}
	seen := map[string]bool{}
	for _, r := range recs {
		if seen[r.Category] {
			t.Fatalf("category %s twice", r.Category)
		}
		seen[r.Category] = true
		again, err := vault.CheckRecord(r.Category, r.Value)
		if err != nil || !bytes.Equal(again, r.Value) {
			t.Fatalf("record %s %s does not recheck: %s, %v", r.Category, r.Value, again, err)
		}
		var v map[string]any
		if json.Unmarshal(r.Value, &v) != nil {
			t.Fatalf("record %s is not a JSON object", r.Value)
		}
	}
}

func FuzzParseCSV(f *testing.F) {
	f.Add([]byte(goodCSV))
	f.Add([]byte("category,field,value\nPreference,interests[0],=x\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		recs, err := vault.ParseImport(vault.CSV, bytes.NewReader(in))
		checkParsed(t, recs, err)
	})
}

func FuzzParseJSON(f *testing.F) {
	f.Add([]byte(goodJSON))
	f.Add([]byte(`[{"category":"Contact","value":{"email":"a@example.org","email":"b"}}]`))
	f.Fuzz(func(t *testing.T, in []byte) {
		recs, err := vault.ParseImport(vault.JSON, bytes.NewReader(in))
		checkParsed(t, recs, err)
	})
}
