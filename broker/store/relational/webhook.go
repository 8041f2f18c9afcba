package relational

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
)

const webhookColumns = `id, firm_id, url, event_type, payload, state, attempts, next_attempt_at, last_error, created_at, delivered_at`

func scanWebhook(s *scanner, d *broker.WebhookDelivery) *scanner {
	var payload string
	s.str(&d.ID).str((*string)(&d.FirmID)).str(&d.URL).str(&d.EventType).str(&payload).str((*string)(&d.State)).num(&d.Attempts).
		time(&d.NextAttemptAt).str(&d.LastError).time(&d.CreatedAt).time(&d.DeliveredAt)
	s.after = append(s.after, func() error { d.Payload = []byte(payload); return nil })
	return s
}

func (tx *Tx) EnqueueWebhook(ctx context.Context, d broker.WebhookDelivery) error {
	if d.State == "" {
		d.State = broker.WebhookPending
	}
	_, err := tx.Q.Exec(ctx, `INSERT INTO webhook_deliveries (`+webhookColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		d.ID, d.FirmID, d.URL, d.EventType, string(d.Payload), string(d.State), d.Attempts, tx.t(d.NextAttemptAt), d.LastError,
		tx.t(d.CreatedAt), tx.nt(d.DeliveredAt))
	if err != nil {
		return fmt.Errorf("enqueue webhook %s: %w", d.ID, tx.err(err))
	}
	return nil
}

func (tx *Tx) ClaimWebhooks(ctx context.Context, now time.Time, limit int, lease time.Duration) ([]broker.WebhookDelivery, error) {
	if err := tx.mustWrite("claim webhooks"); err != nil {
		return nil, err
	}
	var out []broker.WebhookDelivery
	err := queryAll(ctx, tx, `SELECT `+webhookColumns+` FROM webhook_deliveries
WHERE state = 'pending' AND next_attempt_at <= $1 AND (locked_until IS NULL OR locked_until <= $1)
ORDER BY next_attempt_at, id LIMIT $2`+tx.D.SkipLockedSuffix, []any{tx.t(now), store.Page{Limit: limit}.N()},
		func(s *scanner) (*scanner, func()) {
			var d broker.WebhookDelivery
			return scanWebhook(s, &d), func() { out = append(out, d) }
		})
	if err != nil {
		return nil, fmt.Errorf("claim webhooks: %w", err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	args := []any{tx.t(now.Add(lease))}
	for _, d := range out {
		args = append(args, d.ID)
	}
	in := strings.Trim(placeholders(2, 1, len(out)), "()")
	if _, err := tx.Q.Exec(ctx, `UPDATE webhook_deliveries SET locked_until = $1 WHERE id IN (`+in+`)`, args...); err != nil {
		return nil, fmt.Errorf("lease %d webhooks: %w", len(out), tx.err(err))
	}
	return out, nil
}

func (tx *Tx) FinishWebhook(ctx context.Context, d broker.WebhookDelivery) error {
	err := tx.execOne(ctx, `UPDATE webhook_deliveries SET state = $1, attempts = $2, next_attempt_at = $3, last_error = $4,
delivered_at = $5, locked_until = NULL WHERE id = $6 AND state = 'pending'`,
		string(d.State), d.Attempts, tx.t(d.NextAttemptAt), d.LastError, tx.nt(d.DeliveredAt), d.ID)
	if err != nil {
		return fmt.Errorf("finish webhook %s: %w", d.ID, err)
	}
	return nil
}

func (tx *Tx) ListWebhooks(ctx context.Context, state broker.WebhookState, p store.Page) ([]broker.WebhookDelivery, error) {
	q := `SELECT ` + webhookColumns + ` FROM webhook_deliveries WHERE id > $1`
	args := []any{p.After}
	if state != "" {
		args = append(args, string(state))
		q += ` AND state = $2`
	}
	args = append(args, p.N())
	q += fmt.Sprintf(` ORDER BY id LIMIT $%d`, len(args))
	var out []broker.WebhookDelivery
	err := queryAll(ctx, tx, q, args, func(s *scanner) (*scanner, func()) {
		var d broker.WebhookDelivery
		return scanWebhook(s, &d), func() { out = append(out, d) }
	})
	if err != nil {
		return nil, fmt.Errorf("list webhooks: %w", err)
	}
	return out, nil
}
