package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/stewardhq/steward/broker/dataapi"
)

// config is everything the commands read from flags, environment and file.
type config struct {
	Addr            string
	DataDir         string
	DatabaseURL     string
	OperatorToken   string
	RegulatorToken  string
	PublicURL       string
	LogLevel        string
	LogFormat       string
	ShutdownTimeout time.Duration
	MaxBody         int64
	PolicyDir       string
	PolicyBundle    string
	LedgerKeyFile   string
	LedgerOrigin    string
	WitnessKeys     string
	WebhookKeyFile  string
	OAuthKeyFile    string
	OAuthSecretFile string
	// OAuthJWKSAllowLoopback lets clients' jwks_uri be on loopback (demo, tests).
	OAuthJWKSAllowLoopback bool
	MasterKeyFile          string
	AccessTokenTTL         time.Duration
	// ClientIPHeader names the header a trusted reverse proxy puts the
	// client's address in (e.g. X-Forwarded-For).
	ClientIPHeader string
	// DisclosureBatch and DisclosureTransactions tune the Data API's group
	// commit (dataapi.Config.MaxBatch and Batches).
	DisclosureBatch        int
	DisclosureTransactions int
}

// Defaults.
const (
	DefaultAddr            = "127.0.0.1:8080"
	DefaultDataDir         = "./steward-data"
	DefaultShutdownTimeout = 20 * time.Second
)

// flagSet declares the flags a command takes. Only the ones named in
// which are added, so --help shows what matters for that command.
func flagSet(name, summary string, c *config, stderr io.Writer, which ...string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "read settings from this JSON file (keys are flag names) [STEWARD_CONFIG]")
	add := map[string]func(){
		"addr": func() { fs.StringVar(&c.Addr, "addr", DefaultAddr, "listen on this host:port") },
		"data-dir": func() {
			fs.StringVar(&c.DataDir, "data-dir", DefaultDataDir, "directory for the embedded SQLite database and local keys")
		},
		"database-url": func() {
			fs.StringVar(&c.DatabaseURL, "database-url", "", "PostgreSQL URL, e.g. postgres://steward@db:5432/steward; empty uses SQLite in --data-dir")
		},
		"operator-token": func() {
			fs.StringVar(&c.OperatorToken, "operator-token", "", "bearer token for the operator API under /v1/admin (at least 32 characters)")
		},
		"regulator-token": func() {
			fs.StringVar(&c.RegulatorToken, "regulator-token", "", "bearer token for the read-only audit API under /v1/audit (at least 32 characters; empty disables it)")
		},
		"public-url": func() {
			fs.StringVar(&c.PublicURL, "public-url", "", "the URL people and firms reach Steward at (default http://<addr>)")
		},
		"log-level": func() { fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error") },
		"log-format": func() {
			fs.StringVar(&c.LogFormat, "log-format", "json", "json or text")
		},
		"shutdown-timeout": func() {
			fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", DefaultShutdownTimeout, "how long SIGTERM waits for in-flight requests")
		},
		"client-ip-header": func() {
			fs.StringVar(&c.ClientIPHeader, "client-ip-header", "", "header in which the reverse proxy in front of Steward passes the client's address (e.g. X-Forwarded-For; its last entry is used), for sign-in throttling; set it only behind a proxy that sets it")
		},
		"access-token-ttl": func() {
			fs.DurationVar(&c.AccessTokenTTL, "access-token-ttl", 0, "lifetime of OAuth access tokens (default 10m); keep it short, tokens of an ended consent are refused anyway")
		},
		"policy-dir": func() {
			fs.StringVar(&c.PolicyDir, "policy-dir", "", "directory of Rego modules (package regulatory…) replacing or extending the built-in regulatory rules; reloaded on SIGHUP")
		},
		"policy-bundle": func() {
			fs.StringVar(&c.PolicyBundle, "policy-bundle", "", "OPA bundle (tar.gz) of regulatory Rego modules, instead of --policy-dir; reloaded on SIGHUP")
		},
		"webhook-key-file": func() {
			fs.StringVar(&c.WebhookKeyFile, "webhook-key-file", "", "Ed25519 key that signs webhooks to firms, created on first start (default <data-dir>/webhook.key)")
		},
		"witness-keys": func() {
			fs.StringVar(&c.WitnessKeys, "witness-keys", "", "comma-separated cosignature/v1 verifier keys of the witnesses whose cosignatures POST /ledger/cosignature accepts (empty: none)")
		},
		"ledger-key-file": func() {
			fs.StringVar(&c.LedgerKeyFile, "ledger-key-file", "", "the ledger's Ed25519 signed-note key file, created on first start (default <data-dir>/ledger.key)")
		},
		"ledger-origin": func() {
			fs.StringVar(&c.LedgerOrigin, "ledger-origin", DefaultLedgerOrigin, "the ledger's origin line in checkpoints (its public name), used when the key is first created")
		},
		"oauth-key-file": func() {
			fs.StringVar(&c.OAuthKeyFile, "oauth-key-file", "", "the authorization server's ECDSA P-256 signing key (PKCS #8 PEM), created on first start (default <data-dir>/oauth.key)")
		},
		"oauth-secret-file": func() {
			fs.StringVar(&c.OAuthSecretFile, "oauth-secret-file", "", "the secret keying opaque OAuth tokens and login cookies, created on first start; share it between replicas (default <data-dir>/oauth.secret)")
			fs.BoolVar(&c.OAuthJWKSAllowLoopback, "oauth-jwks-allow-loopback", false, "let OAuth clients' jwks_uri reach loopback addresses (demo and tests only; private, link-local and other internal addresses stay refused)")
		},
		"master-key-file": func() {
			fs.StringVar(&c.MasterKeyFile, "master-key-file", "", "the vault master key file, created on first start (default <data-dir>/master.key); back it up: without it no vault can be read")
		},
		"disclosure-batch": func() {
			fs.IntVar(&c.DisclosureBatch, "disclosure-batch", 0, fmt.Sprintf("most Data API fetches one database transaction decides and records together under load (default %d; 1 gives each its own)", dataapi.DefaultMaxBatch))
			fs.IntVar(&c.DisclosureTransactions, "disclosure-transactions", 0, fmt.Sprintf("how many Data API disclosure transactions run at once (default %d)", dataapi.DefaultBatches))
		},
		"max-body": func() {
			fs.Int64Var(&c.MaxBody, "max-body", 1<<20, "largest request body accepted, in bytes")
		},
	}
	for _, w := range which {
		add[w]()
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: steward %s [flags]\n\n%s\n\nFlags (each also STEWARD_<NAME>, e.g. --data-dir is STEWARD_DATA_DIR):\n", name, summary)
		fs.PrintDefaults()
	}
	return fs, configFile
}

// envName maps a flag name to its environment variable.
func envName(flagName string) string {
	return "STEWARD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseConfig parses args, then fills every flag not given on the command
// line from the environment, then from the config file.
func parseConfig(fs *flag.FlagSet, configFile *string, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["config"] {
		if v, ok := os.LookupEnv(envName("config")); ok {
			*configFile = v
		}
	}
	file := map[string]any{}
	if *configFile != "" {
		b, err := os.ReadFile(*configFile)
		if err != nil {
			return fmt.Errorf("config file: %w", err)
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.UseNumber()
		if err := dec.Decode(&file); err != nil {
			return fmt.Errorf("config file %s: %w", *configFile, err)
		}
		for k := range file {
			if fs.Lookup(k) == nil || k == "config" {
				return fmt.Errorf("config file %s: unknown setting %q", *configFile, k)
			}
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || f.Name == "config" || err != nil {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%s=%q: %w", envName(f.Name), v, e)
			}
			return
		}
		if v, ok := file[f.Name]; ok {
			if e := f.Value.Set(fmt.Sprint(v)); e != nil {
				err = fmt.Errorf("config file %s: %s: %w", *configFile, f.Name, e)
			}
		}
	})
	return err
}

// errHelp means -h was asked for; the usage is already printed.
var errHelp = errors.New("help")

func newLogger(c config, w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", c.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch c.LogFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want json or text", c.LogFormat)
}
