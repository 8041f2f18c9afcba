package vault_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/stewardhq/steward/broker/vault"
)

func ExampleCheckRecord() {
	v, err := vault.CheckRecord("Demographic", json.RawMessage(`{ "household_size": 3, "birth_year": 1988 }`))
	fmt.Println(string(v), err)
	_, err = vault.CheckRecord("Demographic", json.RawMessage(`{"household_size": 31, "pets": 2}`))
	var re *vault.RecordError
	if errors.As(err, &re) {
		for _, f := range re.Fields {
			fmt.Printf("%s: %s\n", f.Field, f.Message)
		}
	}
	// Output:
	// {"birth_year":1988,"household_size":3} <nil>
	// household_size: must be between 1 and 30
	// pets: unknown field
}

func ExampleParseImport() {
	csv := "category,field,value\n" +
		"Contact,email,alice@example.org\n" +
		"Contact,phone,\"=HYPERLINK(\"\"http://evil\"\")\"\n" +
		"Preference,interests[0],cycling\n" +
		"Horoscope,sign,leo\n"
	_, err := vault.ParseImport(vault.CSV, strings.NewReader(csv))
	var ie *vault.ImportError
	if errors.As(err, &ie) {
		for _, r := range ie.Rows {
			fmt.Printf("row %d %s: %s\n", r.Row, r.Field, r.Message)
		}
	}
	// Output:
	// row 3 value: begins like a spreadsheet formula (=, @, + or - followed by a non-digit)
	// row 5 category: unknown category "Horoscope"
}

func ExampleFormulaLike() {
	for _, s := range []string{"+44 20 7946 0018", "-3.5", "=1+1", "@SUM(A1)", "-2+3+cmd|' /C calc'!A0", "+x"} {
		fmt.Printf("%q %v\n", s, vault.FormulaLike(s))
	}
	// Output:
	// "+44 20 7946 0018" false
	// "-3.5" false
	// "=1+1" true
	// "@SUM(A1)" true
	// "-2+3+cmd|' /C calc'!A0" true
	// "+x" true
}
