package firmclient

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
)

// Customer is a scripted customer's browser: it logs in on Steward's login
// page and answers the consent screen, as tests and the load harness need.
type Customer struct {
	Base             string
	Handle, Password string
	http             *http.Client
}

// NewCustomer returns a browser with an empty cookie jar.
func NewCustomer(base, handle, password string) *Customer {
	jar, _ := cookiejar.New(nil)
	return &Customer{Base: strings.TrimSuffix(base, "/"), Handle: handle, Password: password,
		http: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (c *Customer) do(ctx context.Context, method, u string, form url.Values) (*http.Response, string, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, "", err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func csrf(page string) (string, error) {
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		return "", fmt.Errorf("no CSRF token on the page")
	}
	return m[1], nil
}

// Approve follows authURL (from Client.PAR), logs in if asked, approves
// the consent screen keeping only the categories in tick (of the first
// authorization detail), and returns the code from the redirect back to
// the firm.
func (c *Customer) Approve(ctx context.Context, authURL string, tick ...string) (string, error) {
	resp, _, err := c.do(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return "", err
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		return "", fmt.Errorf("authorize: %d", resp.StatusCode)
	}
	if code := loc.Query().Get("code"); code != "" {
		return code, nil // already decided (a standing allow in the customer's terms)
	}
	interaction := loc.Query().Get("interaction")
	if loc.Path == "/oauth/login" {
		_, page, err := c.do(ctx, http.MethodGet, loc.String(), nil)
		if err != nil {
			return "", err
		}
		tok, err := csrf(page)
		if err != nil {
			return "", err
		}
		resp, body, err := c.do(ctx, http.MethodPost, c.Base+"/oauth/login", url.Values{"csrf": {tok}, "interaction": {interaction},
			"handle": {c.Handle}, "password": {c.Password}})
		if err != nil {
			return "", err
		}
		if resp.StatusCode != http.StatusSeeOther {
			return "", fmt.Errorf("login: %d %s", resp.StatusCode, body)
		}
	}
	resp, page, err := c.do(ctx, http.MethodGet, c.Base+"/oauth/consent?interaction="+url.QueryEscape(interaction), nil)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("consent page: %d %s", resp.StatusCode, page)
	}
	tok, err := csrf(page)
	if err != nil {
		return "", err
	}
	resp, body, err := c.do(ctx, http.MethodPost, c.Base+"/oauth/consent", url.Values{"csrf": {tok}, "interaction": {interaction},
		"decision": {"approve"}, "category.0": tick})
	if err != nil {
		return "", err
	}
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusSeeOther || back.Query().Get("code") == "" {
		return "", fmt.Errorf("consent: %d %s, Location %q", resp.StatusCode, body, resp.Header.Get("Location"))
	}
	return back.Query().Get("code"), nil
}
