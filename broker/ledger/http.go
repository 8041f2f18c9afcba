package ledger

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/stewardhq/steward/broker"
	"golang.org/x/mod/sumdb/tlog"
)

// HandlerConfig configures Handler.
type HandlerConfig struct {
	// Prefix is where the log is mounted, starting and ending with '/',
	// e.g. "/ledger/". Empty means "/".
	Prefix string
	// VerifierKey is the log's public key in signed-note format, served
	// at <prefix>vkey. Required.
	VerifierKey string
	// Logger receives server-side failures. Nil discards them.
	Logger *slog.Logger
}

// Cache-Control values. Tiles and bundles never change once the tree has
// them; partial ones are replaced by wider ones, so clients should not
// keep them long.
const (
	cacheImmutable = "public, max-age=31536000, immutable"
	cachePartial   = "public, max-age=60"
	cacheNone      = "no-cache"
)

// Handler serves the log's public read API under cfg.Prefix:
//
//	GET <prefix>checkpoint                  latest checkpoint note with witness cosignatures (c2sp.org/tlog-tiles)
//	GET <prefix>vkey                        the log's verifier key
//	GET <prefix>tile/<L>/<N>[.p/<W>]        Merkle tile (c2sp.org/tlog-tiles)
//	GET <prefix>tile/entries/<N>[.p/<W>]    entry bundle (c2sp.org/tlog-tiles)
//	GET <prefix>entry/<i>[?tree_size=<n>]   entry i and its inclusion proof (JSON)
//	GET <prefix>proof/consistency?from=<m>[&to=<n>]   consistency proof (JSON)
//	GET <prefix>receipt/<leaf hash>         a broker.Receipt (JSON); hash in hex or URL-safe base64
//
// Sizes default to, and may not exceed, the latest checkpoint's.
func Handler(r Reader, cfg HandlerConfig) (http.Handler, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = "/"
	}
	if !strings.HasPrefix(cfg.Prefix, "/") || !strings.HasSuffix(cfg.Prefix, "/") {
		return nil, fmt.Errorf("%w: handler prefix %q must start and end with /", broker.ErrInvalid, cfg.Prefix)
	}
	if cfg.VerifierKey == "" {
		return nil, fmt.Errorf("%w: handler needs the verifier key", broker.ErrInvalid)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{r: r, cfg: cfg}
	mux := http.NewServeMux()
	p := cfg.Prefix
	mux.HandleFunc("GET "+p+"checkpoint", h.checkpoint)
	mux.HandleFunc("GET "+p+"vkey", h.vkey)
	mux.HandleFunc("GET "+p+"tile/{path...}", h.tile)
	mux.HandleFunc("GET "+p+"entry/{index}", h.entry)
	mux.HandleFunc("GET "+p+"proof/consistency", h.consistency)
	mux.HandleFunc("GET "+p+"receipt/{hash}", h.receipt)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		mux.ServeHTTP(w, r)
	}), nil
}

type handler struct {
	r   Reader
	cfg HandlerConfig
}

// writeError is the one place this surface maps errors to statuses.
func (h *handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code, msg, lvl := http.StatusInternalServerError, "internal error", slog.LevelError
	switch {
	case errors.Is(err, broker.ErrNotFound):
		code, msg, lvl = http.StatusNotFound, "not found", slog.LevelDebug
	case errors.Is(err, broker.ErrInvalid):
		code, msg, lvl = http.StatusBadRequest, "bad request", slog.LevelDebug
	}
	h.cfg.Logger.LogAttrs(r.Context(), lvl, "ledger request failed", slog.Int(logKeyStatus, code), slog.String(logKeyPath, r.URL.Path), slog.Any(logKeyError, err))
	w.Header().Set("Cache-Control", cacheNone)
	http.Error(w, msg, code)
}

// latest returns the latest checkpoint note and its size.
func latest(ctx context.Context, r Reader) (int64, []byte, error) {
	size, msg, err := r.ReadCheckpoint(ctx)
	if err != nil {
		return 0, nil, err
	}
	cosigs, err := r.ReadCosignatures(ctx, size)
	if err != nil {
		return 0, nil, err
	}
	return size, appendSignatures(msg, cosigs), nil
}

func (h *handler) checkpoint(w http.ResponseWriter, r *http.Request) {
	_, msg, err := latest(r.Context(), h.r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", cacheNone)
	w.Write(msg)
}

func (h *handler) vkey(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	fmt.Fprintln(w, h.cfg.VerifierKey)
}

func (h *handler) tile(w http.ResponseWriter, r *http.Request) {
	t, err := ParseTilePath("tile/" + r.PathValue("path"))
	if err != nil {
		h.writeError(w, r, fmt.Errorf("%w: %w", broker.ErrNotFound, err))
		return
	}
	size, _, err := h.r.ReadCheckpoint(r.Context())
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	data, err := ReadTile(r.Context(), h.r, size, t)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if t.Width == TileWidth {
		w.Header().Set("Cache-Control", cacheImmutable)
	} else {
		w.Header().Set("Cache-Control", cachePartial)
	}
	w.Write(data)
}

// EntryResponse is the JSON body of <prefix>entry/<i>.
type EntryResponse struct {
	Index    int64  `json:"index"`
	TreeSize int64  `json:"tree_size"`
	Entry    []byte `json:"entry"` // base64, standard encoding
	LeafHash string `json:"leaf_hash"`
	// Proof is the inclusion proof of the entry in the tree of TreeSize.
	Proof []string `json:"proof"`
	// Checkpoint is the latest checkpoint, given when tree_size was not.
	Checkpoint string `json:"checkpoint,omitempty"`
}

// ConsistencyResponse is the JSON body of <prefix>proof/consistency.
type ConsistencyResponse struct {
	From  int64    `json:"from"`
	To    int64    `json:"to"`
	Proof []string `json:"proof"`
}

// sizeParam parses an optional size query parameter, defaulting to def
// and refusing values beyond max.
func sizeParam(r *http.Request, name string, def, most int64) (int64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > most {
		return 0, fmt.Errorf("%w: %s %q must be a tree size from 0 to %d", broker.ErrInvalid, name, s, most)
	}
	return n, nil
}

func (h *handler) entry(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	latestSize, msg, err := latest(ctx, h.r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	idx, err := strconv.ParseInt(r.PathValue("index"), 10, 64)
	if err != nil || idx < 0 {
		h.writeError(w, r, fmt.Errorf("%w: entry index %q", broker.ErrInvalid, r.PathValue("index")))
		return
	}
	size, err := sizeParam(r, "tree_size", latestSize, latestSize)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if idx >= size {
		h.writeError(w, r, fmt.Errorf("entry %d in tree of size %d: %w", idx, size, broker.ErrNotFound))
		return
	}
	leaves, err := h.r.ReadLeaves(ctx, idx, 1)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	proof, err := InclusionProof(ctx, h.r, idx, size)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	lh := tlog.RecordHash(leaves[0])
	resp := EntryResponse{Index: idx, TreeSize: size, Entry: leaves[0], LeafHash: lh.String(), Proof: encodeHashes(proof)}
	if r.URL.Query().Get("tree_size") == "" {
		resp.Checkpoint = string(msg)
	}
	h.writeJSON(w, r, resp)
}

func (h *handler) consistency(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	latestSize, _, err := h.r.ReadCheckpoint(ctx)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	to, err := sizeParam(r, "to", latestSize, latestSize)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if r.URL.Query().Get("from") == "" {
		h.writeError(w, r, fmt.Errorf("%w: from is required", broker.ErrInvalid))
		return
	}
	from, err := sizeParam(r, "from", 0, to)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	proof, err := ConsistencyProof(ctx, h.r, from, to)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	h.writeJSON(w, r, ConsistencyResponse{From: from, To: to, Proof: encodeHashes(proof)})
}

func (h *handler) receipt(w http.ResponseWriter, r *http.Request) {
	b, err := parseLeafHash(r.PathValue("hash"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	rc, err := NewReceipt(r.Context(), h.r, tlog.Hash(b))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	h.writeJSON(w, r, rc)
}

// parseLeafHash accepts a leaf hash as 64 hex digits or URL-safe base64
// (padded or not): standard base64 may hold '/', which a path cannot.
func parseLeafHash(s string) ([]byte, error) {
	var b []byte
	var err error
	switch {
	case len(s) == 2*tlog.HashSize:
		b, err = hex.DecodeString(s)
	case strings.HasSuffix(s, "="):
		b, err = base64.URLEncoding.DecodeString(s)
	default:
		b, err = base64.RawURLEncoding.DecodeString(s)
	}
	if err != nil || len(b) != tlog.HashSize {
		return nil, fmt.Errorf("%w: leaf hash must be 64 hex digits or URL-safe base64", broker.ErrInvalid)
	}
	return b, nil
}

func (h *handler) writeJSON(w http.ResponseWriter, r *http.Request, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", cacheNone)
	w.Write(append(b, '\n'))
}

// Export writes the log as it stands at its latest checkpoint into dir,
// laid out as c2sp.org/tlog-tiles: every Merkle tile, every entry bundle,
// then the checkpoint (with cosignatures), and vkey if vkey is not empty.
// A directory exported this way is a tile source for ledger/verify.
func Export(ctx context.Context, r Reader, dir, vkey string) error {
	size, msg, err := latest(ctx, r)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	write := func(path string, data []byte) error {
		p := filepath.Join(dir, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, data, 0o644)
	}
	for _, t := range Tiles(size) {
		data, err := ReadTile(ctx, r, size, t)
		if err != nil {
			return fmt.Errorf("export %s: %w", t.Path(), err)
		}
		if err := write(t.Path(), data); err != nil {
			return fmt.Errorf("export %s: %w", t.Path(), err)
		}
	}
	if vkey != "" {
		if err := write("vkey", []byte(vkey+"\n")); err != nil {
			return fmt.Errorf("export vkey: %w", err)
		}
	}
	if err := write("checkpoint", msg); err != nil {
		return fmt.Errorf("export checkpoint: %w", err)
	}
	return nil
}
