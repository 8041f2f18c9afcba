package relational

import (
	"context"
	"fmt"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
)

const customerColumns = `id, handle, display_name, email, jurisdiction, minor, password_hash, created_at`

func scanCustomer(s *scanner, c *broker.Customer) *scanner {
	return s.str((*string)(&c.ID)).str(&c.Handle).str(&c.DisplayName).str(&c.Email).
		str(&c.Jurisdiction).flag(&c.Minor).str(&c.PasswordHash).time(&c.CreatedAt)
}

const insertCustomerSQL = `INSERT INTO customers (` + customerColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`

func (tx *Tx) CreateCustomer(ctx context.Context, c broker.Customer) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("create customer: %w", err)
	}
	_, err := tx.Q.Exec(ctx, insertCustomerSQL, c.ID, c.Handle, c.DisplayName, c.Email, c.Jurisdiction, c.Minor, c.PasswordHash, tx.t(c.CreatedAt))
	if err != nil {
		return fmt.Errorf("create customer %s: %w", c.Handle, tx.err(err))
	}
	return nil
}

func (tx *Tx) getCustomer(ctx context.Context, where string, arg any) (broker.Customer, error) {
	var c broker.Customer
	err := scanCustomer(newScanner(tx.D), &c).from(tx.Q.QueryRow(ctx, `SELECT `+customerColumns+` FROM customers WHERE `+where+` = $1`, arg))
	return c, err
}

func (tx *Tx) GetCustomer(ctx context.Context, id broker.CustomerID) (broker.Customer, error) {
	c, err := tx.getCustomer(ctx, "id", id)
	if err != nil {
		return c, fmt.Errorf("get customer %s: %w", id, err)
	}
	return c, nil
}

func (tx *Tx) GetCustomerByHandle(ctx context.Context, handle string) (broker.Customer, error) {
	c, err := tx.getCustomer(ctx, "handle", handle)
	if err != nil {
		return c, fmt.Errorf("get customer %q: %w", handle, err)
	}
	return c, nil
}

func (tx *Tx) ListCustomers(ctx context.Context, p store.Page) ([]broker.Customer, error) {
	var out []broker.Customer
	err := queryAll(ctx, tx, `SELECT `+customerColumns+` FROM customers WHERE id > $1 ORDER BY id LIMIT $2`, []any{p.After, p.N()},
		func(s *scanner) (*scanner, func()) {
			var c broker.Customer
			return scanCustomer(s, &c), func() { out = append(out, c) }
		})
	if err != nil {
		return nil, fmt.Errorf("list customers: %w", err)
	}
	return out, nil
}

const firmColumns = `id, legal_name, sector, jurisdiction, status, webhook_url, created_at, updated_at`

func scanFirm(s *scanner, f *broker.Firm) *scanner {
	return s.str((*string)(&f.ID)).str(&f.LegalName).str(&f.Sector).str(&f.Jurisdiction).
		str((*string)(&f.Status)).str(&f.WebhookURL).time(&f.CreatedAt).time(&f.UpdatedAt)
}

func (tx *Tx) CreateFirm(ctx context.Context, f broker.Firm) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("create firm: %w", err)
	}
	_, err := tx.Q.Exec(ctx, `INSERT INTO firms (`+firmColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		f.ID, f.LegalName, f.Sector, f.Jurisdiction, string(f.Status), f.WebhookURL, tx.t(f.CreatedAt), tx.t(f.UpdatedAt))
	if err != nil {
		return fmt.Errorf("create firm %s: %w", f.ID, tx.err(err))
	}
	return nil
}

func (tx *Tx) getFirm(ctx context.Context, id broker.FirmID, lock string) (broker.Firm, error) {
	var f broker.Firm
	err := scanFirm(newScanner(tx.D), &f).from(tx.Q.QueryRow(ctx, `SELECT `+firmColumns+` FROM firms WHERE id = $1`+lock, id))
	if err != nil {
		return f, fmt.Errorf("get firm %s: %w", id, err)
	}
	return f, nil
}

func (tx *Tx) GetFirm(ctx context.Context, id broker.FirmID) (broker.Firm, error) {
	return tx.getFirm(ctx, id, "")
}

func (tx *Tx) ListFirms(ctx context.Context, p store.Page) ([]broker.Firm, error) {
	var out []broker.Firm
	err := queryAll(ctx, tx, `SELECT `+firmColumns+` FROM firms WHERE id > $1 ORDER BY id LIMIT $2`, []any{p.After, p.N()},
		func(s *scanner) (*scanner, func()) {
			var f broker.Firm
			return scanFirm(s, &f), func() { out = append(out, f) }
		})
	if err != nil {
		return nil, fmt.Errorf("list firms: %w", err)
	}
	return out, nil
}

func (tx *Tx) SetFirmStatus(ctx context.Context, id broker.FirmID, status broker.FirmStatus, at time.Time) (broker.Firm, error) {
	if err := tx.mustWrite("set firm status"); err != nil {
		return broker.Firm{}, err
	}
	f, err := tx.getFirm(ctx, id, tx.D.LockSuffix)
	if err != nil {
		return f, err
	}
	if !f.Status.CanMoveTo(status) {
		return f, fmt.Errorf("firm %s: %w: %s → %s", id, broker.ErrTransition, f.Status, status)
	}
	if err := tx.execOne(ctx, `UPDATE firms SET status = $1, updated_at = $2 WHERE id = $3`, string(status), tx.t(at), id); err != nil {
		return f, fmt.Errorf("set firm %s status: %w", id, err)
	}
	f.Status, f.UpdatedAt = status, T(at)
	return f, nil
}

func (tx *Tx) SetFirmWebhook(ctx context.Context, id broker.FirmID, url string, at time.Time) (broker.Firm, error) {
	if err := broker.CheckWebhookURL(url); err != nil {
		return broker.Firm{}, err
	}
	if err := tx.execOne(ctx, `UPDATE firms SET webhook_url = $1, updated_at = $2 WHERE id = $3`, url, tx.t(at), id); err != nil {
		return broker.Firm{}, fmt.Errorf("set firm %s webhook: %w", id, err)
	}
	return tx.getFirm(ctx, id, "")
}

const clientColumns = `id, firm_id, name, redirect_uris, jwks, jwks_uri, status, created_at, token_endpoint_auth_signing_alg`

func scanClient(s *scanner, c *broker.Client) *scanner {
	return s.str((*string)(&c.ID)).str((*string)(&c.FirmID)).str(&c.Name).json(&c.RedirectURIs).
		bytes(&c.JWKS).str(&c.JWKSURI).str((*string)(&c.Status)).time(&c.CreatedAt).str(&c.TokenEndpointAuthSigningAlg)
}

func (tx *Tx) CreateClient(ctx context.Context, c broker.Client) error {
	uris, err := jsonText(c.RedirectURIs)
	if err != nil {
		return err
	}
	var jwks any
	if len(c.JWKS) > 0 {
		jwks = string(c.JWKS)
	}
	_, err = tx.Q.Exec(ctx, `INSERT INTO clients (`+clientColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		c.ID, c.FirmID, c.Name, uris, jwks, c.JWKSURI, string(c.Status), tx.t(c.CreatedAt), c.TokenEndpointAuthSigningAlg)
	if err != nil {
		return fmt.Errorf("create client %s: %w", c.ID, tx.err(err))
	}
	return nil
}

func (tx *Tx) GetClient(ctx context.Context, id broker.ClientID) (broker.Client, error) {
	var c broker.Client
	err := scanClient(newScanner(tx.D), &c).from(tx.Q.QueryRow(ctx, `SELECT `+clientColumns+` FROM clients WHERE id = $1`, id))
	if err != nil {
		return c, fmt.Errorf("get client %s: %w", id, err)
	}
	return c, nil
}

func (tx *Tx) ListClients(ctx context.Context, firm broker.FirmID) ([]broker.Client, error) {
	var out []broker.Client
	err := queryAll(ctx, tx, `SELECT `+clientColumns+` FROM clients WHERE firm_id = $1 ORDER BY id`, []any{firm},
		func(s *scanner) (*scanner, func()) {
			var c broker.Client
			return scanClient(s, &c), func() { out = append(out, c) }
		})
	if err != nil {
		return nil, fmt.Errorf("list clients of %s: %w", firm, err)
	}
	return out, nil
}

func (tx *Tx) CreateRegulator(ctx context.Context, r broker.Regulator) error {
	_, err := tx.Q.Exec(ctx, `INSERT INTO regulators (id, name, jurisdiction, created_at) VALUES ($1, $2, $3, $4)`,
		r.ID, r.Name, r.Jurisdiction, tx.t(r.CreatedAt))
	if err != nil {
		return fmt.Errorf("create regulator %s: %w", r.ID, tx.err(err))
	}
	return nil
}

func (tx *Tx) ListRegulators(ctx context.Context) ([]broker.Regulator, error) {
	var out []broker.Regulator
	err := queryAll(ctx, tx, `SELECT id, name, jurisdiction, created_at FROM regulators ORDER BY id`, nil,
		func(s *scanner) (*scanner, func()) {
			var r broker.Regulator
			return s.str((*string)(&r.ID)).str(&r.Name).str(&r.Jurisdiction).time(&r.CreatedAt), func() { out = append(out, r) }
		})
	if err != nil {
		return nil, fmt.Errorf("list regulators: %w", err)
	}
	return out, nil
}
