package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/stewardhq/steward/broker"
)

// ShareCode is a one-time code a signed-in customer gives a firm so that
// the firm can ask for their consent without them being on its site (the
// CIBA login_hint). Only a keyed hash of the code is stored.
type ShareCode struct {
	Hash       string
	CustomerID broker.CustomerID
	CreatedAt  time.Time
	ExpiresAt  time.Time
	// UsedAt is zero until a firm's request spends the code.
	UsedAt time.Time
}

// BackchannelState is where a backchannel authentication request stands.
//
//	pending ──customer approves / terms allow──▶ granted ──token──▶ issued
//	   └────customer refuses / terms deny─────▶ denied
type BackchannelState string

const (
	BackchannelPending BackchannelState = "pending"
	BackchannelGranted BackchannelState = "granted"
	BackchannelDenied  BackchannelState = "denied"
	BackchannelIssued  BackchannelState = "issued"
)

// BackchannelRequest is a firm's decoupled consent request (OpenID CIBA):
// the consent it asked for and where the answer stands.
type BackchannelRequest struct {
	// ID names the request in the customer's pages; it is not the
	// auth_req_id, which is stored only as AuthReqHash.
	ID          string
	AuthReqHash string
	ClientID    broker.ClientID
	FirmID      broker.FirmID
	CustomerID  broker.CustomerID
	ConsentID   broker.ConsentID
	State       BackchannelState
	// Requested and Granted are authorization_details JSON (RFC 9396).
	Requested, Granted json.RawMessage
	BindingMessage     string
	// NotificationToken is the client_notification_token of a ping-mode
	// request; "" for poll mode.
	NotificationToken string
	// Reasons say what the customer's terms and the rules made of it.
	Reasons      []string
	Interval     time.Duration
	CreatedAt    time.Time
	ExpiresAt    time.Time
	LastPolledAt time.Time
	DecidedAt    time.Time
}

// BackchannelTx is what decoupled consent requests need from a transaction.
type BackchannelTx interface {
	// CreateShareCode stores a share code; broker.ErrConflict if its hash is taken.
	CreateShareCode(ctx context.Context, c ShareCode) error
	// GetShareCode returns the code with hash (used or expired too); inside
	// Update it locks the row until commit.
	GetShareCode(ctx context.Context, hash string) (ShareCode, error)
	// UseShareCode marks an unused code used at at. It MUST return
	// broker.ErrNotFound unless it changed an unused code, so that of two
	// concurrent callers exactly one succeeds.
	UseShareCode(ctx context.Context, hash string, at time.Time) error

	CreateBackchannelRequest(ctx context.Context, r BackchannelRequest) error
	// GetBackchannelRequest and GetBackchannelRequestByHash return a
	// request; inside Update they lock it until commit.
	GetBackchannelRequest(ctx context.Context, id string) (BackchannelRequest, error)
	GetBackchannelRequestByHash(ctx context.Context, authReqHash string) (BackchannelRequest, error)
	// UpdateBackchannelRequest stores r's State, Granted, Interval,
	// LastPolledAt and DecidedAt. It MUST refuse with broker.ErrConflict
	// a request whose stored state is not from.
	UpdateBackchannelRequest(ctx context.Context, r BackchannelRequest, from BackchannelState) error
	// ListBackchannelRequests returns the customer's requests in state that
	// have not expired by now, oldest first.
	ListBackchannelRequests(ctx context.Context, customer broker.CustomerID, state BackchannelState, now time.Time) ([]BackchannelRequest, error)
	// ListLapsedBackchannelRequests returns up to limit pending requests
	// expired by now (no one answered them), oldest first.
	ListLapsedBackchannelRequests(ctx context.Context, now time.Time, limit int) ([]BackchannelRequest, error)
	// DeleteExpiredBackchannel deletes share codes and requests expired by
	// now and says how many rows went.
	DeleteExpiredBackchannel(ctx context.Context, now time.Time) (int64, error)
}
