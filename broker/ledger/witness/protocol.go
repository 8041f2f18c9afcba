package witness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/ledger"
	"golang.org/x/mod/sumdb/tlog"
)

// maxRequest bounds an add-checkpoint request: a checkpoint with a few
// cosignatures and a consistency proof of at most 63 hashes.
const maxRequest = 16 << 10

// Log keys, kept constant so dashboards can rely on them.
const (
	logKeyError  = "error"
	logKeySize   = "size"
	logKeyStatus = "status"
)

// sizeContentType is the media type of a 409 response body.
const sizeContentType = "text/x.tlog.size"

// MarshalAddCheckpoint encodes a c2sp.org/tlog-witness add-checkpoint
// request body: "old <size>", one base64 proof hash per line, an empty
// line, then the checkpoint note.
func MarshalAddCheckpoint(oldSize int64, proof tlog.TreeProof, checkpoint []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "old %d\n", oldSize)
	for _, h := range proof {
		b.WriteString(base64.StdEncoding.EncodeToString(h[:]))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.Write(checkpoint)
	return b.Bytes()
}

// ParseAddCheckpoint decodes an add-checkpoint request body.
func ParseAddCheckpoint(body []byte) (oldSize int64, proof tlog.TreeProof, checkpoint []byte, err error) {
	bad := func(what string) error { return fmt.Errorf("%w: add-checkpoint request: %s", broker.ErrInvalid, what) }
	head, checkpoint, ok := bytes.Cut(body, []byte("\n\n"))
	if !ok {
		return 0, nil, nil, bad("no empty line before the checkpoint")
	}
	lines := strings.Split(string(head), "\n")
	s, ok := strings.CutPrefix(lines[0], "old ")
	if !ok {
		return 0, nil, nil, bad("first line is not \"old <size>\"")
	}
	oldSize, err = strconv.ParseInt(s, 10, 64)
	if err != nil || oldSize < 0 || strconv.FormatInt(oldSize, 10) != s {
		return 0, nil, nil, bad("old size")
	}
	if len(lines)-1 > 63 {
		return 0, nil, nil, bad("too many proof lines")
	}
	for _, l := range lines[1:] {
		h, err := base64.StdEncoding.Strict().DecodeString(l)
		if err != nil || len(h) != tlog.HashSize {
			return 0, nil, nil, bad("proof line is not a base64 hash")
		}
		proof = append(proof, tlog.Hash(h))
	}
	return oldSize, proof, checkpoint, nil
}

// Handler serves the witness's add-checkpoint endpoint (POST; mount it at
// "<prefix>add-checkpoint"), answering as c2sp.org/tlog-witness says:
// 200 with the cosignature line, 409 with the last cosigned size, 404 for
// an unknown log, 403 for a bad log signature, 422 for a bad proof.
func Handler(w *Witness, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.MaxBytesHandler(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			rw.Header().Set("Allow", http.MethodPost)
			http.Error(rw, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(rw, "request too large", http.StatusRequestEntityTooLarge)
			return
		}
		old, proof, cp, err := ParseAddCheckpoint(body)
		if err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		text := cp
		if i := bytes.Index(cp, []byte("\n\n")); i >= 0 {
			text = cp[:i+1]
		}
		if c, err := ledger.ParseCheckpoint(text); err != nil || c.Size < old {
			http.Error(rw, "malformed checkpoint, or old size beyond it", http.StatusBadRequest)
			return
		}
		line, err := w.AddCheckpoint(r.Context(), old, proof, cp)
		if err != nil {
			writeError(rw, r, log, err)
			return
		}
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.Write(line)
	}), maxRequest)
}

// writeError is the one place the witness maps errors to statuses.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var conflict *ConflictError
	code, msg, lvl := http.StatusInternalServerError, "internal error", slog.LevelError
	switch {
	case errors.As(err, &conflict):
		log.LogAttrs(r.Context(), slog.LevelDebug, "add-checkpoint conflict", slog.Int64(logKeySize, conflict.Size))
		w.Header().Set("Content-Type", sizeContentType)
		w.WriteHeader(http.StatusConflict)
		fmt.Fprintf(w, "%d\n", conflict.Size)
		return
	case errors.Is(err, broker.ErrNotFound):
		code, msg, lvl = http.StatusNotFound, "unknown log", slog.LevelDebug
	case errors.Is(err, broker.ErrForbidden):
		code, msg, lvl = http.StatusForbidden, "bad log signature", slog.LevelWarn
	case errors.Is(err, broker.ErrInvalid):
		code, msg, lvl = http.StatusUnprocessableEntity, "checkpoint not consistent", slog.LevelWarn
	}
	log.LogAttrs(r.Context(), lvl, "add-checkpoint refused", slog.Int(logKeyStatus, code), slog.Any(logKeyError, err))
	http.Error(w, msg, code)
}

// Client submits checkpoints to one witness over HTTP.
type Client struct {
	// URL is the witness's add-checkpoint endpoint.
	URL string
	// HTTP is the client to use; nil means http.DefaultClient.
	HTTP *http.Client
}

// AddCheckpoint sends checkpoint to the witness and returns its
// cosignature line. A 409 answer comes back as a *ConflictError carrying
// the witness's last cosigned size.
func (c *Client) AddCheckpoint(ctx context.Context, oldSize int64, proof tlog.TreeProof, checkpoint []byte) ([]byte, error) {
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(MarshalAddCheckpoint(oldSize, proof, checkpoint)))
	if err != nil {
		return nil, fmt.Errorf("add-checkpoint %s: %w", c.URL, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("add-checkpoint %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRequest))
	if err != nil {
		return nil, fmt.Errorf("add-checkpoint %s: %w", c.URL, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		sc := bufio.NewScanner(bytes.NewReader(body))
		if !sc.Scan() || !strings.HasPrefix(sc.Text(), "— ") {
			return nil, fmt.Errorf("add-checkpoint %s: answer is not a signature line", c.URL)
		}
		return append([]byte(sc.Text()), '\n'), nil
	case http.StatusConflict:
		n, err := strconv.ParseInt(strings.TrimSpace(string(body)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("add-checkpoint %s: 409 without a size", c.URL)
		}
		return nil, &ConflictError{Size: n}
	default:
		return nil, fmt.Errorf("add-checkpoint %s: %s: %s", c.URL, resp.Status, strings.TrimSpace(string(body)))
	}
}
