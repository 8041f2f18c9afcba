package rar

import (
	"context"
	"slices"

	"github.com/ory/fosite"
)

// Holder is what the fosite handlers need from a session: the granted
// authorization details. They MUST survive Clone and storage round trips.
type Holder interface {
	AuthorizationDetails() []Detail
	SetAuthorizationDetails([]Detail)
}

// PARHandler is a fosite.PushedAuthorizeEndpointHandler that validates the
// authorization_details parameter with Parse at PAR time and rewrites it in
// the stored request form in canonical form, so that the authorization
// endpoint (which reads the PAR request back) sees exactly what was checked.
// Compose it BEFORE fosite's PAR handler, which stores the request.
type PARHandler struct {
	Options Options
	// Required refuses PAR requests without authorization_details.
	Required bool
}

var _ fosite.PushedAuthorizeEndpointHandler = (*PARHandler)(nil)

// HandlePushedAuthorizeEndpointRequest implements fosite.PushedAuthorizeEndpointHandler.
func (h *PARHandler) HandlePushedAuthorizeEndpointRequest(_ context.Context, ar fosite.AuthorizeRequester, _ fosite.PushedAuthorizeResponder) error {
	form := ar.GetRequestForm()
	details, err := FromForm(form, h.Options)
	if err != nil {
		return err
	}
	if details == nil {
		if h.Required {
			return refuse(ReasonMissing, "", "authorization_details is required")
		}
		return nil
	}
	canon, err := Encode(details)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
	}
	form.Set(FormKey, canon)
	return nil
}

// AuthorizeHandler is a fosite.AuthorizeEndpointHandler that checks, when
// the authorization request carried authorization_details, that the
// consent step recorded granted details in the session and that each is
// within the requested detail at the same position. Anything else is a
// server_error: a bug in the consent step must never widen a grant.
// Compose it BEFORE fosite's authorization-code handler.
type AuthorizeHandler struct {
	Options Options
}

var _ fosite.AuthorizeEndpointHandler = (*AuthorizeHandler)(nil)

// HandleAuthorizeEndpointRequest implements fosite.AuthorizeEndpointHandler.
func (h *AuthorizeHandler) HandleAuthorizeEndpointRequest(_ context.Context, ar fosite.AuthorizeRequester, _ fosite.AuthorizeResponder) error {
	requested, err := FromForm(ar.GetRequestForm(), h.Options)
	if err != nil || requested == nil {
		return err
	}
	s, ok := ar.GetSession().(Holder)
	if !ok {
		return fosite.ErrServerError.WithDebug("rar: the session cannot hold authorization details")
	}
	granted := s.AuthorizationDetails()
	if len(granted) != len(requested) {
		return fosite.ErrServerError.WithDebug("rar: the consent step recorded no granted authorization details")
	}
	for i := range granted {
		if !Within(granted[i], requested[i]) {
			return fosite.ErrServerError.WithDebugf("rar: granted authorization detail %d is wider than requested", i)
		}
	}
	return nil
}

// TokenHandler is a fosite.TokenEndpointHandler that adds the granted
// authorization_details to the token response (RFC 9396 §7). It never
// claims a request, so it only contributes to responses.
type TokenHandler struct{}

var _ fosite.TokenEndpointHandler = TokenHandler{}

// CanSkipClientAuth implements fosite.TokenEndpointHandler.
func (TokenHandler) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool { return false }

// CanHandleTokenEndpointRequest implements fosite.TokenEndpointHandler.
func (TokenHandler) CanHandleTokenEndpointRequest(context.Context, fosite.AccessRequester) bool {
	return false
}

// HandleTokenEndpointRequest implements fosite.TokenEndpointHandler.
func (TokenHandler) HandleTokenEndpointRequest(context.Context, fosite.AccessRequester) error {
	return fosite.ErrUnknownRequest
}

// PopulateTokenEndpointResponse implements fosite.TokenEndpointHandler.
func (TokenHandler) PopulateTokenEndpointResponse(_ context.Context, req fosite.AccessRequester, resp fosite.AccessResponder) error {
	s, ok := req.GetSession().(Holder)
	if !ok {
		return nil
	}
	if d := s.AuthorizationDetails(); len(d) > 0 {
		resp.SetExtra(FormKey, slices.Clone(d))
	}
	return nil
}
