package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/policy"
	"github.com/stewardhq/steward/broker/store"
)

// policyRuntime owns the policy engine and the operator's overlay: the
// regulatory rules read from --policy-dir or --policy-bundle, laid over the
// built-in ones. Every version put in force is recorded on the ledger as a
// policy.bundle entry, so decisions can be tied to the rules that made them.
type policyRuntime struct {
	engine *policy.Engine
	dir    string
	bundle string
	store  store.Store
	log    *slog.Logger
}

func (p *policyRuntime) overlay() (policy.Modules, error) {
	switch {
	case p.dir != "" && p.bundle != "":
		return nil, errors.New("give --policy-dir or --policy-bundle, not both")
	case p.dir != "":
		return policy.ReadDir(p.dir)
	case p.bundle != "":
		f, err := os.Open(p.bundle)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return policy.ReadBundle(f)
	}
	return nil, nil
}

// startPolicy compiles the policy once at start-up: a broken policy stops
// the process here rather than failing requests later.
func startPolicy(ctx context.Context, c config, s store.Store, log *slog.Logger) (*policyRuntime, error) {
	p := &policyRuntime{dir: c.PolicyDir, bundle: c.PolicyBundle, store: s, log: log}
	mods, err := p.overlay()
	if err != nil {
		return nil, fmt.Errorf("policy overlay: %w", err)
	}
	if p.engine, err = policy.New(ctx, policy.Config{Overlay: mods}); err != nil {
		return nil, err
	}
	if err := p.record(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// Reload re-reads the overlay and swaps the new version in; on any error
// the running version stays in force.
func (p *policyRuntime) Reload(ctx context.Context) (string, error) {
	mods, err := p.overlay()
	if err != nil {
		return "", fmt.Errorf("policy overlay: %w", err)
	}
	if err := p.engine.Reload(ctx, mods); err != nil {
		return "", err
	}
	if err := p.record(ctx); err != nil {
		return "", err
	}
	return p.engine.PolicyHash(), nil
}

// record stages a policy.bundle entry unless the newest one logged
// already names the version in force (a restart with the same rules).
// The built-in rules alone are logged only once an operator's rules have
// been: until then the binary's version identifies them, and every
// decision record carries the policy hash either way.
func (p *policyRuntime) record(ctx context.Context) error {
	hash := p.engine.PolicyHash()
	operator := p.dir != "" || p.bundle != ""
	return p.store.Update(ctx, func(tx store.Tx) error {
		last, after := "", int64(-1)
		for {
			page, err := tx.SearchLedger(ctx, store.LedgerFilter{Types: []broker.EntryType{broker.EntryPolicyBundle}, After: after, Limit: store.MaxLimit})
			if err != nil {
				return err
			}
			if len(page) == 0 {
				break
			}
			last, after = page[len(page)-1].Entry.BundleHash, page[len(page)-1].Index
		}
		if last == hash || (last == "" && !operator) {
			return nil
		}
		b, err := broker.Entry{Type: broker.EntryPolicyBundle, Time: time.Now(), BundleHash: hash}.CanonicalBytes()
		if err != nil {
			return err
		}
		return tx.StageLedgerEntry(ctx, b)
	})
}

// reloadOnHangup reloads the policy on SIGHUP until ctx ends.
func (p *policyRuntime) reloadOnHangup(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				hash, err := p.Reload(ctx)
				if err != nil {
					p.log.LogAttrs(ctx, slog.LevelError, "policy reload refused; the previous version stays in force", slog.Any("error", err))
					continue
				}
				p.log.LogAttrs(ctx, slog.LevelInfo, "policy reloaded", slog.String("policy_hash", hash))
			}
		}
	}()
}
