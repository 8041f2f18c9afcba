package witness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/ledger"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Adder is one witness as the log sees it: *Client reaches one over
// HTTP, and a *Witness in the same process is one.
type Adder interface {
	AddCheckpoint(ctx context.Context, oldSize int64, proof tlog.TreeProof, checkpoint []byte) ([]byte, error)
}

var (
	_ Adder = (*Client)(nil)
	_ Adder = (*Witness)(nil)
)

// Target is a witness a log submits its checkpoints to.
type Target struct {
	// Adder reaches the witness, usually a *Client.
	Adder Adder
	// VerifierKey is the witness's cosignature/v1 public key; cosignatures
	// that do not verify with it are dropped.
	VerifierKey string
}

// Submitter is the log side: it pushes each new checkpoint to witnesses and
// stores the cosignatures they return, which ledger.Handler then serves
// appended to the checkpoint.
type Submitter struct {
	s       ledger.Storage
	targets []target
}

type target struct {
	add      Adder
	verifier note.Verifier
	mu       sync.Mutex
	oldSize  int64 // what we believe the witness last cosigned
}

// NewSubmitter returns a Submitter for the log in s.
func NewSubmitter(s ledger.Storage, targets []Target) (*Submitter, error) {
	sub := &Submitter{s: s}
	for _, t := range targets {
		v, err := NewCosignatureVerifier(t.VerifierKey)
		if err != nil {
			return nil, err
		}
		sub.targets = append(sub.targets, target{add: t.Adder, verifier: v})
	}
	return sub, nil
}

// Submit sends the latest checkpoint to every witness once and stores the
// cosignatures. It returns the errors of the witnesses that failed, joined.
func (sub *Submitter) Submit(ctx context.Context) error {
	size, msg, err := sub.s.ReadCheckpoint(ctx)
	if err != nil {
		return fmt.Errorf("submit to witnesses: %w", err)
	}
	var errs []error
	for i := range sub.targets {
		if err := sub.submitOne(ctx, &sub.targets[i], size, msg); err != nil {
			errs = append(errs, fmt.Errorf("witness %s: %w", sub.targets[i].verifier.Name(), err))
		}
	}
	return errors.Join(errs...)
}

func (sub *Submitter) submitOne(ctx context.Context, t *target, size int64, msg []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var line []byte
	for attempt := 0; ; attempt++ {
		proof, err := ledger.ConsistencyProof(ctx, sub.s, min(t.oldSize, size), size)
		if err != nil {
			return err
		}
		line, err = t.add.AddCheckpoint(ctx, t.oldSize, proof, msg)
		var conflict *ConflictError
		if errors.As(err, &conflict) && attempt == 0 && conflict.Size <= size {
			t.oldSize = conflict.Size // the witness knows better; retry once
			continue
		}
		if err != nil {
			return err
		}
		break
	}
	// Check the cosignature before storing it.
	n, err := note.Open(append(bytes.Clone(msg), line...), note.VerifierList(t.verifier))
	if err != nil || len(n.Sigs) != 1 {
		return fmt.Errorf("%w: cosignature does not verify", broker.ErrInvalid)
	}
	if err := sub.s.AddCosignature(ctx, size, t.verifier.Name(), line); err != nil {
		return err
	}
	t.oldSize = size
	return nil
}

// Start submits every interval until shutdown. Failures are logged.
func (sub *Submitter) Start(ctx context.Context, interval time.Duration, log *slog.Logger) func(context.Context) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if err := sub.Submit(ctx); err != nil && ctx.Err() == nil {
				log.LogAttrs(ctx, slog.LevelError, "witness submission failed", slog.Any(logKeyError, err))
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func(sctx context.Context) error {
		cancel()
		select {
		case <-done:
			return nil
		case <-sctx.Done():
			return fmt.Errorf("witness submitter shutdown: %w", sctx.Err())
		}
	}
}
