package policy_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/policy"
)

const telecomBan = `package regulatory.v1

deny contains {"text": "The regulator has stopped telecom firms receiving data for marketing."} if {
	input.firm.sector == "telecom"
	data.taxonomy.purposes[input.request.purpose].ancestors.Marketing
}
`

func telecomRequest(t *testing.T) policy.ConsentRequest {
	telecom := firmA
	telecom.Sector = "telecom"
	return policy.ConsentRequest{Customer: customer, Firm: telecom, Terms: version(t, 1, `{"effect":"allow"}`),
		Request: broker.DataRequest{Scope: scope("DirectMarketing", "P30D", "EmailAddress")}, Now: now}
}

func decide(t *testing.T, e *policy.Engine, q policy.ConsentRequest) broker.Decision {
	t.Helper()
	d, err := e.Consent(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func writeDir(t *testing.T, files map[string]string) string {
	dir := t.TempDir()
	for name, src := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestReloadFromDirectoryExtendsRegulation(t *testing.T) {
	e := newEngine(t)
	q := telecomRequest(t)
	before, hash := decide(t, e, q), e.PolicyHash()
	if before.Effect != broker.EffectAllow {
		t.Fatalf("before reload: %s %v", before.Effect, before.Reasons)
	}
	mods, err := policy.ReadDir(writeDir(t, map[string]string{"extra/telecom.rego": telecomBan, "extra/telecom_test.rego": "not even rego"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(t.Context(), mods); err != nil {
		t.Fatal(err)
	}
	after := decide(t, e, q)
	if after.Effect != broker.EffectDeny || !hasReason(after, "The regulator has stopped telecom firms") {
		t.Errorf("after reload: %s %v", after.Effect, after.Reasons)
	}
	if e.PolicyHash() == hash || after.PolicyHash != e.PolicyHash() {
		t.Errorf("policy hash %s did not change from %s (decision says %s)", e.PolicyHash(), hash, after.PolicyHash)
	}
	// Reloading with no overlay returns to the built-in policy and its hash.
	if err := e.Reload(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if e.PolicyHash() != hash || decide(t, e, q).Effect != broker.EffectAllow {
		t.Error("reload with no overlay did not restore the built-in policy")
	}
}

func TestReloadReplacesRegulation(t *testing.T) {
	e := newEngine(t)
	q := telecomRequest(t)
	q.Firm.Jurisdiction = "US"
	if d := decide(t, e, q); d.Effect != broker.EffectDeny {
		t.Fatalf("cross-border request: %s", d.Effect)
	}
	// An operator's regulatory.rego without the transfer rule replaces the built-in one.
	lenient := "package regulatory.v1\n\nask_required := set()\n\ndeny := set()\n\nduration_caps := set()\n"
	if err := e.Reload(t.Context(), policy.Modules{"regulatory.rego": []byte(lenient)}); err != nil {
		t.Fatal(err)
	}
	if d := decide(t, e, q); d.Effect != broker.EffectAllow {
		t.Errorf("after replacing the regulation: %s %v", d.Effect, d.Reasons)
	}
}

func TestReloadRefusesBrokenPolicyAndKeepsTheOld(t *testing.T) {
	e := newEngine(t)
	q := telecomRequest(t)
	hash := e.PolicyHash()
	for name, mods := range map[string]policy.Modules{
		"syntax error":     {"bad.rego": []byte("package regulatory.v1\n\ndeny contains {\"text\": \"x\"} if {")},
		"compile error":    {"bad.rego": []byte("package regulatory.v1\n\ndeny contains {\"text\": x} if x := no_such_function(1)\n")},
		"conflicting rule": {"bad.rego": []byte("package regulatory.v1\n\ndeny := 1\n")},
		"other package":    {"consent.rego": []byte("package consent.v1\n\ndecision := {\"effect\": \"allow\"}\n")},
		"sneaky name":      {"consent.rego": []byte("package regulatory.v1\n\nfree_flow_extra := 1\n")},
	} {
		t.Run(name, func(t *testing.T) {
			err := e.Reload(t.Context(), mods)
			if !errors.Is(err, broker.ErrInvalid) {
				t.Fatalf("Reload = %v, want ErrInvalid", err)
			}
			if e.PolicyHash() != hash {
				t.Error("a refused reload changed the policy hash")
			}
			if d := decide(t, e, q); d.Effect != broker.EffectAllow || d.PolicyHash != hash {
				t.Errorf("after a refused reload: %s %s", d.Effect, d.PolicyHash)
			}
		})
	}
}

func tarball(t *testing.T, files map[string]string) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, src := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(src)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(src)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReloadFromBundle(t *testing.T) {
	e := newEngine(t)
	mods, err := policy.ReadBundle(bytes.NewReader(tarball(t, map[string]string{
		"/.manifest": `{"revision": "2026-03-01", "roots": ["regulatory"]}`, "/regulatory/telecom.rego": telecomBan})))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(t.Context(), mods); err != nil {
		t.Fatal(err)
	}
	if d := decide(t, e, telecomRequest(t)); d.Effect != broker.EffectDeny {
		t.Errorf("after bundle reload: %s %v", d.Effect, d.Reasons)
	}

	for name, b := range map[string][]byte{
		"not gzip":  []byte("hello"),
		"with data": tarball(t, map[string]string{"/data.json": `{"taxonomy": {}}`}),
		"bad rego":  tarball(t, map[string]string{"/x.rego": "package regulatory.v1\n\nbroken if {"}),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := policy.ReadBundle(bytes.NewReader(b)); !errors.Is(err, broker.ErrInvalid) {
				t.Errorf("ReadBundle = %v, want ErrInvalid", err)
			}
		})
	}
}

// Decisions keep flowing, each on one whole policy version, while the
// policy is reloaded underneath them (run with -race).
func TestReloadWhileDeciding(t *testing.T) {
	e := newEngine(t)
	q := telecomRequest(t)
	builtin := e.PolicyHash()
	extended := policy.Modules{"telecom.rego": []byte(telecomBan)}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				d, err := e.Consent(t.Context(), q)
				if err != nil {
					t.Error(err)
					return
				}
				if (d.PolicyHash == builtin) != (d.Effect == broker.EffectAllow) {
					t.Errorf("decision %s under policy %s mixes versions", d.Effect, d.PolicyHash)
					return
				}
			}
		})
	}
	for i := range 4 {
		mods := extended
		if i%2 == 1 {
			mods = nil
		}
		if err := e.Reload(t.Context(), mods); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
	if !strings.HasPrefix(e.PolicyHash(), "sha256:") {
		t.Errorf("policy hash %q", e.PolicyHash())
	}
}

// A regulatory overlay that breaks its contract (malformed entries, or a
// replacement that leaves a rule out) must refuse, never allow.
func TestBrokenRegulationRefuses(t *testing.T) {
	for name, mods := range map[string]policy.Modules{
		"malformed deny":  {"broken.rego": []byte("package regulatory.v1\n\ndeny contains \"not an object\" if input.firm.sector == \"telecom\"\n")},
		"malformed cap":   {"broken.rego": []byte("package regulatory.v1\n\nduration_caps contains {\"days\": 3}\n")},
		"rules left out":  {"regulatory.rego": []byte("package regulatory.v1\n\nask_required := set()\n")},
		"ask without cat": {"broken.rego": []byte("package regulatory.v1\n\nask_required contains {\"text\": \"ask\"}\n")},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEngine(t)
			if err := e.Reload(t.Context(), mods); err != nil {
				t.Fatal(err)
			}
			q := telecomRequest(t)
			d, err := e.Consent(t.Context(), q)
			if err != nil {
				t.Fatal(err)
			}
			if d.Effect != broker.EffectDeny || !hasReason(d, "could not apply the regulator's rules") {
				t.Errorf("consent: %s %v", d.Effect, d.Reasons)
			}
			c := grant(t, q.Firm, q.Request.Scope, now.Add(-time.Hour))
			a, err := e.Access(t.Context(), policy.AccessRequest{Customer: customer, Firm: q.Firm, Consent: c, Explicit: true, Terms: q.Terms,
				Categories: c.Granted.Categories, Purpose: c.Granted.Purpose, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			if a.Effect != broker.EffectDeny || !hasReason(a, "could not apply the regulator's rules") {
				t.Errorf("access: %s %v", a.Effect, a.Reasons)
			}
		})
	}
}

// When evaluation fails (here an operator rule that conflicts with itself
// at evaluation time), the engine returns a deny with the error.
func TestEvaluationErrorIsDeny(t *testing.T) {
	e := newEngine(t)
	conflict := "package regulatory.v1\n\nx := 1 if input.firm.sector == \"telecom\"\n\nx := 2 if input.firm.id != \"\"\n\ndeny contains {\"text\": \"never\"} if x == 3\n"
	if err := e.Reload(t.Context(), policy.Modules{"conflict.rego": []byte(conflict)}); err != nil {
		t.Fatal(err)
	}
	d, err := e.Consent(t.Context(), telecomRequest(t))
	if err == nil {
		t.Fatalf("no error from a cancelled evaluation; decision %+v", d)
	}
	if d.Effect != broker.EffectDeny || len(d.Reasons) != 1 || d.Reasons[0].Text != policy.RefusalText || d.PolicyHash != e.PolicyHash() {
		t.Errorf("decision with the error is %+v, want a deny", d)
	}
	d, err = e.Access(t.Context(), policy.AccessRequest{Terms: broker.TermsVersion{Hash: "sha256:nothing"}})
	if err == nil || d.Effect != broker.EffectDeny {
		t.Errorf("access with unreadable terms: %v %+v", err, d)
	}
}
