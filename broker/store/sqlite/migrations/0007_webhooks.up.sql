-- Webhook outbox: a delivery is enqueued in the same transaction as the
-- event it announces (a revocation, a consent decision), then sent by a
-- worker with retries and backoff. Workers on several replicas lease rows
-- (locked_until) so each attempt is made by one of them.
CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    firm_id         TEXT NOT NULL REFERENCES firms(id),
    url             TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    locked_until    TIMESTAMP,
    last_error      TEXT NOT NULL DEFAULT '',
    created_at      TIMESTAMP NOT NULL,
    delivered_at    TIMESTAMP
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_state ON webhook_deliveries (state, id);

-- Where a firm receives its webhooks (https); empty: it polls instead.
ALTER TABLE firms ADD COLUMN webhook_url TEXT NOT NULL DEFAULT '';
