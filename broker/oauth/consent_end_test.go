package oauth_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/consent"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/store/backend/backendtest"
)

// TestConsentEndRevokesTokens proves DESIGN.md invariant 1 at the token
// level: whichever way a consent ends (the customer revokes it, it
// expires, the customer is erased), every token issued under it is dead
// on the very next request, and its refresh token is refused.
func TestConsentEndRevokesTokens(t *testing.T) {
	ends := []struct {
		name string
		end  func(t *testing.T, e *env, id broker.ConsentID)
	}{
		{"revoke", func(t *testing.T, e *env, id broker.ConsentID) {
			if _, err := e.svc.Revoke(t.Context(), e.customer.ID, id, "changed my mind"); err != nil {
				t.Fatal(err)
			}
		}},
		{"expire", func(t *testing.T, e *env, id broker.ConsentID) {
			later := consent.New(e.store, e.decide, func() time.Time { return time.Now().Add(31 * 24 * time.Hour) })
			if n, err := later.ExpireDue(t.Context(), 10); err != nil || n != 1 {
				t.Fatalf("ExpireDue = %d, %v; want 1", n, err)
			}
		}},
		{"erase", func(t *testing.T, e *env, id broker.ConsentID) {
			if err := e.store.Update(t.Context(), func(tx store.Tx) error {
				_, err := consent.EndAll(t.Context(), tx, e.customer.ID, time.Now(), consent.ErasureReason)
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range ends {
		t.Run(tc.name, func(t *testing.T) {
			backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
				e := newEnv(t, s)
				code, pk := e.code(t)
				st, tok := e.exchange(t, e.client, code, pk.verifier)
				if st != http.StatusOK {
					t.Fatalf("exchange: %d %v", st, tok)
				}
				at, rt := tok["access_token"].(string), tok["refresh_token"].(string)
				info := e.introspect(t, e.client, at)
				if info["active"] != true {
					t.Fatalf("fresh token inactive: %v", info)
				}
				// A code under another consent must survive a revocation.
				var otherCode string
				var otherPK pkce
				if tc.name == "revoke" {
					otherCode, otherPK = e.code(t)
				}

				tc.end(t, e, broker.ConsentID(info["consent_id"].(string)))

				if info := e.introspect(t, e.client, at); info["active"] != false {
					t.Errorf("access token active after the consent ended: %v", info)
				}
				if _, err := e.p.IntrospectAccessToken(t.Context(), at); err == nil {
					t.Error("in-process introspection accepts a token of an ended consent")
				}
				st, out := e.refresh(t, e.client, rt)
				wantError(t, "refresh after the consent ended", st, out, http.StatusBadRequest, "invalid_grant")
				if otherCode == "" {
					return
				}
				if st, out := e.exchange(t, e.client, otherCode, otherPK.verifier); st != http.StatusOK {
					t.Errorf("code of another consent: %d %v", st, out)
				}
			})
		})
	}
}

// TestRevokeRacesExchange revokes a consent while its code is being
// exchanged: whichever commits first, no token outlives the revocation.
func TestRevokeRacesExchange(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		e := newEnv(t, s)
		for range 8 {
			code, pk := e.code(t)
			var consentID broker.ConsentID
			if err := s.View(t.Context(), func(tx store.Tx) error {
				cs, err := tx.ListConsents(t.Context(), store.ConsentFilter{CustomerID: e.customer.ID, State: broker.ConsentGranted})
				if len(cs) > 0 {
					consentID = cs[len(cs)-1].ID
				}
				return err
			}); err != nil || consentID == "" {
				t.Fatalf("granted consent: %q %v", consentID, err)
			}
			done := make(chan map[string]any)
			go func() {
				_, tok := e.exchange(t, e.client, code, pk.verifier)
				done <- tok
			}()
			if _, err := e.svc.Revoke(t.Context(), e.customer.ID, consentID, "race"); err != nil {
				t.Fatal(err)
			}
			tok := <-done
			if at, ok := tok["access_token"].(string); ok {
				if info := e.introspect(t, e.client, at); info["active"] != false {
					t.Fatalf("token issued during the revocation of %s is active: %v", consentID, info)
				}
			}
		}
	})
}
