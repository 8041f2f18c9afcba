package password_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stewardhq/steward/broker/password"
)

var fast = password.Params{Memory: 1024, Time: 1, Threads: 1}

func TestHashVerify(t *testing.T) {
	h, err := password.Hash("correct horse battery", fast)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=1024,t=1,p=1$") {
		t.Errorf("hash %q is not a PHC argon2id string", h)
	}
	if err := password.Verify("correct horse battery", h); err != nil {
		t.Errorf("Verify(right) = %v", err)
	}
	if err := password.Verify("correct horse batterz", h); !errors.Is(err, password.ErrMismatch) {
		t.Errorf("Verify(wrong) = %v, want ErrMismatch", err)
	}
	h2, _ := password.Hash("correct horse battery", fast)
	if h == h2 {
		t.Error("two hashes of one password are equal: salt not random")
	}
	if !password.NeedsRehash(h, password.Default) || password.NeedsRehash(h, fast) {
		t.Error("NeedsRehash wrong")
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5", "$argon2id$v=19$m=1024,t=1,p=1$!!$!!",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5"} {
		if err := password.Verify("whatever1234", bad); err == nil || errors.Is(err, password.ErrMismatch) {
			t.Errorf("Verify against %q = %v, want a format error", bad, err)
		}
	}
	if _, err := password.Hash("short", fast); err == nil {
		t.Error("short password accepted")
	}
}
