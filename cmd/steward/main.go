// Command steward runs the Steward broker.
//
//	steward serve     run the broker (PostgreSQL with --database-url, else SQLite in --data-dir)
//	steward demo      run on the embedded store with demo data, printing URLs and logins
//	steward migrate   apply database migrations and exit
//	steward audit     verify the ledger offline, or export it
//	steward witness   follow and cosign the ledger, as a regulator
//	steward version   print the version
//
// Every flag can also be set by a STEWARD_* environment variable (the flag
// name upper-cased with '-' as '_', e.g. --data-dir is STEWARD_DATA_DIR) or
// by a key of the same name in a JSON file given with --config. Flags win
// over the environment, which wins over the file.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "steward:", err)
		}
		os.Exit(exitCode(err))
	}
}

// errUsage marks an error already explained by usage text.
var errUsage = errors.New("usage")

func exitCode(err error) int {
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

const usage = `Steward: customers hold the keys to their own data.

Usage:
  steward <command> [flags]

Commands:
  demo      start on the embedded SQLite store with demo data and print the URLs to open
  serve     run the broker (PostgreSQL if --database-url is set, else SQLite in --data-dir)
  migrate   apply database migrations and exit
  audit     verify the ledger offline (audit verify) or export it (audit export)
  witness   cosign the ledger's checkpoints after checking consistency, as a regulator
  version   print the version and exit

Run 'steward <command> -h' for a command's flags. Every flag can also come
from an environment variable (STEWARD_ + the flag name in capitals, '-' as
'_': --data-dir is STEWARD_DATA_DIR) or from a JSON file given with
--config. Flags override the environment, which overrides the file.
`

// run is the whole program, testable: it never calls os.Exit.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serveCmd(ctx, rest, stdout, stderr)
	case "demo":
		return demoCmd(ctx, rest, stdout, stderr)
	case "migrate":
		return migrateCmd(ctx, rest, stdout, stderr)
	case "audit":
		return auditCmd(ctx, rest, stdout, stderr)
	case "witness":
		return witnessCmd(ctx, rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "steward", versionString())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "steward: unknown command %q\n\n%s", cmd, usage)
	return errUsage
}
