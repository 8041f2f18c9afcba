// Package witness is a transparency-log witness that a regulator runs
// beside Steward, and the log side that talks to it.
//
// A witness keeps, for each log it watches, the last checkpoint it
// cosigned. It cosigns a new checkpoint only if the log's signature is good
// and a consistency proof shows the new tree extends the old one; it never
// cosigns two different trees of the same size. Its cosignatures follow
// c2sp.org/tlog-cosignature (Ed25519 cosignature/v1, with a timestamp), so
// a client that trusts the witness's key knows the checkpoint it holds is
// the one everybody else sees: the log cannot show a regulator one history
// and a firm another.
//
// The witness speaks the c2sp.org/tlog-witness add-checkpoint protocol
// (Handler, Client). The log side pushes each new checkpoint to its
// witnesses and stores the cosignatures it gets back (Submitter), and
// ledger.Handler serves them appended to the checkpoint. A witness may also
// pull: Follower reads a log's checkpoint and tiles itself.
package witness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/ledger"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// GenerateKey returns a new witness key pair: the private key in
// signed-note format (keep secret) and the public key as an Ed25519
// cosignature/v1 verifier key (publish; logs and clients use it to check
// cosignatures). name is the witness's name, such as "witness.regulator.example".
func GenerateKey(name string) (skey, vkey string, err error) {
	skey, plain, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return "", "", fmt.Errorf("generate witness key %q: %w", name, err)
	}
	vkey, err = fnote.VKeyToCosignatureV1(plain)
	if err != nil {
		return "", "", fmt.Errorf("generate witness key %q: %w", name, err)
	}
	return skey, vkey, nil
}

// NewCosignatureVerifier returns a verifier for a witness's cosignatures
// from its public key (as returned by GenerateKey).
func NewCosignatureVerifier(vkey string) (note.Verifier, error) {
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		return nil, fmt.Errorf("%w: witness key: %v", broker.ErrInvalid, err)
	}
	return v, nil
}

// Config configures a Witness.
type Config struct {
	// Key is the witness's private key from GenerateKey. Required.
	Key string
	// Logs are the verifier keys of the logs to witness, in signed-note
	// format; each key's name is its log's origin. Required.
	Logs []string
	// StatePath is the JSON file where the witness keeps the last
	// checkpoint it cosigned for each log. It is rewritten before each
	// cosignature is returned. Empty keeps state in memory only, which is
	// fit for tests alone: a witness that forgets can be made to cosign a
	// fork.
	StatePath string
}

// Witness cosigns checkpoints of the logs it knows.
type Witness struct {
	signer note.Signer
	logs   map[string]note.Verifier
	path   string

	mu    sync.Mutex
	state map[string]logState
}

// logState is the last checkpoint cosigned for one log.
type logState struct {
	Size       int64     `json:"size"`
	Root       tlog.Hash `json:"root"`
	Checkpoint string    `json:"checkpoint"`
}

// New returns a witness.
func New(cfg Config) (*Witness, error) {
	signer, err := fnote.NewSignerForCosignatureV1(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: witness key: %v", broker.ErrInvalid, err)
	}
	if len(cfg.Logs) == 0 {
		return nil, fmt.Errorf("%w: witness config names no logs", broker.ErrInvalid)
	}
	w := &Witness{signer: signer, logs: map[string]note.Verifier{}, path: cfg.StatePath, state: map[string]logState{}}
	for _, k := range cfg.Logs {
		v, err := note.NewVerifier(k)
		if err != nil {
			return nil, fmt.Errorf("%w: log key %q: %v", broker.ErrInvalid, k, err)
		}
		w.logs[v.Name()] = v
	}
	if w.path != "" {
		b, err := os.ReadFile(w.path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("witness state: %w", err)
		default:
			if err := json.Unmarshal(b, &w.state); err != nil {
				return nil, fmt.Errorf("witness state %s: %w", w.path, err)
			}
		}
	}
	return w, nil
}

// Name returns the witness's name, the name on its cosignatures.
func (w *Witness) Name() string { return w.signer.Name() }

// ConflictError is returned by AddCheckpoint when the caller's idea of the last
// cosigned size is wrong. It wraps broker.ErrConflict.
type ConflictError struct {
	// Size is the size of the checkpoint the witness last cosigned.
	Size int64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("witness last cosigned size %d", e.Size)
}

func (e *ConflictError) Unwrap() error { return broker.ErrConflict }

// AddCheckpoint cosigns checkpoint, a signed note from a known log, if it extends
// the tree the witness last cosigned for that log: oldSize MUST be that
// tree's size and proof a consistency proof from it to the checkpoint's
// tree. It returns the cosignature line ("— <name> <base64>\n").
//
// Errors: broker.ErrNotFound for an unknown log; broker.ErrForbidden for a
// bad log signature; a *ConflictError (broker.ErrConflict) when oldSize is
// not the size last cosigned; broker.ErrInvalid when the proof fails or the
// checkpoint would fork or shrink the log.
func (w *Witness) AddCheckpoint(ctx context.Context, oldSize int64, proof tlog.TreeProof, checkpoint []byte) ([]byte, error) {
	text := checkpoint
	if i := bytes.Index(checkpoint, []byte("\n\n")); i >= 0 {
		text = checkpoint[:i+1]
	}
	unverified, err := ledger.ParseCheckpoint(text)
	if err != nil {
		return nil, err
	}
	logKey, ok := w.logs[unverified.Origin]
	if !ok {
		return nil, fmt.Errorf("log %q: %w", unverified.Origin, broker.ErrNotFound)
	}
	c, n, err := ledger.OpenCheckpoint(checkpoint, logKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", broker.ErrForbidden, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	last, seen := w.state[c.Origin]
	if !seen {
		last = logState{Size: 0, Root: ledger.EmptyRoot}
	}
	if oldSize != last.Size {
		return nil, &ConflictError{Size: last.Size}
	}
	if c.Size < oldSize {
		return nil, fmt.Errorf("%w: checkpoint size %d is below the cosigned size %d", broker.ErrInvalid, c.Size, oldSize)
	}
	if err := ledger.CheckConsistency(proof, last.Size, last.Root, c.Size, c.Hash); err != nil {
		return nil, fmt.Errorf("log %s: %w", c.Origin, err)
	}
	// Cosign the note text as the log signed it, extension lines and all.
	signed, err := note.Sign(&note.Note{Text: n.Text}, w.signer)
	if err != nil {
		return nil, fmt.Errorf("cosign %s@%d: %w", c.Origin, c.Size, err)
	}
	line := signed[bytes.LastIndex(signed[:len(signed)-1], []byte("\n"))+1:]
	next := map[string]logState{}
	for k, v := range w.state {
		next[k] = v
	}
	next[c.Origin] = logState{Size: c.Size, Root: c.Hash, Checkpoint: string(c.Text())}
	if err := w.save(next); err != nil {
		return nil, err
	}
	w.state = next
	return line, ctx.Err()
}

// Last returns the checkpoint body last cosigned for origin.
func (w *Witness) Last(origin string) (ledger.Checkpoint, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.state[origin]
	if !ok {
		return ledger.Checkpoint{}, false
	}
	return ledger.Checkpoint{Origin: origin, Size: s.Size, Hash: s.Root}, true
}

func (w *Witness) save(state map[string]logState) error {
	if w.path == "" {
		return nil
	}
	b, err := json.MarshalIndent(state, "", "  ")
	if err != nil {
		return fmt.Errorf("witness state: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(w.path), ".witness-state-*")
	if err != nil {
		return fmt.Errorf("witness state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("witness state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("witness state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("witness state: %w", err)
	}
	if err := os.Rename(tmp.Name(), w.path); err != nil {
		return fmt.Errorf("witness state: %w", err)
	}
	return nil
}
