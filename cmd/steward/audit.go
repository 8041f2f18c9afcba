package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/ledger/verify"
	"github.com/stewardhq/steward/broker/store/backend"
)

// Exit codes of `steward audit verify`, for scripts.
const (
	exitPass       = 0 // the log verified
	exitFail       = 1 // the log is not what its signatures say: tampering, fork, rollback
	exitUsage      = 2 // bad flags or arguments
	exitCannotRead = 3 // the log could not be fetched or read
)

// exitError carries an exit code out of run; main uses ExitCode.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }
func (e *exitError) ExitCode() int { return e.code }

const auditUsage = `Usage: steward audit <command> [flags]

Commands:
  verify   verify the ledger offline from its public files (a URL or an exported directory)
  export   write the ledger's public files (tlog-tiles layout) into a directory

Run 'steward audit <command> -h' for a command's flags.
`

func auditCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return errUsage
	}
	switch args[0] {
	case "verify":
		return auditVerifyCmd(ctx, args[1:], stdout, stderr)
	case "export":
		return auditExportCmd(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, auditUsage)
		return nil
	}
	fmt.Fprintf(stderr, "steward audit: unknown command %q\n\n%s", args[0], auditUsage)
	return errUsage
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// auditFlagSet is a flag set whose usage follows the other commands'.
func auditFlagSet(name, summary string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "read settings from this JSON file (keys are flag names) [STEWARD_CONFIG]")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: steward %s [flags]\n\n%s\n\nFlags (each also STEWARD_<NAME>):\n", name, summary)
		fs.PrintDefaults()
	}
	return fs, configFile
}

const auditVerifySummary = `Verify the ledger from its public files alone, trusting only the log's key and
the last checkpoint this verifier accepted (kept in --state). It checks the
checkpoint signature, rebuilds the Merkle tree from every entry, compares it
with the signed root and the published hash tiles, parses every entry
strictly, checks that the log still extends the checkpoint verified last time
and checks any receipts given.

It prints "PASS <origin> size <n> root <hash>", or FAIL and one problem per line.
Exit status: 0 pass, 1 verification failure, 2 usage error, 3 cannot fetch or read.`

func auditVerifyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cf := auditFlagSet("audit verify", auditVerifySummary, stderr)
	logURL := fs.String("log", "", "base URL of the ledger's public files, e.g. https://steward.example/ledger/")
	dir := fs.String("dir", "", "a directory written by 'steward audit export' (instead of --log)")
	vkeyArg := fs.String("vkey", "", "the log's verifier key (name+hash+key), or @file holding it; get it from the operator out of band")
	statePath := fs.String("state", "", "file keeping the last verified checkpoint (default <user config dir>/steward/audit/<log>.json; \"none\" keeps no state)")
	var receipts stringList
	fs.Var(&receipts, "receipt", "a receipt JSON file (as <log>/receipt/<hash> returns) to check; repeatable")
	jsonOut := fs.Bool("json", false, "print the report as JSON")
	timeout := fs.Duration("timeout", 30*time.Second, "HTTP timeout per request (with --log)")
	parallel := fs.Int("parallel", 8, "files fetched at once")
	if err := parseConfig(fs, cf, args); err != nil {
		return helpOK(err)
	}
	usageErr := func(format string, a ...any) error {
		fmt.Fprintf(stderr, "steward audit verify: "+format+"\n", a...)
		return errUsage
	}
	if (*logURL == "") == (*dir == "") {
		return usageErr("give exactly one of --log and --dir")
	}
	if *vkeyArg == "" {
		return usageErr("--vkey is required: the log's verifier key, or @file")
	}
	vkey, err := readKeyArg(*vkeyArg)
	if err != nil {
		return &exitError{exitCannotRead, err}
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return usageErr("--vkey %q is not a signed-note verifier key: %v", vkey, err)
	}
	var rcs []broker.Receipt
	for _, p := range receipts {
		b, err := os.ReadFile(p)
		if err != nil {
			return &exitError{exitCannotRead, fmt.Errorf("receipt: %w", err)}
		}
		var rc broker.Receipt
		if err := json.Unmarshal(b, &rc); err != nil {
			return usageErr("receipt %s is not receipt JSON: %v", p, err)
		}
		rcs = append(rcs, rc)
	}
	state := *statePath
	switch state {
	case "none":
		state = ""
	case "":
		if state, err = defaultStatePath(v); err != nil {
			return usageErr("%v; give --state", err)
		}
	}
	if state != "" {
		if err := os.MkdirAll(filepath.Dir(state), 0o700); err != nil {
			return &exitError{exitCannotRead, fmt.Errorf("state directory: %w", err)}
		}
	}

	var src verify.Source
	if *dir != "" {
		if fi, err := os.Stat(*dir); err != nil || !fi.IsDir() {
			return &exitError{exitCannotRead, fmt.Errorf("--dir %s is not a readable directory", *dir)}
		}
		src = verify.DirSource(*dir)
	} else {
		if !strings.HasPrefix(*logURL, "http://") && !strings.HasPrefix(*logURL, "https://") {
			return usageErr("--log %q must be an http:// or https:// URL", *logURL)
		}
		src = verify.HTTPSource{BaseURL: *logURL, Client: &http.Client{Timeout: *timeout}}
	}
	rep, err := verify.Verify(ctx, src, verify.Config{VerifierKey: vkey, StatePath: state, Receipts: rcs, Parallel: *parallel})
	if err != nil {
		return &exitError{exitCannotRead, err}
	}
	if *jsonOut {
		out := struct {
			OK     bool   `json:"ok"`
			Origin string `json:"origin"`
			Size   int64  `json:"size"`
			Root   string `json:"root"`
			*verify.Report
		}{rep.OK(), rep.Checkpoint.Origin, rep.Checkpoint.Size, rep.Checkpoint.Hash.String(), rep}
		if out.Problems == nil {
			out.Problems = []verify.Problem{}
		}
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		fmt.Fprint(stdout, rep.String())
	}
	if !rep.OK() {
		return &exitError{exitFail, fmt.Errorf("verification failed: %d problems", len(rep.Problems))}
	}
	return nil
}

// readKeyArg returns a key given inline or, as "@file", in a file.
func readKeyArg(arg string) (string, error) {
	path, ok := strings.CutPrefix(arg, "@")
	if !ok {
		return strings.TrimSpace(arg), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read key: %w", err)
	}
	// A ledger key file holds the private key, then the verifier key;
	// take the last non-empty line so either kind of file works.
	lines := strings.Fields(string(b))
	if len(lines) == 0 {
		return "", fmt.Errorf("key file %s is empty", path)
	}
	return lines[len(lines)-1], nil
}

// defaultStatePath is the state file for the log with key v under the
// user's configuration directory: one file per log key.
func defaultStatePath(v note.Verifier) (string, error) {
	base, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no user config directory: %w", err)
	}
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			return r
		}
		return '_'
	}, v.Name())
	return filepath.Join(base, "steward", "audit", fmt.Sprintf("%s-%08x.json", name, v.KeyHash())), nil
}

func auditExportCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	fs, cf := flagSet("audit export", "Write the ledger at its latest checkpoint into a directory in the c2sp.org/tlog-tiles layout\n(checkpoint, vkey, tile/…), which 'steward audit verify --dir' and other tlog tools read.", &c, stderr, "data-dir", "database-url", "ledger-key-file")
	dir := fs.String("dir", "", "directory to write (created if missing); required")
	if err := parseConfig(fs, cf, args); err != nil {
		return helpOK(err)
	}
	if *dir == "" {
		fmt.Fprintln(stderr, "steward audit export: --dir is required")
		fs.Usage()
		return errUsage
	}
	keyFile := c.LedgerKeyFile
	if keyFile == "" {
		keyFile = filepath.Join(c.DataDir, "ledger.key")
	}
	// The verifier key is written beside the files for convenience; an
	// auditor still takes the key from the operator, not from the export.
	vkey := ""
	if b, err := os.ReadFile(keyFile); err == nil {
		if lines := strings.Fields(string(b)); len(lines) == 2 {
			vkey = lines[1]
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return &exitError{exitCannotRead, fmt.Errorf("read ledger key: %w", err)}
	}
	s, _, err := backend.Open(ctx, c.DatabaseURL, c.DataDir)
	if err != nil {
		return &exitError{exitCannotRead, err}
	}
	defer s.Close()
	if err := ledger.Export(ctx, s.Ledger(), *dir, vkey); err != nil {
		return &exitError{exitCannotRead, err}
	}
	msg, err := os.ReadFile(filepath.Join(*dir, "checkpoint"))
	if err != nil {
		return &exitError{exitCannotRead, err}
	}
	cp, err := ledger.ParseCheckpoint(noteBody(msg))
	if err != nil {
		return &exitError{exitCannotRead, err}
	}
	fmt.Fprintf(stdout, "exported %s size %d root %s to %s\n", cp.Origin, cp.Size, cp.Hash, *dir)
	return nil
}

// noteBody returns the text of a signed note, before its signatures.
func noteBody(msg []byte) []byte {
	if i := strings.Index(string(msg), "\n\n"); i >= 0 {
		return msg[:i+1]
	}
	return msg
}
