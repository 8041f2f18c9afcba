package vault

import (
	"crypto/rand"
	"testing"
)

// benchValue is a typical record: a Contact value of about 120 bytes.
var benchValue = []byte(`{"address":"12 Elm Row, London N1 2AB","email":"alice@example.org","phone":"+44 20 7946 0018","postcode":"N1 2AB"}`)

func benchKey(b *testing.B) dataKey {
	raw := make([]byte, KeySize)
	_, _ = rand.Read(raw)
	a, err := newAEAD(raw)
	if err != nil {
		b.Fatal(err)
	}
	return dataKey{customer: "cus_aaaaaaaaaaaaaaaaaaaaaaaaaa", aead: a}
}

// BenchmarkSeal is the cost of sealing one record under an unwrapped data key.
func BenchmarkSeal(b *testing.B) {
	k := benchKey(b)
	b.SetBytes(int64(len(benchValue)))
	for b.Loop() {
		_ = k.seal("Contact", benchValue)
	}
}

// BenchmarkOpen is the cost of opening one sealed record.
func BenchmarkOpen(b *testing.B) {
	k := benchKey(b)
	sealed := k.seal("Contact", benchValue)
	b.SetBytes(int64(len(benchValue)))
	for b.Loop() {
		if _, err := k.open("Contact", sealed); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnwrapOpen is opening one record from cold: unwrapping the data
// key with the master key (no cache, by design) and then the record.
func BenchmarkUnwrapOpen(b *testing.B) {
	master := make([]byte, KeySize)
	_, _ = rand.Read(master)
	s, err := New(nil, Config{MasterKey: master})
	if err != nil {
		b.Fatal(err)
	}
	raw := make([]byte, KeySize)
	_, _ = rand.Read(raw)
	wrapped := s.wrap("cus_aaaaaaaaaaaaaaaaaaaaaaaaaa", raw)
	k, _ := s.open(wrapped)
	sealed := k.seal("Contact", benchValue)
	for b.Loop() {
		k, err := s.open(wrapped)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := k.open("Contact", sealed); err != nil {
			b.Fatal(err)
		}
	}
}
