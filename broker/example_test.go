package broker_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/stewardhq/steward/broker"
)

func ExampleCanonicalJSON() {
	b, err := broker.CanonicalJSON([]byte(`{ "b": [1.0, 2e3, "\u00e9"], "a": true }`))
	fmt.Println(string(b), err)
	// Output: {"a":true,"b":[1,2000,"é"]} <nil>
}

func ExampleEntry_CanonicalBytes() {
	e := broker.Entry{
		Type: broker.EntryFirmRegistered,
		Time: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC),
		Firm: broker.FirmID("firm_" + strings.Repeat("a", 26)),
	}
	b, err := e.CanonicalBytes()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(b))
	back, err := broker.ParseEntry(b)
	fmt.Println(back.Type, err)
	// Output:
	// {"firm":"firm_aaaaaaaaaaaaaaaaaaaaaaaaaa","time":"2026-11-23T10:00:00.000Z","type":"firm.registered","v":1}
	// firm.registered <nil>
}

func ExampleCommit() {
	salt := broker.NewSalt() // kept with the disclosure record, never on the ledger
	content := []byte(`{"EmailAddress":{"email":"a@example.com"}}`)
	c := broker.Commit(salt, content)
	fmt.Println(strings.HasPrefix(c, "sha256:"), broker.CheckCommitment(salt, content, c))
	// Output: true true
}
