package rar_test

import (
	"errors"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ory/fosite"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/oauth/rar"
)

// session is a fake fosite session that holds authorization details.
type session struct {
	fosite.DefaultSession
	details []rar.Detail
}

func (s *session) AuthorizationDetails() []rar.Detail     { return s.details }
func (s *session) SetAuthorizationDetails(d []rar.Detail) { s.details = d }

var _ rar.Holder = (*session)(nil)

const requested = ` [ {"purpose":"DirectMarketing","type":"steward_customer_data","duration":"P90D","categories":["EmailAddress","Age"]} ] `

func TestPARHandler(t *testing.T) {
	par := func(h *rar.PARHandler, form url.Values) (url.Values, error) {
		ar := fosite.NewAuthorizeRequest()
		ar.Form = form
		return ar.Form, h.HandlePushedAuthorizeEndpointRequest(t.Context(), ar, &fosite.PushedAuthorizeResponse{})
	}
	form, err := par(&rar.PARHandler{Options: opts}, url.Values{rar.FormKey: {requested}})
	if err != nil {
		t.Fatal(err)
	}
	const canon = `[{"type":"steward_customer_data","categories":["Age","EmailAddress"],"purpose":"DirectMarketing","duration":"P90D"}]`
	if got := form.Get(rar.FormKey); got != canon {
		t.Errorf("stored form value\n%s\nwant\n%s", got, canon)
	}
	if _, err := par(&rar.PARHandler{Options: opts}, url.Values{}); err != nil {
		t.Errorf("optional details absent: %v", err)
	}
	if _, err := par(&rar.PARHandler{Options: opts, Required: true}, url.Values{}); rar.ReasonOf(err) != rar.ReasonMissing {
		t.Errorf("required details absent: %v", err)
	}
	if _, err := par(&rar.PARHandler{Options: opts}, url.Values{rar.FormKey: {`[{"type":"x"}]`}}); !errors.Is(err, rar.ErrInvalidAuthorizationDetails) {
		t.Errorf("invalid details: %v", err)
	}
}

func TestAuthorizeHandler(t *testing.T) {
	req, err := rar.Parse(requested, opts)
	if err != nil {
		t.Fatal(err)
	}
	narrowed := rar.ToScope(req[0])
	narrowed.Categories = []string{"Age"}
	widened := rar.ToScope(req[0])
	widened.Categories = append(widened.Categories, "Income")
	for _, c := range []struct {
		name    string
		granted []rar.Detail
		sess    func(d []rar.Detail) fosite.Session
		ok      bool
	}{
		{"granted as requested", req, nil, true},
		{"narrowed", []rar.Detail{rar.FromScope(narrowed, req[0])}, nil, true},
		{"nothing recorded", nil, nil, false},
		{"widened", []rar.Detail{rar.FromScope(widened, req[0])}, nil, false},
		{"session cannot hold details", req, func([]rar.Detail) fosite.Session { return &fosite.DefaultSession{} }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ar := fosite.NewAuthorizeRequest()
			ar.Form = url.Values{rar.FormKey: {requested}}
			var s fosite.Session = &session{details: c.granted}
			if c.sess != nil {
				s = c.sess(c.granted)
			}
			ar.SetSession(s)
			err := (&rar.AuthorizeHandler{Options: opts}).HandleAuthorizeEndpointRequest(t.Context(), ar, fosite.NewAuthorizeResponse())
			if c.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, c.ok)
			}
			if err != nil && !errors.Is(err, fosite.ErrServerError) {
				t.Errorf("err = %v, want server_error", err)
			}
		})
	}
}

func TestTokenHandler(t *testing.T) {
	d := []rar.Detail{{Type: rar.Type, Categories: []string{"Age"}, Purpose: "Marketing", Duration: broker.MustParseDuration("P1D")}}
	ar := fosite.NewAccessRequest(&session{details: d})
	resp := fosite.NewAccessResponse()
	h := rar.TokenHandler{}
	if h.CanHandleTokenEndpointRequest(t.Context(), ar) {
		t.Error("the RAR token handler claims requests")
	}
	if err := h.PopulateTokenEndpointResponse(t.Context(), ar, resp); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(d, resp.GetExtra(rar.FormKey)); diff != "" {
		t.Errorf("token response authorization_details (-want +got):\n%s", diff)
	}
	empty := fosite.NewAccessResponse()
	if err := h.PopulateTokenEndpointResponse(t.Context(), fosite.NewAccessRequest(&session{}), empty); err != nil || empty.GetExtra(rar.FormKey) != nil {
		t.Errorf("details added for a session without any: %v", empty.GetExtra(rar.FormKey))
	}
}
