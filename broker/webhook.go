package broker

import "time"

// WebhookState is where a webhook delivery stands.
type WebhookState string

const (
	WebhookPending   WebhookState = "pending"
	WebhookDelivered WebhookState = "delivered"
	// WebhookDead means every attempt failed; the delivery is on the
	// operator's dead-letter list.
	WebhookDead WebhookState = "dead"
)

// WebhookDelivery is one signed notification to a firm: its id is stable
// across retries, so a firm that receives it twice can tell.
type WebhookDelivery struct {
	ID            string       `json:"id"`
	FirmID        FirmID       `json:"firm_id"`
	URL           string       `json:"url"`
	EventType     string       `json:"event_type"`
	Payload       []byte       `json:"payload"`
	State         WebhookState `json:"state"`
	Attempts      int          `json:"attempts"`
	NextAttemptAt time.Time    `json:"next_attempt_at"`
	LastError     string       `json:"last_error,omitempty"`
	CreatedAt     time.Time    `json:"created_at"`
	DeliveredAt   time.Time    `json:"delivered_at,omitzero"`
}

// NewWebhookID returns a fresh delivery id.
func NewWebhookID() string { return newID("whk") }
