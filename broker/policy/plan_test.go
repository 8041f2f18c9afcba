package policy

import "testing"

func TestBuiltinPlanIsStable(t *testing.T) {
	e, err := New(t.Context(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cur.Load().planErr; err != nil {
		t.Fatalf("the built-in access plan cannot be cached: %v", err)
	}
}
