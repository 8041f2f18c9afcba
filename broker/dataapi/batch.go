package dataapi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
)

// Defaults for Config.
const (
	// DefaultMaxBatch is the most fetches one disclosure transaction
	// decides and records.
	DefaultMaxBatch = 32
	// DefaultBatches is how many disclosure transactions run at once:
	// one reads and decides while the one before it commits.
	DefaultBatches = 2
)

// fetchJob is one fetch waiting for, or in, a disclosure transaction.
type fetchJob struct {
	ctx context.Context
	tok Token
	id  broker.ConsentID
	q   fetchRequest

	// Set when done: the answer, or why there is none.
	out outcome
	err error
}

// committer group-commits fetches. A fetch that arrives while every
// transaction slot is busy joins the open batch instead of waiting for a
// transaction of its own; the batch's first fetch (its leader) runs the
// batch when a slot frees: one transaction that reads and locks every
// consent in the batch in one round trip, decides each fetch at that
// moment, and records every disclosure with its ledger entry at COMMIT.
// So under load one round trip, one commit and one disk flush serve many
// disclosures, while an idle server runs each fetch at once, alone.
//
// Nothing is shared between the fetches of a batch but the transaction:
// each is decided under its own consent's lock, from what was committed
// before it, exactly as alone; a batch never holds two fetches of one
// consent (the second waits for the next round), so a frequency count
// always includes the disclosure before it. No answer leaves before the
// commit, and if the database refuses the batch as a whole, each fetch is
// run again on its own, so that one cannot fail another.
type committer struct {
	a   *API
	max int
	// slots bounds the transactions running at once; reading lets one of
	// them at a time collect its batch, read and decide, so that batches
	// stay large while the one before commits.
	slots, reading chan struct{}
	// sizes observes how many fetches each transaction served.
	sizes prometheus.Histogram

	mu   sync.Mutex
	open *batch
}

type batch struct {
	jobs []*fetchJob
	done chan struct{}
}

func newCommitter(a *API, maxBatch, batches int, reg prometheus.Registerer) (*committer, error) {
	c := &committer{a: a, max: maxBatch, slots: make(chan struct{}, batches), reading: make(chan struct{}, 1),
		sizes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "steward_disclosure_batch_size",
			Help:    "Data API fetches decided and recorded in one database transaction.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64},
		})}
	if reg != nil {
		if err := reg.Register(c.sizes); err != nil {
			return nil, fmt.Errorf("dataapi: register metrics: %w", err)
		}
	}
	return c, nil
}

// errUndecided is the answer of a fetch whose transaction never ran to
// its end (its leader panicked): the firm gets a 500, never an empty 200.
var errUndecided = errors.New("dataapi: the disclosure transaction did not complete")

// do runs job in a batch and returns when its answer is set.
func (c *committer) do(job *fetchJob) {
	job.err = errUndecided
	c.mu.Lock()
	if b := c.open; b != nil && len(b.jobs) < c.max {
		b.jobs = append(b.jobs, job)
		c.mu.Unlock()
		<-b.done
		return
	}
	b := &batch{jobs: []*fetchJob{job}, done: make(chan struct{})}
	c.open = b
	c.mu.Unlock()
	defer close(b.done)

	// Lead: wait for a slot and for the batch before to have decided
	// (meanwhile others join), close the batch to newcomers, run it.
	c.slots <- struct{}{}
	defer func() { <-c.slots }()
	c.reading <- struct{}{}
	decided := sync.OnceFunc(func() { <-c.reading })
	defer decided()
	c.mu.Lock()
	if c.open == b {
		c.open = nil
	}
	jobs := b.jobs
	c.mu.Unlock()
	// The batch outlives its leader's request (the others wait on it) but
	// not a database that stopped answering.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(job.ctx), batchTimeout)
	defer cancel()
	c.run(ctx, jobs, decided)
}

// batchTimeout bounds one batch's transactions.
const batchTimeout = 30 * time.Second

// run commits jobs in rounds that name each consent at most once.
// decided is called once the first transaction has decided its fetches
// and has only its commit left.
func (c *committer) run(ctx context.Context, jobs []*fetchJob, decided func()) {
	for len(jobs) > 0 {
		var round, later []*fetchJob
		seen := make(map[broker.ConsentID]bool, len(jobs))
		for _, j := range jobs {
			switch {
			case j.ctx.Err() != nil:
				j.err = j.ctx.Err() // the firm went away before its fetch began
			case seen[j.id]:
				later = append(later, j)
			default:
				seen[j.id] = true
				round = append(round, j)
			}
		}
		c.commit(ctx, round, decided)
		jobs = later
	}
}

// commit runs jobs in one transaction, or each in its own if the
// database refuses them together.
func (c *committer) commit(ctx context.Context, jobs []*fetchJob, decided func()) {
	if len(jobs) == 0 {
		return
	}
	c.sizes.Observe(float64(len(jobs)))
	err := c.a.discloseAll(ctx, jobs, decided)
	if err == nil {
		return
	}
	if len(jobs) == 1 {
		jobs[0].out, jobs[0].err = outcome{}, err
		return
	}
	for _, j := range jobs {
		c.commit(ctx, []*fetchJob{j}, decided)
	}
}

// discloseAll decides and records jobs in one transaction and, once it
// has committed, sets their answers; it calls decided when only the
// commit is left. A fetch's own failure (its consent
// unknown or another firm's, its proof replayed, its data unreadable)
// is its answer and leaves nothing written; an error returned means the
// transaction failed and no answer was set.
func (a *API) discloseAll(ctx context.Context, jobs []*fetchJob, decided func()) error {
	now := a.now()
	guesses := make([][]broker.Duration, len(jobs))
	reads := make([]store.AccessRead, len(jobs))
	for i, j := range jobs {
		guesses[i], _ = a.windows.get(j.id)
		reads[i] = store.AccessRead{Consent: j.id, AccessQuery: store.AccessQuery{Now: now, Token: j.tok.Signature,
			Proof: &store.ProofUse{Key: j.tok.proof.key, Expires: j.tok.proof.exp}, Since: since(guesses[i], now), Records: true}}
	}
	outs, errs := make([]outcome, len(jobs)), make([]error, len(jobs))
	err := a.cfg.Store.Update(ctx, func(tx store.Tx) error {
		acs, rerrs, err := tx.ReadAccessContexts(ctx, reads)
		if err != nil {
			return err
		}
		// Decide every fetch first (no writes), then record them: a
		// failed write fails the transaction, never one fetch's half.
		plans := make([]plan, len(jobs))
		for i, j := range jobs {
			outs[i], errs[i] = outcome{}, rerrs[i]
			if errs[i] != nil {
				continue
			}
			var ac access
			if ac, errs[i] = a.access(ctx, tx, j.tok, acs[i], guesses[i], now); errs[i] == nil {
				plans[i], errs[i] = a.decide(ctx, j.q, ac, now)
			}
		}
		var writes []store.DisclosureWrite
		var wrote []int
		for i := range jobs {
			if errs[i] != nil {
				continue
			}
			var w store.DisclosureWrite
			if outs[i], w, err = a.record(ctx, tx, plans[i], now); err != nil {
				return err
			}
			writes, wrote = append(writes, w), append(wrote, i)
		}
		// Every fetch's rows at once: one statement per table.
		hashes, err := tx.RecordDisclosures(ctx, writes)
		if err != nil {
			return err
		}
		for k, i := range wrote {
			if outs[i].refused != nil {
				outs[i].hash = hashes[k]
			}
		}
		decided() // only the commit is left: the next batch may read
		return nil
	})
	if err != nil {
		return err
	}
	for i, j := range jobs {
		j.out, j.err = outs[i], errs[i]
	}
	if slices.ContainsFunc(outs, func(o outcome) bool { return o.disclosed }) {
		a.cfg.Kick()
	}
	return nil
}
