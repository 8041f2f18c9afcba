package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/stewardhq/steward/broker"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Defaults for Config.
const (
	// DefaultInterval is how often the sequencer and integrator look for
	// work when nobody kicks them.
	DefaultInterval = time.Second
	// DefaultBatchMaxSize is the most entries one Sequence call moves.
	DefaultBatchMaxSize = 1024
	// DefaultIntegrateMaxSize is the most entries one checkpoint adds.
	DefaultIntegrateMaxSize = 1 << 16
	// DefaultSequenceGap and DefaultIntegrateGap pace the background
	// loops (Config.SequenceGap, IntegrateGap): an entry is sequenced
	// within about 50 ms and has its inclusion proof within about a
	// third of a second, at a cost that does not grow with the entry
	// rate. (Each sequencing run is a transaction of its own; under load
	// a longer gap moves more entries per run, and the integrator waits
	// longer than that anyway.)
	DefaultSequenceGap  = 50 * time.Millisecond
	DefaultIntegrateGap = 250 * time.Millisecond
)

// Log key names, kept constant so dashboards can rely on them.
const (
	logKeyError  = "error"
	logKeySize   = "size"
	logKeyStatus = "status"
	logKeyPath   = "path"
)

// Config configures Start.
type Config struct {
	// Signer signs checkpoints. Its name is the log's origin, e.g.
	// "steward.example/ledger". Required.
	Signer note.Signer
	// Interval bounds how long new work waits when nobody calls Kick.
	// Zero means DefaultInterval.
	Interval time.Duration
	// BatchMaxSize is the most entries one sequencing batch moves.
	// Zero means DefaultBatchMaxSize.
	BatchMaxSize int
	// IntegrateMaxSize is the most entries one checkpoint adds.
	// Zero means DefaultIntegrateMaxSize.
	IntegrateMaxSize int
	// SequenceGap and IntegrateGap are the least time between two runs
	// of the sequencer and of the integrator: kicks that arrive sooner
	// wait, so under load each run moves a batch instead of one entry,
	// and a checkpoint (a signature and a row) is written at most every
	// IntegrateGap. Zero means DefaultSequenceGap and DefaultIntegrateGap;
	// a negative value means no gap.
	SequenceGap, IntegrateGap time.Duration
	// Logger receives errors from the background loops. Nil discards them.
	Logger *slog.Logger
}

func (c *Config) fill() error {
	if c.Signer == nil {
		return fmt.Errorf("%w: ledger config needs a Signer", broker.ErrInvalid)
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.BatchMaxSize <= 0 {
		c.BatchMaxSize = DefaultBatchMaxSize
	}
	if c.IntegrateMaxSize <= 0 {
		c.IntegrateMaxSize = DefaultIntegrateMaxSize
	}
	if c.SequenceGap == 0 {
		c.SequenceGap = DefaultSequenceGap
	}
	if c.IntegrateGap == 0 {
		c.IntegrateGap = DefaultIntegrateGap
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Log runs the sequencer and integrator over a Storage and stages entries
// that have no business transaction of their own.
type Log struct {
	s       Storage
	cfg     Config
	seqKick chan struct{}
	intKick chan struct{}

	// Group commit for Stage: callers join the open batch; its leader
	// waits for the previous flush (flush), then stages the whole batch
	// in one transaction. While one flush runs the next batch fills, so
	// throughput grows with concurrency instead of costing a transaction
	// per caller.
	mu    sync.Mutex
	open  *stageBatch
	flush sync.Mutex
}

// Start starts the sequencer and integrator goroutines. Both run until
// the returned shutdown func is called (or ctx ends): every Interval, and
// at once after Kick. Shutdown waits for a batch in progress to finish,
// then returns; call it before cancelling ctx.
//
// Any number of replicas may run Start over the same Storage: the
// Storage contracts make them safe, if wasteful.
func Start(ctx context.Context, s Storage, cfg Config) (*Log, func(context.Context) error, error) {
	if err := cfg.fill(); err != nil {
		return nil, nil, err
	}
	l := &Log{s: s, cfg: cfg, seqKick: make(chan struct{}, 1), intKick: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { l.loop(ctx, l.seqKick, cfg.SequenceGap, l.sequenceAll) })
	wg.Go(func() { l.loop(ctx, l.intKick, cfg.IntegrateGap, l.integrateAll) })
	l.Kick()
	shutdown := func(sctx context.Context) error {
		cancel()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
			return nil
		case <-sctx.Done():
			return fmt.Errorf("ledger shutdown: %w", sctx.Err())
		}
	}
	return l, shutdown, nil
}

// Kick asks the sequencer to run now rather than at its next tick. Call
// it after committing a transaction that staged entries.
func (l *Log) Kick() { kick(l.seqKick) }

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Stage validates entries (each must be an entry's canonical bytes, see
// broker.ParseEntry), stages them and kicks the sequencer. It returns
// their leaf hashes, which NewReceipt takes once they are sequenced.
//
// Concurrent calls are group-committed: they share one staging
// transaction. Stage returns only once that transaction has committed, so
// a nil error means the entries are durable. If ctx ends first, Stage
// returns its error and the entries may or may not have been staged.
func (l *Log) Stage(ctx context.Context, entries ...[]byte) ([]tlog.Hash, error) {
	hashes := make([]tlog.Hash, len(entries))
	for i, e := range entries {
		if _, err := broker.ParseEntry(e); err != nil {
			return nil, fmt.Errorf("stage entry %d: %w", i, err)
		}
		hashes[i] = tlog.RecordHash(e)
	}
	l.mu.Lock()
	b, leader := l.open, false
	if b == nil {
		b, leader = &stageBatch{done: make(chan struct{})}, true
		l.open = b
	}
	b.entries = append(b.entries, entries...)
	l.mu.Unlock()
	if leader {
		l.flush.Lock()
		l.mu.Lock()
		l.open = nil // later callers start the next batch
		l.mu.Unlock()
		b.err = l.s.Stage(context.WithoutCancel(ctx), b.entries...)
		l.flush.Unlock()
		close(b.done)
	}
	select {
	case <-b.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if b.err != nil {
		return nil, fmt.Errorf("stage %d entries: %w", len(entries), b.err)
	}
	l.Kick()
	return hashes, nil
}

// stageBatch is one group-committed Stage transaction.
type stageBatch struct {
	entries [][]byte
	done    chan struct{}
	err     error
}

func (l *Log) loop(ctx context.Context, wake <-chan struct{}, gap time.Duration, work func(context.Context) error) {
	t := time.NewTicker(l.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-t.C:
		}
		if err := work(ctx); err != nil && ctx.Err() == nil {
			l.cfg.Logger.LogAttrs(ctx, slog.LevelError, "ledger background step failed", slog.Any(logKeyError, err))
		}
		if gap > 0 {
			// Let kicks pile up (they coalesce) before the next run.
			select {
			case <-ctx.Done():
				return
			case <-time.After(gap):
			}
		}
	}
}

// sequenceAll sequences batches until the staging area is drained, then
// kicks the integrator if anything moved.
func (l *Log) sequenceAll(ctx context.Context) error {
	before, err := l.s.Size(ctx)
	if err != nil {
		return fmt.Errorf("sequence: %w", err)
	}
	size := before
	for ctx.Err() == nil {
		n, err := l.s.Sequence(ctx, l.cfg.BatchMaxSize)
		if err != nil {
			return fmt.Errorf("sequence after %d: %w", size, err)
		}
		moved := n - size
		size = n
		if moved < int64(l.cfg.BatchMaxSize) {
			break
		}
	}
	if size > before {
		kick(l.intKick)
	}
	return nil
}

// integrateAll integrates until the checkpoint covers every sequenced entry.
func (l *Log) integrateAll(ctx context.Context) error {
	conflicts := 0
	for ctx.Err() == nil {
		c, wrote, err := Integrate(ctx, l.s, l.cfg.Signer, l.cfg.IntegrateMaxSize)
		if errors.Is(err, broker.ErrConflict) && conflicts < 3 {
			conflicts++ // another integrator won the race; look again
			continue
		}
		if err != nil {
			return fmt.Errorf("integrate: %w", err)
		}
		if !wrote {
			return nil
		}
		l.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "ledger checkpoint", slog.Int64(logKeySize, c.Size))
	}
	return nil
}
