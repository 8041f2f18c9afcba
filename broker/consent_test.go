package broker_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stewardhq/steward/broker"
)

var t0 = time.Date(2026, 1, 31, 12, 0, 0, 0, time.UTC)

func scope(cats ...string) broker.Scope {
	return broker.Scope{Categories: cats, Purpose: "Marketing", Duration: broker.MustParseDuration("P90D"),
		Frequency: broker.Frequency{Max: 4, Per: broker.MustParseDuration("P1D")}}
}

func TestParseDuration(t *testing.T) {
	cases := []struct {
		in      string
		want    string
		approx  time.Duration
		wantErr bool
	}{
		{in: "P90D", want: "P90D", approx: 90 * 24 * time.Hour},
		{in: "P1Y6M", want: "P1Y6M", approx: (365 + 180) * 24 * time.Hour},
		{in: "PT12H30M", want: "PT12H30M", approx: 12*time.Hour + 30*time.Minute},
		{in: "P2W", want: "P2W", approx: 14 * 24 * time.Hour},
		{in: "P1DT1S", want: "P1DT1S", approx: 24*time.Hour + time.Second},
		{in: "", wantErr: true},
		{in: "P", wantErr: true},
		{in: "PT", wantErr: true},
		{in: "90D", wantErr: true},
		{in: "P1.5D", wantErr: true},
		{in: "P-1D", wantErr: true},
		{in: "PD", wantErr: true},
		{in: "P1D1Y", wantErr: true},
		{in: "P1M1M", wantErr: true},
		{in: "P1H", wantErr: true},
		{in: "PT1D", wantErr: true},
		{in: "P101Y", wantErr: true},
		{in: "P9999999999D", wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			d, err := broker.ParseDuration(tc.in)
			if tc.wantErr {
				if !errors.Is(err, broker.ErrInvalid) {
					t.Fatalf("ParseDuration(%q) = %v, %v; want ErrInvalid", tc.in, d, err)
				}
				return
			}
			if err != nil || d.String() != tc.want || d.Approx() != tc.approx {
				t.Fatalf("ParseDuration(%q) = %v (%v), %v; want %s (%v)", tc.in, d, d.Approx(), err, tc.want, tc.approx)
			}
		})
	}
}

func TestDurationCalendar(t *testing.T) {
	// One month after 31 January 2026 is 3 March (Go normalises 31 Feb),
	// not a fixed 30 days: durations are calendar durations.
	got := broker.MustParseDuration("P1M").AddTo(t0)
	if want := time.Date(2026, 3, 3, 12, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("P1M after %v = %v, want %v", t0, got, want)
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"P90D", "P1Y2M3W4DT5H6M7S", "PT0S", "P", "P1.5D"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := broker.ParseDuration(s)
		if err != nil {
			return
		}
		back, err := broker.ParseDuration(d.String())
		if err != nil || back != d {
			t.Fatalf("round trip of %q: %q -> %v, %v", s, d.String(), back, err)
		}
	})
}

func TestScopeWithin(t *testing.T) {
	outer := scope("Contact", "Preference")
	outer.Fields = map[string][]string{"Contact": {"email", "phone"}}
	cases := []struct {
		name  string
		inner func(s broker.Scope) broker.Scope
		want  bool
	}{
		{"same", func(s broker.Scope) broker.Scope { return s }, true},
		{"fewer categories", func(s broker.Scope) broker.Scope { s.Categories = []string{"Preference"}; return s }, true},
		{"extra category", func(s broker.Scope) broker.Scope { s.Categories = append(s.Categories, "Location"); return s }, false},
		{"narrower purpose", func(s broker.Scope) broker.Scope { s.Purpose = "DirectMarketing"; return s }, true},
		{"other purpose", func(s broker.Scope) broker.Scope { s.Purpose = "ServiceProvision"; return s }, false},
		{"shorter", func(s broker.Scope) broker.Scope { s.Duration = broker.MustParseDuration("P30D"); return s }, true},
		{"longer", func(s broker.Scope) broker.Scope { s.Duration = broker.MustParseDuration("P91D"); return s }, false},
		{"less often", func(s broker.Scope) broker.Scope { s.Frequency.Max = 1; return s }, true},
		{"more often", func(s broker.Scope) broker.Scope { s.Frequency.Per = broker.MustParseDuration("PT1H"); return s }, false},
		{"unbounded frequency", func(s broker.Scope) broker.Scope { s.Frequency = broker.Frequency{}; return s }, false},
		{"field subset", func(s broker.Scope) broker.Scope {
			s.Fields = map[string][]string{"Contact": {"email"}}
			return s
		}, true},
		{"whole category where fields restricted", func(s broker.Scope) broker.Scope { s.Fields = nil; return s }, false},
		{"extra field", func(s broker.Scope) broker.Scope {
			s.Fields = map[string][]string{"Contact": {"email", "address"}}
			return s
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.inner(scope("Contact", "Preference"))
			if in.Fields == nil && tc.name != "whole category where fields restricted" {
				in.Fields = map[string][]string{"Contact": {"email", "phone"}}
			}
			if got := in.Within(outer); got != tc.want {
				t.Errorf("Within = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestScopeValidate(t *testing.T) {
	cases := map[string]func(broker.Scope) broker.Scope{
		"no categories":    func(s broker.Scope) broker.Scope { s.Categories = nil; return s },
		"unknown category": func(s broker.Scope) broker.Scope { s.Categories = []string{"Horoscope"}; return s },
		"unknown purpose":  func(s broker.Scope) broker.Scope { s.Purpose = "Profit"; return s },
		"no duration":      func(s broker.Scope) broker.Scope { s.Duration = broker.Duration{}; return s },
		"fields outside":   func(s broker.Scope) broker.Scope { s.Fields = map[string][]string{"Location": {"lat"}}; return s },
		"max no period":    func(s broker.Scope) broker.Scope { s.Frequency.Per = broker.Duration{}; return s },
	}
	for name, mut := range cases {
		if err := mut(scope("Contact")).Validate(); !errors.Is(err, broker.ErrInvalid) {
			t.Errorf("%s: Validate = %v, want ErrInvalid", name, err)
		}
	}
	if err := scope("Contact").Validate(); err != nil {
		t.Errorf("valid scope: %v", err)
	}
}

// TestConsentTransitions walks every (state, action) pair: legal ones move
// and record an event; illegal ones fail with ErrTransition and return the
// consent unchanged.
func TestConsentTransitions(t *testing.T) {
	req, ev, err := broker.NewConsentRequest(broker.NewCustomerID(), broker.NewFirmID(), "", scope("Contact", "Preference"), t0, "firm")
	if err != nil || ev.Seq != 1 || ev.To != broker.ConsentRequested {
		t.Fatalf("NewConsentRequest: %v %+v", err, ev)
	}
	granted, _, err := req.Grant(scope("Contact"), t0, "customer")
	if err != nil {
		t.Fatal(err)
	}
	denied, _, _ := req.Deny(t0, "customer", "no")
	revoked, _, _ := granted.Revoke(t0, "customer", "")
	expired, _, _ := granted.Expire(granted.ExpiresAt)
	states := map[broker.ConsentState]broker.Consent{
		broker.ConsentRequested: req, broker.ConsentGranted: granted, broker.ConsentDenied: denied,
		broker.ConsentRevoked: revoked, broker.ConsentExpired: expired,
	}
	actions := map[string]func(broker.Consent) (broker.Consent, broker.ConsentEvent, error){
		"grant": func(c broker.Consent) (broker.Consent, broker.ConsentEvent, error) {
			return c.Grant(scope("Contact"), t0, "customer")
		},
		"deny": func(c broker.Consent) (broker.Consent, broker.ConsentEvent, error) { return c.Deny(t0, "customer", "") },
		"narrow": func(c broker.Consent) (broker.Consent, broker.ConsentEvent, error) {
			return c.Narrow(scope("Contact"), t0, "customer")
		},
		"revoke": func(c broker.Consent) (broker.Consent, broker.ConsentEvent, error) {
			return c.Revoke(t0, "customer", "")
		},
		"expire": func(c broker.Consent) (broker.Consent, broker.ConsentEvent, error) {
			return c.Expire(t0.AddDate(1, 0, 0))
		},
	}
	legal := map[broker.ConsentState]map[string]broker.ConsentState{
		broker.ConsentRequested: {"grant": broker.ConsentGranted, "deny": broker.ConsentDenied},
		broker.ConsentGranted:   {"narrow": broker.ConsentGranted, "revoke": broker.ConsentRevoked, "expire": broker.ConsentExpired},
	}
	for from, c := range states {
		for name, act := range actions {
			t.Run(string(from)+"/"+name, func(t *testing.T) {
				next, ev, err := act(c)
				to, ok := legal[from][name]
				if !ok {
					if !errors.Is(err, broker.ErrTransition) {
						t.Fatalf("err = %v, want ErrTransition", err)
					}
					if next.State != c.State || next.Version != c.Version {
						t.Fatalf("refused %s changed the consent", name)
					}
					return
				}
				if err != nil {
					t.Fatalf("legal %s refused: %v", name, err)
				}
				if next.State != to || next.Version != c.Version+1 || ev.Seq != next.Version || ev.From != from || ev.To != to {
					t.Fatalf("%s: state %s v%d, event %+v", name, next.State, next.Version, ev)
				}
			})
		}
	}
	if granted.Live(granted.ExpiresAt) || !granted.Live(granted.ExpiresAt.Add(-time.Nanosecond)) {
		t.Error("Live must hold strictly before ExpiresAt")
	}
	if _, _, err := req.Grant(scope("Contact", "Location"), t0, "customer"); !errors.Is(err, broker.ErrScopeWidened) {
		t.Errorf("grant wider than request: %v, want ErrScopeWidened", err)
	}
}

func TestIDs(t *testing.T) {
	id := broker.NewConsentID()
	if _, err := broker.ParseConsentID(string(id)); err != nil {
		t.Errorf("ParseConsentID(%s): %v", id, err)
	}
	for _, bad := range []string{"", "con_", "cus_" + string(id)[4:], string(id) + "a", "con_0000000000000000000000000!"} {
		if _, err := broker.ParseConsentID(bad); !errors.Is(err, broker.ErrInvalid) {
			t.Errorf("ParseConsentID(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}
