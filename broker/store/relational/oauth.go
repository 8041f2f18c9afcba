package relational

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
)

// OAuth implements the storage of the OAuth 2.0 authorization server
// (broker/oauth): serialised fosite requests by kind and signature,
// client-assertion jtis, initial access tokens and client status. Every
// method runs in its own transaction; the few that change several rows
// (RotateRefreshToken, DeleteClient) do so atomically.
//
// BeginTx starts a transaction that the returned context carries: every
// method called with that context (or one derived from it) joins it until
// CommitTx or RollbackTx. fosite's handlers need this (its
// storage.Transactional) to exchange a code or rotate a refresh token
// atomically.
type OAuth struct {
	// Update and View run fn in a read-write or read-only transaction.
	Update func(ctx context.Context, fn func(*Tx) error) error
	View   func(ctx context.Context, fn func(*Tx) error) error
	// Begin opens a read-write transaction held until commit or rollback
	// (rollback is idempotent and safe after commit).
	Begin func(ctx context.Context) (tx *Tx, commit func() error, rollback func(), err error)
}

type openTxKey struct{}

// openTx is a transaction begun by BeginTx.
type openTx struct {
	mu       sync.Mutex
	tx       *Tx
	commit   func() error
	rollback func()
	done     bool
}

// update runs fn in the transaction ctx carries, or in a new one.
func (o *OAuth) update(ctx context.Context, fn func(*Tx) error) error {
	if ot, ok := ctx.Value(openTxKey{}).(*openTx); ok {
		ot.mu.Lock()
		defer ot.mu.Unlock()
		if ot.done {
			return fmt.Errorf("oauth storage: transaction already ended: %w", broker.ErrConflict)
		}
		return fn(ot.tx)
	}
	return o.Update(ctx, fn)
}

// view reads in the transaction ctx carries (so it sees its writes), or
// in a new read-only one.
func (o *OAuth) view(ctx context.Context, fn func(*Tx) error) error {
	if _, ok := ctx.Value(openTxKey{}).(*openTx); ok {
		return o.update(ctx, fn)
	}
	return o.View(ctx, fn)
}

// BeginTx starts a transaction carried by the returned context. Nested
// calls join the outer transaction.
func (o *OAuth) BeginTx(ctx context.Context) (context.Context, error) {
	if _, ok := ctx.Value(openTxKey{}).(*openTx); ok {
		return ctx, nil
	}
	tx, commit, rollback, err := o.Begin(ctx)
	if err != nil {
		return ctx, fmt.Errorf("oauth storage: begin: %w", err)
	}
	return context.WithValue(ctx, openTxKey{}, &openTx{tx: tx, commit: commit, rollback: rollback}), nil
}

// CommitTx commits the transaction ctx carries.
func (o *OAuth) CommitTx(ctx context.Context) error {
	ot, ok := ctx.Value(openTxKey{}).(*openTx)
	if !ok {
		return nil
	}
	ot.mu.Lock()
	defer ot.mu.Unlock()
	if ot.done {
		return fmt.Errorf("oauth storage: commit: transaction already ended: %w", broker.ErrConflict)
	}
	ot.done = true
	if err := ot.commit(); err != nil {
		ot.rollback()
		return fmt.Errorf("oauth storage: commit: %w", err)
	}
	return nil
}

// RollbackTx rolls back the transaction ctx carries; after a commit or a
// rollback it does nothing.
func (o *OAuth) RollbackTx(ctx context.Context) error {
	ot, ok := ctx.Value(openTxKey{}).(*openTx)
	if !ok {
		return nil
	}
	ot.mu.Lock()
	defer ot.mu.Unlock()
	if !ot.done {
		ot.done = true
		ot.rollback()
	}
	return nil
}

const insertOAuthRequestSQL = `INSERT INTO oauth_requests (kind, signature, request_id, client_id, consent_id, active, data, expires_at)
VALUES ($1, $2, $3, $4, $5, TRUE, $6, $7)`

// CreateRequest stores an active request; broker.ErrConflict if kind and
// signature are taken. consentID is the consent the grant rests on ("" for
// none): Tx.RevokeConsentTokens ends the request with it. A code or token
// is only stored under a granted consent (broker.ErrForbidden otherwise),
// checked under the consent's row lock: a revocation either commits first,
// and the token is refused, or waits for this transaction and then sees,
// and deletes, the token.
func (o *OAuth) CreateRequest(ctx context.Context, kind, signature, requestID, clientID, consentID string, data []byte, expiresAt time.Time) error {
	err := o.update(ctx, func(tx *Tx) error {
		if consentID != "" && (kind == "code" || kind == "access" || kind == "refresh") {
			var state string
			err := newScanner(tx.D).str(&state).from(tx.Q.QueryRow(ctx, `SELECT state FROM consents WHERE id = $1`+tx.D.LockSuffix, consentID))
			if errors.Is(err, broker.ErrNotFound) {
				return fmt.Errorf("consent %s: %w", consentID, broker.ErrForbidden)
			} else if err != nil {
				return err
			}
			if state != string(broker.ConsentGranted) {
				return fmt.Errorf("consent %s is %s: %w", consentID, state, broker.ErrForbidden)
			}
		}
		_, err := tx.Q.Exec(ctx, insertOAuthRequestSQL, kind, signature, requestID, clientID, consentID, string(data), tx.t(expiresAt))
		return tx.err(err)
	})
	if err != nil {
		return fmt.Errorf("create oauth %s: %w", kind, err)
	}
	return nil
}

const getOAuthRequestSQL = `SELECT data, active FROM oauth_requests WHERE kind = $1 AND signature = $2 AND expires_at > $3`

// GetRequest returns a request's data and whether it is still active;
// broker.ErrNotFound if there is none or it expired by now.
func (o *OAuth) GetRequest(ctx context.Context, kind, signature string, now time.Time) (data []byte, active bool, err error) {
	err = o.view(ctx, func(tx *Tx) error {
		return newScanner(tx.D).bytes(&data).flag(&active).from(tx.Q.QueryRow(ctx, getOAuthRequestSQL, kind, signature, tx.t(now)))
	})
	if err != nil {
		return nil, false, fmt.Errorf("get oauth %s: %w", kind, err)
	}
	return data, active, nil
}

// getOAuthRequestWithClientSQL reads a request with its firm client and
// the client's firm in one round trip. The client is absent (NULL, read
// as "") for a regulator's client, whose row lives elsewhere.
const getOAuthRequestWithClientSQL = `SELECT r.data, r.active,
COALESCE(cl.id, ''), COALESCE(cl.firm_id, ''), COALESCE(cl.name, ''), cl.redirect_uris, cl.jwks, COALESCE(cl.jwks_uri, ''),
COALESCE(cl.status, ''), cl.created_at, COALESCE(cl.token_endpoint_auth_signing_alg, ''),
COALESCE(f.id, ''), COALESCE(f.legal_name, ''), COALESCE(f.sector, ''), COALESCE(f.jurisdiction, ''), COALESCE(f.status, ''),
COALESCE(f.webhook_url, ''), f.created_at, f.updated_at
FROM oauth_requests r
LEFT JOIN clients cl ON cl.id = r.client_id
LEFT JOIN firms f ON f.id = cl.firm_id
WHERE r.kind = $1 AND r.signature = $2 AND r.expires_at > $3`

// GetRequestWithClient is GetRequest that also returns, read in the same
// statement, the request's client and the client's firm; client is nil
// when the request's client is not a firm's (a regulator's), and the
// caller looks it up itself.
func (o *OAuth) GetRequestWithClient(ctx context.Context, kind, signature string, now time.Time) (data []byte, active bool, client *broker.Client, firm *broker.Firm, err error) {
	err = o.view(ctx, func(tx *Tx) error {
		var c broker.Client
		var f broker.Firm
		s := newScanner(tx.D).bytes(&data).flag(&active)
		s = scanClient(s, &c)
		s = scanFirm(s, &f)
		if err := s.from(tx.Q.QueryRow(ctx, getOAuthRequestWithClientSQL, kind, signature, tx.t(now))); err != nil {
			return err
		}
		if c.ID != "" && f.ID != "" {
			client, firm = &c, &f
		}
		return nil
	})
	if err != nil {
		return nil, false, nil, nil, fmt.Errorf("get oauth %s: %w", kind, err)
	}
	return data, active, client, firm, nil
}

// DeactivateRequest marks an active request used; broker.ErrNotFound if
// no active request has that signature (so of two concurrent callers
// exactly one succeeds).
func (o *OAuth) DeactivateRequest(ctx context.Context, kind, signature string) error {
	err := o.update(ctx, func(tx *Tx) error {
		return tx.execOne(ctx, `UPDATE oauth_requests SET active = FALSE WHERE kind = $1 AND signature = $2 AND active`, kind, signature)
	})
	if err != nil {
		return fmt.Errorf("deactivate oauth %s: %w", kind, err)
	}
	return nil
}

// DeactivateRequests marks every request of kind in the grant requestID used.
func (o *OAuth) DeactivateRequests(ctx context.Context, kind, requestID string) error {
	err := o.update(ctx, func(tx *Tx) error {
		_, err := tx.Q.Exec(ctx, `UPDATE oauth_requests SET active = FALSE WHERE request_id = $1 AND kind = $2`, requestID, kind)
		return tx.err(err)
	})
	if err != nil {
		return fmt.Errorf("deactivate oauth %s of request %s: %w", kind, requestID, err)
	}
	return nil
}

// DeleteRequest removes one request; deleting a missing one is not an error.
func (o *OAuth) DeleteRequest(ctx context.Context, kind, signature string) error {
	err := o.update(ctx, func(tx *Tx) error {
		_, err := tx.Q.Exec(ctx, `DELETE FROM oauth_requests WHERE kind = $1 AND signature = $2`, kind, signature)
		return tx.err(err)
	})
	if err != nil {
		return fmt.Errorf("delete oauth %s: %w", kind, err)
	}
	return nil
}

// DeleteRequests removes every request of kind in the grant requestID.
func (o *OAuth) DeleteRequests(ctx context.Context, kind, requestID string) error {
	err := o.update(ctx, func(tx *Tx) error {
		_, err := tx.Q.Exec(ctx, `DELETE FROM oauth_requests WHERE request_id = $1 AND kind = $2`, requestID, kind)
		return tx.err(err)
	})
	if err != nil {
		return fmt.Errorf("delete oauth %s of request %s: %w", kind, requestID, err)
	}
	return nil
}

// RotateRefreshToken ends the refresh token with signature and, in the
// same transaction, every other refresh token and every access token of
// its grant. broker.ErrConflict if that token was no longer active: a
// concurrent refresh won.
func (o *OAuth) RotateRefreshToken(ctx context.Context, requestID, signature string) error {
	err := o.update(ctx, func(tx *Tx) error {
		err := tx.execOne(ctx, `UPDATE oauth_requests SET active = FALSE WHERE kind = 'refresh' AND signature = $1 AND request_id = $2 AND active`, signature, requestID)
		if errors.Is(err, broker.ErrNotFound) {
			return fmt.Errorf("%w: refresh token already used", broker.ErrConflict)
		} else if err != nil {
			return err
		}
		if _, err := tx.Q.Exec(ctx, `UPDATE oauth_requests SET active = FALSE WHERE request_id = $1 AND kind = 'refresh'`, requestID); err != nil {
			return tx.err(err)
		}
		_, err = tx.Q.Exec(ctx, `DELETE FROM oauth_requests WHERE request_id = $1 AND kind = 'access'`, requestID)
		return tx.err(err)
	})
	if err != nil {
		return fmt.Errorf("rotate refresh token of request %s: %w", requestID, err)
	}
	return nil
}

// RevokeConsentTokens implements store.Tx: it deletes every code, PKCE
// session, access token and refresh token issued under the consent, so
// none of them works after the transaction commits.
func (tx *Tx) RevokeConsentTokens(ctx context.Context, id broker.ConsentID) (int64, error) {
	if err := tx.mustWrite("revoke consent tokens"); err != nil {
		return 0, err
	}
	if id == "" {
		return 0, nil
	}
	n, err := tx.Q.Exec(ctx, `DELETE FROM oauth_requests WHERE consent_id = $1`, string(id))
	if err != nil {
		return 0, fmt.Errorf("revoke tokens of consent %s: %w", id, tx.err(err))
	}
	return n, nil
}

const useJTISQL = `INSERT INTO oauth_jtis (jti, expires_at) VALUES ($1, $2)
ON CONFLICT (jti) DO UPDATE SET expires_at = excluded.expires_at WHERE oauth_jtis.expires_at <= $3`

// UseJTI records a client-assertion jti until exp; broker.ErrConflict if
// it is already recorded and has not expired by now.
func (o *OAuth) UseJTI(ctx context.Context, jti string, exp, now time.Time) error {
	err := o.update(ctx, func(tx *Tx) error {
		n, err := tx.Q.Exec(ctx, useJTISQL, jti, tx.t(exp), tx.t(now))
		if err != nil {
			return tx.err(err)
		}
		if n == 0 {
			return fmt.Errorf("%w: jti already used", broker.ErrConflict)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("use jti: %w", err)
	}
	return nil
}

// JTIUsed reports whether jti is recorded and not expired by now.
func (o *OAuth) JTIUsed(ctx context.Context, jti string, now time.Time) (bool, error) {
	var n int
	err := o.view(ctx, func(tx *Tx) error {
		return newScanner(tx.D).num(&n).from(tx.Q.QueryRow(ctx, `SELECT COUNT(*) FROM oauth_jtis WHERE jti = $1 AND expires_at > $2`, jti, tx.t(now)))
	})
	if err != nil {
		return false, fmt.Errorf("check jti: %w", err)
	}
	return n > 0, nil
}

const useDPoPProofSQL = `INSERT INTO oauth_dpop_proofs (proof_key, expires_at) VALUES ($1, $2)
ON CONFLICT (proof_key) DO UPDATE SET expires_at = excluded.expires_at WHERE oauth_dpop_proofs.expires_at <= $3`

// UseDPoPProof records an accepted DPoP proof's replay key until exp;
// broker.ErrConflict if it is already recorded and has not expired by now.
// Check and record are one statement, so of two replicas offered the same
// proof at once exactly one succeeds (the other waits on the key's
// unique index, then finds it taken). Like every method it joins the
// transaction ctx carries, if any; Steward validates proofs before fosite
// begins one, so a proof is recorded at once.
func (o *OAuth) UseDPoPProof(ctx context.Context, key string, exp, now time.Time) error {
	return o.update(ctx, func(tx *Tx) error { return tx.UseDPoPProof(ctx, key, exp, now) })
}

// UseDPoPProof is OAuth.UseDPoPProof in the caller's transaction (a
// resource server records the proof with what the request does).
func (tx *Tx) UseDPoPProof(ctx context.Context, key string, exp, now time.Time) error {
	if err := tx.mustWrite("use dpop proof"); err != nil {
		return err
	}
	return tx.deferExec(ctx, Stmt{useDPoPProofSQL, []any{key, tx.t(exp), tx.t(now)}}, "use dpop proof", func(n int64) error {
		if n == 0 {
			return store.ErrProofReplayed
		}
		return nil
	})
}

// LoginFailures counts the failed sign-ins recorded for subject that are
// unexpired at now, and says when the oldest of them expires.
func (o *OAuth) LoginFailures(ctx context.Context, subject string, now time.Time) (n int, oldest time.Time, err error) {
	err = o.view(ctx, func(tx *Tx) error {
		return newScanner(tx.D).num(&n).time(&oldest).from(tx.Q.QueryRow(ctx,
			`SELECT COUNT(*), MIN(expires_at) FROM oauth_login_failures WHERE subject = $1 AND expires_at > $2`, subject, tx.t(now)))
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("count login failures: %w", err)
	}
	return n, oldest, nil
}

// AddLoginFailure records one failed sign-in at for each subject, kept
// until expiresAt.
func (o *OAuth) AddLoginFailure(ctx context.Context, subjects []string, at, expiresAt time.Time) error {
	err := o.update(ctx, func(tx *Tx) error {
		for _, sub := range subjects {
			if _, err := tx.Q.Exec(ctx, `INSERT INTO oauth_login_failures (subject, failed_at, expires_at) VALUES ($1, $2, $3)`,
				sub, tx.t(at), tx.t(expiresAt)); err != nil {
				return tx.err(err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record login failure: %w", err)
	}
	return nil
}

// ClearLoginFailures forgets the failed sign-ins of subject.
func (o *OAuth) ClearLoginFailures(ctx context.Context, subject string) error {
	err := o.update(ctx, func(tx *Tx) error {
		_, err := tx.Q.Exec(ctx, `DELETE FROM oauth_login_failures WHERE subject = $1`, subject)
		return tx.err(err)
	})
	if err != nil {
		return fmt.Errorf("clear login failures: %w", err)
	}
	return nil
}

// CreateInitialAccessToken stores the hash of a token that lets firm
// register clients until expiresAt.
func (o *OAuth) CreateInitialAccessToken(ctx context.Context, hash string, firm broker.FirmID, createdAt, expiresAt time.Time) error {
	err := o.update(ctx, func(tx *Tx) error {
		_, err := tx.Q.Exec(ctx, `INSERT INTO oauth_initial_access_tokens (hash, firm_id, created_at, expires_at) VALUES ($1, $2, $3, $4)`,
			hash, firm, tx.t(createdAt), tx.t(expiresAt))
		return tx.err(err)
	})
	if err != nil {
		return fmt.Errorf("create initial access token for %s: %w", firm, err)
	}
	return nil
}

// InitialAccessTokenFirm returns the firm whose unexpired token has hash;
// broker.ErrNotFound otherwise.
func (o *OAuth) InitialAccessTokenFirm(ctx context.Context, hash string, now time.Time) (broker.FirmID, error) {
	var firm string
	err := o.view(ctx, func(tx *Tx) error {
		return newScanner(tx.D).str(&firm).from(tx.Q.QueryRow(ctx,
			`SELECT firm_id FROM oauth_initial_access_tokens WHERE hash = $1 AND expires_at > $2`, hash, tx.t(now)))
	})
	if err != nil {
		return "", fmt.Errorf("initial access token: %w", err)
	}
	return broker.FirmID(firm), nil
}

// SetClientStatus activates or suspends a firm's or regulator's client; broker.ErrNotFound if
// there is no such client.
func (o *OAuth) SetClientStatus(ctx context.Context, id broker.ClientID, status broker.ClientStatus) error {
	err := o.update(ctx, func(tx *Tx) error {
		err := tx.execOne(ctx, `UPDATE clients SET status = $1 WHERE id = $2`, string(status), id)
		if errors.Is(err, broker.ErrNotFound) {
			err = tx.execOne(ctx, `UPDATE oauth_regulator_clients SET status = $1 WHERE id = $2`, string(status), id)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("set client %s status: %w", id, err)
	}
	return nil
}

// DeleteClient removes a firm's or regulator's client and every code, token and pending
// request issued to it; broker.ErrNotFound if there is no such client.
func (o *OAuth) DeleteClient(ctx context.Context, id broker.ClientID) error {
	err := o.update(ctx, func(tx *Tx) error {
		if _, err := tx.Q.Exec(ctx, `DELETE FROM oauth_requests WHERE client_id = $1`, id); err != nil {
			return tx.err(err)
		}
		err := tx.execOne(ctx, `DELETE FROM clients WHERE id = $1`, id)
		if errors.Is(err, broker.ErrNotFound) {
			err = tx.execOne(ctx, `DELETE FROM oauth_regulator_clients WHERE id = $1`, id)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("delete client %s: %w", id, err)
	}
	return nil
}

// Cleanup deletes requests, jtis, DPoP proofs, login failures and initial
// access tokens that expired by now, returning how many rows went.
func (o *OAuth) Cleanup(ctx context.Context, now time.Time) (int64, error) {
	var total int64
	err := o.update(ctx, func(tx *Tx) error {
		total = 0
		for _, table := range []string{"oauth_requests", "oauth_jtis", "oauth_dpop_proofs", "oauth_login_failures", "oauth_initial_access_tokens"} {
			n, err := tx.Q.Exec(ctx, `DELETE FROM `+table+` WHERE expires_at <= $1`, tx.t(now))
			if err != nil {
				return fmt.Errorf("%s: %w", table, tx.err(err))
			}
			total += n
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("oauth cleanup: %w", err)
	}
	return total, nil
}

const regulatorClientColumns = `id, regulator_id, name, jwks, jwks_uri, status, created_at, token_endpoint_auth_signing_alg`

// CreateRegulatorClient stores an OAuth client of a regulator (c.FirmID
// is ignored); broker.ErrNotFound if the regulator does not exist.
func (o *OAuth) CreateRegulatorClient(ctx context.Context, reg broker.RegulatorID, c broker.Client) error {
	err := o.update(ctx, func(tx *Tx) error {
		var jwks any
		if len(c.JWKS) > 0 {
			jwks = string(c.JWKS)
		}
		_, err := tx.Q.Exec(ctx, `INSERT INTO oauth_regulator_clients (`+regulatorClientColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			c.ID, reg, c.Name, jwks, c.JWKSURI, string(c.Status), tx.t(c.CreatedAt), c.TokenEndpointAuthSigningAlg)
		return tx.err(err)
	})
	if err != nil {
		return fmt.Errorf("create regulator client %s: %w", c.ID, err)
	}
	return nil
}

// GetRegulatorClient returns a regulator's client; broker.ErrNotFound if
// id is not one.
func (o *OAuth) GetRegulatorClient(ctx context.Context, id broker.ClientID) (broker.RegulatorID, broker.Client, error) {
	var reg string
	var c broker.Client
	err := o.view(ctx, func(tx *Tx) error {
		return newScanner(tx.D).str((*string)(&c.ID)).str(&reg).str(&c.Name).bytes(&c.JWKS).str(&c.JWKSURI).str((*string)(&c.Status)).time(&c.CreatedAt).str(&c.TokenEndpointAuthSigningAlg).
			from(tx.Q.QueryRow(ctx, `SELECT `+regulatorClientColumns+` FROM oauth_regulator_clients WHERE id = $1`, id))
	})
	if err != nil {
		return "", broker.Client{}, fmt.Errorf("get regulator client %s: %w", id, err)
	}
	return broker.RegulatorID(reg), c, nil
}
