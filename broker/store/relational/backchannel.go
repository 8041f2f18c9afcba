package relational

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
)

func (tx *Tx) CreateShareCode(ctx context.Context, c store.ShareCode) error {
	_, err := tx.Q.Exec(ctx, `INSERT INTO share_codes (code_hash, customer_id, created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5)`,
		c.Hash, c.CustomerID, tx.t(c.CreatedAt), tx.t(c.ExpiresAt), tx.nt(c.UsedAt))
	if err != nil {
		return fmt.Errorf("create share code: %w", tx.err(err))
	}
	return nil
}

func (tx *Tx) GetShareCode(ctx context.Context, hash string) (store.ShareCode, error) {
	lock := ""
	if tx.Writable {
		lock = tx.D.LockSuffix
	}
	var c store.ShareCode
	err := newScanner(tx.D).str(&c.Hash).str((*string)(&c.CustomerID)).time(&c.CreatedAt).time(&c.ExpiresAt).time(&c.UsedAt).
		from(tx.Q.QueryRow(ctx, `SELECT code_hash, customer_id, created_at, expires_at, used_at FROM share_codes WHERE code_hash = $1`+lock, hash))
	if err != nil {
		return store.ShareCode{}, fmt.Errorf("get share code: %w", err)
	}
	return c, nil
}

func (tx *Tx) UseShareCode(ctx context.Context, hash string, at time.Time) error {
	if err := tx.execOne(ctx, `UPDATE share_codes SET used_at = $2 WHERE code_hash = $1 AND used_at IS NULL`, hash, tx.t(at)); err != nil {
		return fmt.Errorf("use share code: %w", err)
	}
	return nil
}

const backchannelColumns = `id, auth_req_hash, client_id, firm_id, customer_id, consent_id, state, requested, granted, binding_message,
notification_token, reasons, interval_seconds, created_at, expires_at, last_polled_at, decided_at`

func scanBackchannel(s *scanner, r *store.BackchannelRequest) *scanner {
	var requested, granted string
	var interval int
	s.str(&r.ID).str(&r.AuthReqHash).str((*string)(&r.ClientID)).str((*string)(&r.FirmID)).str((*string)(&r.CustomerID)).
		str((*string)(&r.ConsentID)).str((*string)(&r.State)).str(&requested).str(&granted).str(&r.BindingMessage).
		str(&r.NotificationToken).json(&r.Reasons).num(&interval).time(&r.CreatedAt).time(&r.ExpiresAt).time(&r.LastPolledAt).time(&r.DecidedAt)
	s.after = append(s.after, func() error {
		r.Requested = json.RawMessage(requested)
		if granted != "" {
			r.Granted = json.RawMessage(granted)
		}
		r.Interval = time.Duration(interval) * time.Second
		return nil
	})
	return s
}

func (tx *Tx) CreateBackchannelRequest(ctx context.Context, r store.BackchannelRequest) error {
	reasons := r.Reasons
	if reasons == nil {
		reasons = []string{}
	}
	rs, err := jsonText(reasons)
	if err != nil {
		return err
	}
	_, err = tx.Q.Exec(ctx, `INSERT INTO backchannel_requests (`+backchannelColumns+`)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`,
		r.ID, r.AuthReqHash, r.ClientID, r.FirmID, r.CustomerID, r.ConsentID, string(r.State), string(r.Requested), string(r.Granted),
		r.BindingMessage, r.NotificationToken, rs, int(r.Interval/time.Second), tx.t(r.CreatedAt), tx.t(r.ExpiresAt),
		tx.nt(r.LastPolledAt), tx.nt(r.DecidedAt))
	if err != nil {
		return fmt.Errorf("create backchannel request %s: %w", r.ID, tx.err(err))
	}
	return nil
}

func (tx *Tx) getBackchannel(ctx context.Context, where string, arg string) (store.BackchannelRequest, error) {
	lock := ""
	if tx.Writable {
		lock = tx.D.LockSuffix
	}
	var r store.BackchannelRequest
	err := scanBackchannel(newScanner(tx.D), &r).from(tx.Q.QueryRow(ctx, `SELECT `+backchannelColumns+` FROM backchannel_requests WHERE `+where+` = $1`+lock, arg))
	return r, err
}

func (tx *Tx) GetBackchannelRequest(ctx context.Context, id string) (store.BackchannelRequest, error) {
	r, err := tx.getBackchannel(ctx, "id", id)
	if err != nil {
		return r, fmt.Errorf("get backchannel request %s: %w", id, err)
	}
	return r, nil
}

func (tx *Tx) GetBackchannelRequestByHash(ctx context.Context, authReqHash string) (store.BackchannelRequest, error) {
	r, err := tx.getBackchannel(ctx, "auth_req_hash", authReqHash)
	if err != nil {
		return r, fmt.Errorf("get backchannel request: %w", err)
	}
	return r, nil
}

func (tx *Tx) UpdateBackchannelRequest(ctx context.Context, r store.BackchannelRequest, from store.BackchannelState) error {
	n, err := tx.Q.Exec(ctx, `UPDATE backchannel_requests SET state = $3, granted = $4, interval_seconds = $5, last_polled_at = $6, decided_at = $7
WHERE id = $1 AND state = $2`, r.ID, string(from), string(r.State), string(r.Granted), int(r.Interval/time.Second), tx.nt(r.LastPolledAt), tx.nt(r.DecidedAt))
	if err != nil {
		return fmt.Errorf("update backchannel request %s: %w", r.ID, tx.err(err))
	}
	if n == 0 {
		return fmt.Errorf("update backchannel request %s: not %s: %w", r.ID, from, broker.ErrConflict)
	}
	return nil
}

func (tx *Tx) ListBackchannelRequests(ctx context.Context, customer broker.CustomerID, state store.BackchannelState, now time.Time) ([]store.BackchannelRequest, error) {
	var out []store.BackchannelRequest
	err := queryAll(ctx, tx, `SELECT `+backchannelColumns+` FROM backchannel_requests
WHERE customer_id = $1 AND state = $2 AND expires_at > $3 ORDER BY created_at, id LIMIT 100`, []any{customer, string(state), tx.t(now)},
		func(s *scanner) (*scanner, func()) {
			var r store.BackchannelRequest
			return scanBackchannel(s, &r), func() { out = append(out, r) }
		})
	if err != nil {
		return nil, fmt.Errorf("list backchannel requests: %w", err)
	}
	return out, nil
}

func (tx *Tx) DeleteExpiredBackchannel(ctx context.Context, now time.Time) (int64, error) {
	var total int64
	for _, q := range []string{`DELETE FROM share_codes WHERE expires_at <= $1`, `DELETE FROM backchannel_requests WHERE expires_at <= $1`} {
		n, err := tx.Q.Exec(ctx, q, tx.t(now))
		if err != nil {
			return total, fmt.Errorf("delete expired backchannel rows: %w", tx.err(err))
		}
		total += n
	}
	return total, nil
}

func (tx *Tx) ListLapsedBackchannelRequests(ctx context.Context, now time.Time, limit int) ([]store.BackchannelRequest, error) {
	var out []store.BackchannelRequest
	err := queryAll(ctx, tx, `SELECT `+backchannelColumns+` FROM backchannel_requests
WHERE state = 'pending' AND expires_at <= $1 ORDER BY expires_at, id LIMIT $2`, []any{tx.t(now), store.Page{Limit: limit}.N()},
		func(s *scanner) (*scanner, func()) {
			var r store.BackchannelRequest
			return scanBackchannel(s, &r), func() { out = append(out, r) }
		})
	if err != nil {
		return nil, fmt.Errorf("list lapsed backchannel requests: %w", err)
	}
	return out, nil
}
