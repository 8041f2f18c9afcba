package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/stewardhq/steward/broker"
)

// Source reads the files of a log laid out as c2sp.org/tlog-tiles:
// "checkpoint", "tile/0/000", "tile/entries/x001/234.p/7" and so on.
type Source interface {
	// Fetch returns the file at path. It MUST return an error wrapping
	// broker.ErrNotFound when the log has no such file, and another error
	// when it could not find out.
	Fetch(ctx context.Context, path string) ([]byte, error)
}

var (
	_ Source = HTTPSource{}
	_ Source = DirSource("")
)

// maxFetch bounds one file: a full entry bundle of maximal entries.
const maxFetch = 256 * (2 + broker.MaxEntryBytes)

// HTTPSource reads a log served over HTTP, such as Steward's
// ledger.Handler or any other tlog-tiles log.
type HTTPSource struct {
	// BaseURL is the log's prefix, e.g. "https://steward.example/ledger/".
	BaseURL string
	// Client is the HTTP client to use; nil means http.DefaultClient.
	Client *http.Client
}

// Fetch implements Source.
func (s HTTPSource) Fetch(ctx context.Context, path string) ([]byte, error) {
	c := s.Client
	if c == nil {
		c = http.DefaultClient
	}
	u := strings.TrimSuffix(s.BaseURL, "/") + "/" + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", u, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", u, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("fetch %s: %w", u, broker.ErrNotFound)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("fetch %s: %s", u, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxFetch+1))
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", u, err)
	}
	if len(b) > maxFetch {
		return nil, fmt.Errorf("fetch %s: more than %d bytes", u, maxFetch)
	}
	return b, nil
}

// DirSource reads a log exported to a directory by ledger.Export (or
// mirrored by any tlog-tiles tool).
type DirSource string

// Fetch implements Source.
func (d DirSource) Fetch(ctx context.Context, path string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !fs.ValidPath(path) {
		return nil, fmt.Errorf("%w: path %q", broker.ErrInvalid, path)
	}
	b, err := os.ReadFile(filepath.Join(string(d), filepath.FromSlash(path)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", path, broker.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}
