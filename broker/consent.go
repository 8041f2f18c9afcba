package broker

import (
	"fmt"
	"slices"
	"time"
)

// ConsentState is where a consent is in its life.
//
// The state machine:
//
//	             grant (scope ⊆ requested)
//	requested ───────────────────────────▶ granted ──revoke──▶ revoked
//	    │                                   │  ▲ │
//	    └──deny──▶ denied                   │  └─┘ narrow (scope ⊆ granted)
//	                                        └──expire (at ≥ expires_at)──▶ expired
//
// denied, revoked and expired are final. Every transition checks the
// current state and returns ErrTransition (or ErrScopeWidened) without
// changing anything when the move is not allowed.
type ConsentState string

const (
	ConsentRequested ConsentState = "requested"
	ConsentGranted   ConsentState = "granted"
	ConsentDenied    ConsentState = "denied"
	ConsentRevoked   ConsentState = "revoked"
	ConsentExpired   ConsentState = "expired"
)

// Final reports whether no transition leaves s.
func (s ConsentState) Final() bool {
	return s == ConsentDenied || s == ConsentRevoked || s == ConsentExpired
}

// Frequency bounds how often a firm may fetch data under a consent:
// at most Max accesses in any window of length Per. Max 0 means no bound.
type Frequency struct {
	Max int      `json:"max,omitempty"`
	Per Duration `json:"per,omitzero"`
}

// rate is accesses per second (0 means unbounded).
func (f Frequency) bounded() bool { return f.Max > 0 }

// within reports whether f is no more frequent than g.
func (f Frequency) within(g Frequency) bool {
	if !g.bounded() {
		return true
	}
	if !f.bounded() {
		return false
	}
	// f.Max/f.Per <= g.Max/g.Per  ⇔  f.Max*g.Per <= g.Max*f.Per
	fp, gp := f.Per.Approx().Seconds(), g.Per.Approx().Seconds()
	return float64(f.Max)*gp <= float64(g.Max)*fp
}

// Scope is what a consent covers.
type Scope struct {
	// Categories are taxonomy category names, sorted and unique.
	Categories []string `json:"categories"`
	// Fields optionally restricts, per category, which fields may be disclosed.
	// A category absent from Fields may be disclosed whole.
	Fields map[string][]string `json:"fields,omitempty"`
	// Purpose is a taxonomy purpose name.
	Purpose string `json:"purpose"`
	// Duration is how long the consent lasts once granted.
	Duration Duration `json:"duration"`
	// Frequency bounds how often the firm may fetch.
	Frequency Frequency `json:"frequency,omitzero"`
}

// Normalize sorts and de-duplicates the scope's lists in place.
func (s *Scope) Normalize() {
	slices.Sort(s.Categories)
	s.Categories = slices.Compact(s.Categories)
	for k, v := range s.Fields {
		slices.Sort(v)
		s.Fields[k] = slices.Compact(v)
	}
}

// Validate checks the scope against the taxonomy.
func (s Scope) Validate() error {
	if len(s.Categories) == 0 {
		return fmt.Errorf("%w: scope names no categories", ErrInvalid)
	}
	for _, c := range s.Categories {
		if _, ok := CategoryByName(c); !ok {
			return fmt.Errorf("%w: unknown category %q", ErrInvalid, c)
		}
	}
	for c := range s.Fields {
		if !slices.Contains(s.Categories, c) {
			return fmt.Errorf("%w: fields given for category %q outside the scope", ErrInvalid, c)
		}
	}
	if _, ok := PurposeByName(s.Purpose); !ok {
		return fmt.Errorf("%w: unknown purpose %q", ErrInvalid, s.Purpose)
	}
	if s.Duration.IsZero() {
		return fmt.Errorf("%w: scope has no duration", ErrInvalid)
	}
	if s.Frequency.Max < 0 || (s.Frequency.Max > 0 && s.Frequency.Per.IsZero()) {
		return fmt.Errorf("%w: frequency needs a positive max and a period", ErrInvalid)
	}
	return nil
}

// Within reports whether s is no wider than outer: a subset of its
// categories and fields, the same purpose or a narrower one, no longer,
// and no more frequent.
func (s Scope) Within(outer Scope) bool {
	for _, c := range s.Categories {
		if !slices.Contains(outer.Categories, c) {
			return false
		}
		of, restricted := outer.Fields[c]
		if !restricted {
			continue
		}
		f, ok := s.Fields[c]
		if !ok {
			return false
		}
		for _, x := range f {
			if !slices.Contains(of, x) {
				return false
			}
		}
	}
	return PurposeCovers(outer.Purpose, s.Purpose) &&
		s.Duration.Approx() <= outer.Duration.Approx() &&
		s.Frequency.within(outer.Frequency)
}

// Consent is a customer's answer to one firm's request for data.
type Consent struct {
	ID         ConsentID    `json:"id"`
	CustomerID CustomerID   `json:"customer_id"`
	FirmID     FirmID       `json:"firm_id"`
	ClientID   ClientID     `json:"client_id,omitempty"`
	State      ConsentState `json:"state"`
	Requested  Scope        `json:"requested"`
	// Granted is the scope in force; empty until granted.
	Granted     Scope     `json:"granted"`
	RequestedAt time.Time `json:"requested_at"`
	// DecidedAt is when it was granted or denied.
	DecidedAt time.Time `json:"decided_at,omitzero"`
	// ExpiresAt is DecidedAt + Granted.Duration once granted.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// EndedAt is when it was revoked or expired.
	EndedAt time.Time `json:"ended_at,omitzero"`
	// Version counts transitions; stores use it for optimistic concurrency.
	Version int `json:"version"`
}

// ConsentEvent is one row of a consent's history: the transition that
// produced Version Seq.
type ConsentEvent struct {
	ConsentID ConsentID    `json:"consent_id"`
	Seq       int          `json:"seq"`
	From      ConsentState `json:"from"`
	To        ConsentState `json:"to"`
	Scope     Scope        `json:"scope"`
	At        time.Time    `json:"at"`
	Actor     string       `json:"actor"`
	Reason    string       `json:"reason,omitempty"`
}

// NewConsentRequest starts a consent in state requested.
func NewConsentRequest(cus CustomerID, firm FirmID, client ClientID, req Scope, at time.Time, actor string) (Consent, ConsentEvent, error) {
	req.Normalize()
	if err := req.Validate(); err != nil {
		return Consent{}, ConsentEvent{}, err
	}
	c := Consent{ID: NewConsentID(), CustomerID: cus, FirmID: firm, ClientID: client,
		State: ConsentRequested, Requested: req, RequestedAt: at.UTC(), Version: 1}
	return c, ConsentEvent{ConsentID: c.ID, Seq: 1, To: ConsentRequested, Scope: req, At: c.RequestedAt, Actor: actor}, nil
}

func (c Consent) move(to ConsentState, scope Scope, at time.Time, actor, reason string) (Consent, ConsentEvent) {
	ev := ConsentEvent{ConsentID: c.ID, Seq: c.Version + 1, From: c.State, To: to, Scope: scope, At: at.UTC(), Actor: actor, Reason: reason}
	c.State, c.Version = to, c.Version+1
	return c, ev
}

func (c Consent) illegal(verb string) error {
	return fmt.Errorf("%w: cannot %s consent %s in state %s", ErrTransition, verb, c.ID, c.State)
}

// Grant moves a requested consent to granted with scope, which must be
// within the request (the customer may narrow it).
func (c Consent) Grant(scope Scope, at time.Time, actor string) (Consent, ConsentEvent, error) {
	if c.State != ConsentRequested {
		return c, ConsentEvent{}, c.illegal("grant")
	}
	scope.Normalize()
	if err := scope.Validate(); err != nil {
		return c, ConsentEvent{}, err
	}
	if !scope.Within(c.Requested) {
		return c, ConsentEvent{}, fmt.Errorf("%w: grant of consent %s", ErrScopeWidened, c.ID)
	}
	n, ev := c.move(ConsentGranted, scope, at, actor, "")
	n.Granted, n.DecidedAt, n.ExpiresAt = scope, at.UTC(), scope.Duration.AddTo(at).UTC()
	return n, ev, nil
}

// Deny moves a requested consent to denied.
func (c Consent) Deny(at time.Time, actor, reason string) (Consent, ConsentEvent, error) {
	if c.State != ConsentRequested {
		return c, ConsentEvent{}, c.illegal("deny")
	}
	n, ev := c.move(ConsentDenied, Scope{}, at, actor, reason)
	n.DecidedAt = at.UTC()
	return n, ev, nil
}

// Narrow replaces a granted consent's scope with a narrower one. It never
// extends the expiry.
func (c Consent) Narrow(scope Scope, at time.Time, actor string) (Consent, ConsentEvent, error) {
	if c.State != ConsentGranted || !at.Before(c.ExpiresAt) {
		return c, ConsentEvent{}, c.illegal("narrow")
	}
	scope.Normalize()
	if err := scope.Validate(); err != nil {
		return c, ConsentEvent{}, err
	}
	if !scope.Within(c.Granted) {
		return c, ConsentEvent{}, fmt.Errorf("%w: narrowing of consent %s", ErrScopeWidened, c.ID)
	}
	n, ev := c.move(ConsentGranted, scope, at, actor, "narrowed")
	n.Granted = scope
	if e := scope.Duration.AddTo(c.DecidedAt).UTC(); e.Before(n.ExpiresAt) {
		n.ExpiresAt = e
	}
	return n, ev, nil
}

// Revoke ends a granted consent at once.
func (c Consent) Revoke(at time.Time, actor, reason string) (Consent, ConsentEvent, error) {
	if c.State != ConsentGranted {
		return c, ConsentEvent{}, c.illegal("revoke")
	}
	n, ev := c.move(ConsentRevoked, c.Granted, at, actor, reason)
	n.EndedAt = at.UTC()
	return n, ev, nil
}

// Expire ends a granted consent whose time is up (at ≥ ExpiresAt).
func (c Consent) Expire(at time.Time) (Consent, ConsentEvent, error) {
	if c.State != ConsentGranted || at.Before(c.ExpiresAt) {
		return c, ConsentEvent{}, c.illegal("expire")
	}
	n, ev := c.move(ConsentExpired, c.Granted, at, "system", "expired")
	n.EndedAt = c.ExpiresAt
	return n, ev, nil
}

// Live reports whether the consent permits access at time at.
func (c Consent) Live(at time.Time) bool {
	return c.State == ConsentGranted && at.Before(c.ExpiresAt)
}
