package ledger

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/stewardhq/steward/broker"
)

// maxCosignedNote bounds a POSTed cosigned checkpoint: a checkpoint and a
// few dozen signature lines.
const maxCosignedNote = 16 << 10

// CosignatureConfig configures CosignatureHandler.
type CosignatureConfig struct {
	// VerifierKey is the log's public key in signed-note format. Required.
	VerifierKey string
	// WitnessKeys are the cosignature/v1 public keys (witness.GenerateKey)
	// of the witnesses whose cosignatures the log accepts. Required.
	WitnessKeys []string
	// Logger receives refusals (Debug) and failures (Error). Nil discards them.
	Logger *slog.Logger
}

// CosignatureAdder stores a witness cosignature; Storage implements it.
type CosignatureAdder interface {
	AddCosignature(ctx context.Context, size int64, witness string, line []byte) error
}

// CosignatureHandler receives cosignatures from witnesses that follow the
// log themselves (pull mode, such as `steward witness`), so that Handler
// serves the checkpoint with them appended. Mount it as a POST route,
// e.g. "POST /ledger/cosignature".
//
// The request body is a checkpoint note signed by the log, followed by one
// or more cosignature lines (c2sp.org/tlog-cosignature) from configured
// witnesses. Each cosignature that verifies is stored for the
// checkpoint's tree size; a later one from the same witness replaces the
// earlier. Answers: 204 stored; 400 malformed; 403 not signed by the log,
// or no valid cosignature by a configured witness; 413 too large.
//
// Nothing is trusted from the caller: the log's own signature proves the
// checkpoint is one the log published, and each witness's signature proves
// the witness vouched for it.
func CosignatureHandler(s CosignatureAdder, cfg CosignatureConfig) (http.Handler, error) {
	logKey, err := note.NewVerifier(cfg.VerifierKey)
	if err != nil {
		return nil, fmt.Errorf("%w: cosignature handler: log key: %v", broker.ErrInvalid, err)
	}
	if len(cfg.WitnessKeys) == 0 {
		return nil, fmt.Errorf("%w: cosignature handler needs at least one witness key", broker.ErrInvalid)
	}
	vs := []note.Verifier{logKey}
	witnesses := map[string]bool{}
	for _, k := range cfg.WitnessKeys {
		v, err := fnote.NewVerifierForCosignatureV1(k)
		if err != nil {
			return nil, fmt.Errorf("%w: cosignature handler: witness key %q: %v", broker.ErrInvalid, k, err)
		}
		if v.Name() == logKey.Name() {
			return nil, fmt.Errorf("%w: witness key %q has the log's name", broker.ErrInvalid, k)
		}
		vs = append(vs, v)
		witnesses[v.Name()] = true
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	known := note.VerifierList(vs...)
	h := func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "request too large", http.StatusRequestEntityTooLarge)
			return
		}
		n, err := storeCosignatures(r.Context(), s, known, logKey, witnesses, body)
		if err != nil {
			code, lvl := http.StatusInternalServerError, slog.LevelError
			switch {
			case errors.Is(err, broker.ErrInvalid):
				code, lvl = http.StatusBadRequest, slog.LevelDebug
			case errors.Is(err, broker.ErrForbidden):
				code, lvl = http.StatusForbidden, slog.LevelDebug
			}
			cfg.Logger.LogAttrs(r.Context(), lvl, "cosignature refused", slog.Int(cosigLogKeyStatus, code), slog.Any(logKeyError, err))
			w.Header().Set("Cache-Control", cacheNone)
			http.Error(w, http.StatusText(code), code)
			return
		}
		cfg.Logger.LogAttrs(r.Context(), slog.LevelDebug, "cosignatures stored", slog.Int(cosigLogKeyCount, n))
		w.WriteHeader(http.StatusNoContent)
	}
	return http.MaxBytesHandler(http.HandlerFunc(h), maxCosignedNote), nil
}

// Log keys of this handler.
const (
	cosigLogKeyStatus = "status"
	cosigLogKeyCount  = "count"
)

func storeCosignatures(ctx context.Context, s CosignatureAdder, known note.Verifiers, logKey note.Verifier, witnesses map[string]bool, body []byte) (int, error) {
	n, err := note.Open(body, known)
	if err != nil {
		var inv *note.InvalidSignatureError
		var unv *note.UnverifiedNoteError
		if errors.As(err, &inv) || errors.As(err, &unv) {
			return 0, fmt.Errorf("%w: %v", broker.ErrForbidden, err)
		}
		return 0, fmt.Errorf("%w: cosigned checkpoint: %v", broker.ErrInvalid, err)
	}
	logSigned := false
	var lines []note.Signature
	for _, sig := range n.Sigs {
		switch {
		case sig.Name == logKey.Name() && sig.Hash == logKey.KeyHash():
			logSigned = true
		case witnesses[sig.Name]:
			lines = append(lines, sig)
		}
	}
	if !logSigned {
		return 0, fmt.Errorf("%w: checkpoint is not signed by the log", broker.ErrForbidden)
	}
	if len(lines) == 0 {
		return 0, fmt.Errorf("%w: no valid cosignature by a known witness", broker.ErrForbidden)
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return 0, err
	}
	if c.Origin != logKey.Name() {
		return 0, fmt.Errorf("%w: checkpoint origin %q is not the log's", broker.ErrForbidden, c.Origin)
	}
	for _, sig := range lines {
		line := []byte("— " + sig.Name + " " + sig.Base64 + "\n")
		if err := s.AddCosignature(ctx, c.Size, sig.Name, line); err != nil {
			return 0, fmt.Errorf("store cosignature of %s for size %d: %w", sig.Name, c.Size, err)
		}
	}
	return len(lines), nil
}
