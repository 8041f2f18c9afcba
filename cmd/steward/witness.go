package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/ledger/verify"
	"github.com/stewardhq/steward/broker/ledger/witness"
)

// Witness defaults.
const (
	DefaultWitnessAddr     = "127.0.0.1:8091"
	DefaultWitnessInterval = 10 * time.Second
)

const witnessSummary = `Run a witness for a Steward ledger, as a regulator does. Every --interval it
fetches the log's checkpoint and hash tiles, checks the log's signature and that
the new tree extends the last one it cosigned (a consistency proof computed from
the tiles), cosigns it (c2sp.org/tlog-cosignature) and posts the cosignature to
the log, which then serves it with the checkpoint. It never cosigns a fork or a
rollback: it logs an error and keeps its last cosigned state.

It also serves, on --addr:
  GET  /vkey             the witness's public key (cosignature/v1), for the log operator and auditors
  POST /add-checkpoint   the c2sp.org/tlog-witness protocol, for logs that push`

// Log keys of the witness's lines, kept constant for alerting rules.
const (
	wlogKeyError   = "error"
	wlogKeySize    = "size"
	wlogKeyRoot    = "root"
	wlogKeyURL     = "url"
	wlogKeyWitness = "witness"
)

// witnessConfig is what `steward witness` reads from flags.
type witnessConfig struct {
	LogURL    string
	LogVKey   string
	KeyFile   string
	Name      string
	StatePath string
	Addr      string
	Interval  time.Duration
	SubmitURL string
}

func witnessCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	fs, cf := flagSet("witness", witnessSummary, &c, stderr, "log-level", "log-format", "shutdown-timeout")
	var w witnessConfig
	fs.StringVar(&w.LogURL, "log", "", "base URL of the ledger's public files, e.g. https://steward.example/ledger/ (required)")
	fs.StringVar(&w.LogVKey, "log-vkey", "", "the log's verifier key, or @file holding it (required)")
	fs.StringVar(&w.KeyFile, "key-file", "", "the witness's private key file, created on first start (default <user config dir>/steward/witness.key)")
	fs.StringVar(&w.Name, "name", "", "the witness's name in its cosignatures, used when the key is created (default <hostname>/witness)")
	fs.StringVar(&w.StatePath, "state", "", "file keeping the last checkpoint cosigned per log (default <user config dir>/steward/witness-state.json)")
	fs.StringVar(&w.Addr, "addr", DefaultWitnessAddr, "listen on this host:port")
	fs.DurationVar(&w.Interval, "interval", DefaultWitnessInterval, "how often to poll the log")
	fs.StringVar(&w.SubmitURL, "submit-url", "", "where to POST cosignatures (default <log>cosignature; \"none\" to only keep them)")
	if err := parseConfig(fs, cf, args); err != nil {
		return helpOK(err)
	}
	if w.LogURL == "" || w.LogVKey == "" {
		fmt.Fprintln(stderr, "steward witness: --log and --log-vkey are required")
		fs.Usage()
		return errUsage
	}
	if w.Interval <= 0 {
		fmt.Fprintln(stderr, "steward witness: --interval must be positive")
		return errUsage
	}
	log, err := newLogger(c, stderr)
	if err != nil {
		return err
	}
	if w.KeyFile == "" || w.StatePath == "" {
		base, err := os.UserConfigDir()
		if err != nil {
			return fmt.Errorf("no user config directory (%w): give --key-file and --state", err)
		}
		if w.KeyFile == "" {
			w.KeyFile = filepath.Join(base, "steward", "witness.key")
		}
		if w.StatePath == "" {
			w.StatePath = filepath.Join(base, "steward", "witness-state.json")
		}
	}
	if w.SubmitURL == "" {
		w.SubmitURL = strings.TrimSuffix(w.LogURL, "/") + "/cosignature"
	}
	return runWitness(ctx, w, log, c.ShutdownTimeout, stdout)
}

// loadOrCreateWitnessKey reads the witness key file (private key line, then
// cosignature/v1 public key line), creating it (mode 0600) on first start.
func loadOrCreateWitnessKey(path, name string) (skey, vkey string, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if name == "" {
			host, herr := os.Hostname()
			if herr != nil || host == "" {
				return "", "", fmt.Errorf("no --name for the new witness key and no hostname: %w", herr)
			}
			name = host + "/witness"
		}
		skey, vkey, err := witness.GenerateKey(name)
		if err != nil {
			return "", "", err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return "", "", fmt.Errorf("witness key: %w", err)
		}
		b = []byte(skey + "\n" + vkey + "\n")
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", "", fmt.Errorf("write witness key: %w", err)
		}
		if _, err := f.Write(b); err != nil {
			f.Close()
			return "", "", fmt.Errorf("write witness key: %w", err)
		}
		if err := f.Close(); err != nil {
			return "", "", fmt.Errorf("write witness key: %w", err)
		}
	} else if err != nil {
		return "", "", fmt.Errorf("read witness key: %w", err)
	}
	lines := strings.Fields(string(b))
	if len(lines) != 2 {
		return "", "", fmt.Errorf("witness key file %s: want the private key and the public key on two lines", path)
	}
	if _, err := witness.NewCosignatureVerifier(lines[1]); err != nil {
		return "", "", fmt.Errorf("witness key file %s: %w", path, err)
	}
	return lines[0], lines[1], nil
}

// runWitness follows the log and serves the witness API until ctx ends.
func runWitness(ctx context.Context, w witnessConfig, log *slog.Logger, grace time.Duration, stdout io.Writer) error {
	logVKey, err := readKeyArg(w.LogVKey)
	if err != nil {
		return err
	}
	logKey, err := note.NewVerifier(logVKey)
	if err != nil {
		return fmt.Errorf("--log-vkey: %w", err)
	}
	skey, vkey, err := loadOrCreateWitnessKey(w.KeyFile, w.Name)
	if err != nil {
		return err
	}
	if dir := filepath.Dir(w.StatePath); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("witness state directory: %w", err)
		}
	}
	wit, err := witness.New(witness.Config{Key: skey, Logs: []string{logVKey}, StatePath: w.StatePath})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "witness %s\npublic key %s\nwitnessing %s at %s\n", wit.Name(), vkey, logKey.Name(), w.LogURL)

	hc := &http.Client{Timeout: 30 * time.Second}
	f := &witness.Follower{Witness: wit, Source: verify.HTTPSource{BaseURL: w.LogURL, Client: hc}}
	fl := &follower{f: f, logKey: logKey, submitURL: w.SubmitURL, client: hc, log: log}

	mux := http.NewServeMux()
	mux.Handle("POST /add-checkpoint", witness.Handler(wit, log))
	mux.HandleFunc("GET /vkey", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(rw, vkey)
	})
	ln, err := net.Listen("tcp", w.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", w.Addr, err)
	}
	log.LogAttrs(ctx, slog.LevelInfo, "witness listening", slog.String(wlogKeyURL, "http://"+ln.Addr().String()), slog.String(wlogKeyWitness, wit.Name()))

	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(w.Interval)
		defer t.Stop()
		for {
			fl.step(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	err = serveHTTP(ctx, ln, mux, log, grace)
	<-done
	return err
}

// follower is one witness's pull loop over one log.
type follower struct {
	f         *witness.Follower
	logKey    note.Verifier
	submitURL string
	client    *http.Client
	log       *slog.Logger
	// submitted is the checkpoint whose cosignature the log last accepted.
	submitted ledger.Checkpoint
}

// step cosigns the log's current checkpoint if it is consistent with the
// last cosigned one, and hands the cosignature to the log once per
// checkpoint. Failures are logged; a log that forks or rolls back is an
// Error every time it is seen.
func (fl *follower) step(ctx context.Context) {
	msg, line, err := fl.f.Step(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		lvl := slog.LevelWarn // the log is unreachable or busy: try again later
		if errors.Is(err, broker.ErrInvalid) || errors.Is(err, broker.ErrForbidden) {
			lvl = slog.LevelError // the log misbehaves: a bad signature, a fork or a rollback
		}
		fl.log.LogAttrs(ctx, lvl, "witness refused the log's checkpoint", slog.Any(wlogKeyError, err))
		return
	}
	n, err := note.Open(msg, note.VerifierList(fl.logKey))
	if err != nil {
		fl.log.LogAttrs(ctx, slog.LevelError, "cosigned checkpoint does not open", slog.Any(wlogKeyError, err))
		return
	}
	c, err := ledger.ParseCheckpoint([]byte(n.Text))
	if err != nil {
		fl.log.LogAttrs(ctx, slog.LevelError, "cosigned checkpoint does not parse", slog.Any(wlogKeyError, err))
		return
	}
	if c == fl.submitted || fl.submitURL == "none" {
		return
	}
	// The log's note with only the log's own signature and ours.
	var body bytes.Buffer
	body.WriteString(n.Text)
	body.WriteString("\n")
	for _, s := range n.Sigs {
		fmt.Fprintf(&body, "— %s %s\n", s.Name, s.Base64)
	}
	body.Write(line)
	if err := fl.submit(ctx, body.Bytes()); err != nil {
		fl.log.LogAttrs(ctx, slog.LevelWarn, "cosignature not delivered", slog.Int64(wlogKeySize, c.Size), slog.Any(wlogKeyError, err))
		return
	}
	fl.submitted = c
	fl.log.LogAttrs(ctx, slog.LevelInfo, "cosigned", slog.Int64(wlogKeySize, c.Size), slog.String(wlogKeyRoot, c.Hash.String()))
}

func (fl *follower) submit(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fl.submitURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := fl.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("POST %s: %s: %s", fl.submitURL, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}
