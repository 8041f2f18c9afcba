// Command dataapi is a load harness for the Data API, end to end: it seeds
// a PostgreSQL database with customers (each with vault records and a
// granted consent) and firms, starts the real `steward serve` binary on
// it, obtains DPoP-bound consent tokens through the real OAuth flow (PAR,
// login, consent screen, code exchange with private_key_jwt), and then
// times data fetches: token introspection, DPoP proof check, access
// decision, disclosure row, ledger entry and response, with the ledger's
// sequencer and integrator running. It is a measuring tool, not part of
// the product.
//
//	go run ./bench/dataapi -db postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	    [-customers 100000] [-firms 100] [-tokens 200] [-concurrency 1,10] [-duration 20s] [-keep DIR]
//
// -db names a server and a database the user may DROP and CREATE databases
// from; the harness uses its own database, steward_bench, recreated each run
// unless -keep names a directory holding an earlier run's seed (its data
// directory, master key and firm keys), when it reuses database and seed.
// After seeding, the database is vacuumed, analysed and checkpointed, so a
// run measures a settled database rather than the seed's aftermath.
//
// Beside throughput and latency it reports the CPU time each process spent
// per disclosure (the server, PostgreSQL's processes, the harness itself),
// read from /proc, since all three share the machine.
//
// A firm's client signs its DPoP proofs on the firm's machine, not on
// Steward's; so that the machine's two cores measure Steward rather than
// the load generator's signing, the harness signs each run's proofs
// (Ed25519, one per fetch, for randomly chosen tokens) before its clock
// starts, as a replaying load generator would, and sends them within the
// proofs' minute of validity. -sign-live signs each proof as its fetch is
// made instead.
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/firmclient"
	"github.com/stewardhq/steward/broker/password"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/vault"
)

const (
	redirectURI = "https://firm.example/callback"
	customerPW  = "bench customer password"
	operator    = "bench-operator-token-0123456789abcdef0123"
	details     = `[{"type":"steward_customer_data","categories":["Contact","Preference"],"purpose":"DirectMarketing","duration":"P30D","frequency":{"max":1000000,"per":"P1D"}}]`
)

func main() {
	db := flag.String("db", "", "PostgreSQL URL of a server where the user may create databases (required)")
	customers := flag.Int("customers", 100000, "customers to seed, each with two vault records and a granted consent")
	firms := flag.Int("firms", 100, "firms to seed, each with one OAuth client")
	tokens := flag.Int("tokens", 200, "consent tokens to obtain through the OAuth flow and fetch with")
	conc := flag.String("concurrency", "1,10", "comma-separated client counts to measure")
	dur := flag.Duration("duration", 20*time.Second, "measuring time per concurrency")
	bin := flag.String("steward", "", "steward binary (default: go build ./cmd/steward)")
	keep := flag.String("keep", "", "directory to keep the seed in; a later run with the same directory reuses the seeded database")
	live := flag.Bool("sign-live", false, "sign each DPoP proof as its fetch is made, instead of before the clock starts")
	flag.Parse()
	if *db == "" {
		fmt.Fprintln(os.Stderr, "dataapi: -db is required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *db, *bin, *keep, *customers, *firms, *tokens, *conc, *dur, *live); err != nil {
		fmt.Fprintln(os.Stderr, "dataapi:", err)
		os.Exit(1)
	}
}

const benchDB = "steward_bench"

func run(ctx context.Context, adminURL, bin, keep string, nCustomers, nFirms, nTokens int, conc string, dur time.Duration, live bool) error {
	dir := keep
	if dir == "" {
		tmp, err := os.MkdirTemp("", "steward-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if bin == "" {
		bin = filepath.Join(dir, "steward")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/steward").CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	dbURL, err := databaseURL(adminURL, benchDB)
	if err != nil {
		return err
	}
	seeded, err := loadSeed(dir)
	switch {
	case err == nil:
		// Each run adds its disclosures, decisions, ledger entries and DPoP
		// proofs (the server purges expired proofs every 5 minutes, longer
		// than a run), so say how far the database has grown past the seed.
		fmt.Printf("reusing the seed in %s: %d customers, %d firms; database now %s\n", dir, len(seeded.Customers), len(seeded.Firms),
			databaseSize(ctx, dbURL))
		// What earlier runs deleted (ledger entries once sequenced, expired
		// DPoP proofs) is left as dead rows until a vacuum, which
		// autovacuum would have run in service; run it, so that each run
		// starts from a database as one in service would be.
		if err := settle(ctx, dbURL, "VACUUM (ANALYZE)"); err != nil {
			return err
		}
	case errors.Is(err, fs.ErrNotExist):
		if err := freshDatabase(ctx, adminURL, benchDB); err != nil {
			return err
		}
		t0 := time.Now()
		if seeded, err = seed(ctx, dbURL, dir, nCustomers, nFirms); err != nil {
			return err
		}
		if err := settle(ctx, dbURL, "VACUUM (ANALYZE)", "CHECKPOINT"); err != nil {
			return err
		}
		if err := saveSeed(dir, seeded); err != nil {
			return err
		}
		fmt.Printf("seeded %d customers (2 vault records and a granted consent each), %d firms in %v\n",
			nCustomers, nFirms, time.Since(t0).Round(time.Second))
	default:
		return err
	}

	base, srv, err := startServer(ctx, bin, dir, dbURL)
	if err != nil {
		return err
	}
	defer func() { _ = srv.Process.Signal(os.Interrupt); _ = srv.Wait() }()

	t0 := time.Now()
	grants, err := authorize(ctx, base, seeded, nTokens)
	if err != nil {
		return err
	}
	fmt.Printf("obtained %d consent tokens through PAR, login, consent screen and code exchange in %v\n",
		len(grants), time.Since(t0).Round(time.Millisecond))

	for _, f := range strings.Split(conc, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 {
			return fmt.Errorf("bad concurrency %q", f)
		}
		if err := measure(ctx, base, grants, c, dur, srv.Process.Pid, live); err != nil {
			return err
		}
	}
	return nil
}

// freshDatabase drops and creates name on the server of adminURL.
func freshDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+name)
	return err
}

// databaseURL is adminURL naming database name instead.
func databaseURL(adminURL, name string) (string, error) {
	u, err := url.Parse(adminURL)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

// databaseSize is the database's size as PostgreSQL prints it, or why not.
func databaseSize(ctx context.Context, dbURL string) string {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err.Error()
	}
	defer conn.Close(ctx)
	var size string
	if err := conn.QueryRow(ctx, "SELECT pg_size_pretty(pg_database_size(current_database()))").Scan(&size); err != nil {
		return err.Error()
	}
	return size
}

// settle runs stmts (VACUUM, CHECKPOINT) on the database: after seeding,
// a vacuum, analysis and checkpoint, as a database in service would be, so
// that the measurement does not race autovacuum and the checkpointer over
// the seed's writes; before a run on a reused seed, a vacuum.
func settle(ctx context.Context, dbURL string, stmts ...string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, q := range stmts {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

type firm struct {
	ID     broker.FirmID      `json:"id"`
	Client broker.ClientID    `json:"client"`
	Key    ed25519.PrivateKey `json:"key"`
}

type customer struct {
	ID     broker.CustomerID `json:"id"`
	Handle string            `json:"handle"`
}

type seeded struct {
	Firms     []firm     `json:"firms"`
	Customers []customer `json:"customers"`
}

// seedFile holds, in a -keep directory, what a later run needs to reuse a
// seed: the firms' private keys and the customers' handles.
const seedFile = "seed.json"

func loadSeed(dir string) (*seeded, error) {
	b, err := os.ReadFile(filepath.Join(dir, seedFile))
	if err != nil {
		return nil, err
	}
	var s seeded
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", seedFile, err)
	}
	return &s, nil
}

func saveSeed(dir string, s *seeded) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, seedFile), b, 0o600)
}

// seed writes firms, clients and customers with vault records and one
// granted consent each (to a random firm), in transactions of 500.
func seed(ctx context.Context, dbURL, dir string, nCustomers, nFirms int) (*seeded, error) {
	st, _, err := backend.Open(ctx, dbURL, dir)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	vcfg, err := vault.LoadOrCreateKeyFile(filepath.Join(dir, "master.key"))
	if err != nil {
		return nil, err
	}
	vlt, err := vault.New(st, vcfg)
	if err != nil {
		return nil, err
	}
	hash, err := password.Hash(customerPW, password.Params{Memory: 8 * 1024, Time: 1, Threads: 1})
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	out := &seeded{}
	err = st.Update(ctx, func(tx store.Tx) error {
		for i := range nFirms {
			key, jwks := firmclient.NewKey("k1")
			f := firm{ID: broker.NewFirmID(), Client: broker.NewClientID(), Key: key}
			if err := tx.CreateFirm(ctx, broker.Firm{ID: f.ID, LegalName: fmt.Sprintf("Bench Firm %03d Ltd", i), Sector: "retail",
				Jurisdiction: "GB", Status: broker.FirmApproved, CreatedAt: now, UpdatedAt: now}); err != nil {
				return err
			}
			if err := tx.CreateClient(ctx, broker.Client{ID: f.Client, FirmID: f.ID, Name: "bench", RedirectURIs: []string{redirectURI},
				JWKS: jwks, Status: broker.ClientActive, CreatedAt: now}); err != nil {
				return err
			}
			out.Firms = append(out.Firms, f)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	scope := broker.Scope{Categories: []string{"Contact", "Preference"}, Purpose: "DirectMarketing", Duration: broker.Duration{Days: 30}}
	const batch = 500
	for start := 0; start < nCustomers; start += batch {
		err := st.Update(ctx, func(tx store.Tx) error {
			for i := start; i < min(start+batch, nCustomers); i++ {
				c := broker.Customer{ID: broker.NewCustomerID(), Handle: fmt.Sprintf("customer%06d", i), DisplayName: "Bench Customer",
					Email: fmt.Sprintf("customer%06d@example.org", i), Jurisdiction: "GB", PasswordHash: hash, CreatedAt: now}
				if err := tx.CreateCustomer(ctx, c); err != nil {
					return err
				}
				for cat, v := range map[string]string{
					"Contact":    `{"email":"` + c.Email + `","phone":"+44 20 7946 0018"}`,
					"Preference": `{"contact_by":"email","interests":["cycling","cooking"]}`,
				} {
					if err := vlt.PutTx(ctx, tx, broker.Record{CustomerID: c.ID, Category: cat, Value: json.RawMessage(v), Source: "customer", UpdatedAt: now}); err != nil {
						return err
					}
				}
				f := out.Firms[i%len(out.Firms)]
				con, ev, err := broker.NewConsentRequest(c.ID, f.ID, f.Client, scope, now, "firm:"+string(f.ID))
				if err != nil {
					return err
				}
				if err := tx.CreateConsent(ctx, con, ev); err != nil {
					return err
				}
				con, ev, err = con.Grant(scope, now, "customer:"+string(c.ID))
				if err != nil {
					return err
				}
				if err := tx.UpdateConsent(ctx, con, ev); err != nil {
					return err
				}
				out.Customers = append(out.Customers, customer{ID: c.ID, Handle: c.Handle})
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("seed customers from %d: %w", start, err)
		}
	}
	return out, nil
}

func startServer(ctx context.Context, bin, dir, dbURL string) (string, *exec.Cmd, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.CommandContext(ctx, bin, "serve", "--addr", addr, "--data-dir", dir, "--database-url", dbURL,
		"--operator-token", operator, "--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	base := "http://" + addr
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base, cmd, nil
			}
		}
	}
	_ = cmd.Process.Kill()
	return "", nil, fmt.Errorf("server at %s not ready", base)
}

type grant struct {
	client  *firmclient.Client
	token   string
	consent broker.ConsentID
}

// authorize runs the OAuth flow for n random customers, each with the
// firm its seeded consent names, over 4 goroutines.
func authorize(ctx context.Context, base string, s *seeded, n int) ([]grant, error) {
	clients := make([]*firmclient.Client, len(s.Firms))
	for i, f := range s.Firms {
		clients[i] = firmclient.New(base, string(f.Client), f.Key, "k1")
		clients[i].HTTP.Transport = &http.Transport{MaxIdleConnsPerHost: 64}
	}
	idx := rand.Perm(len(s.Customers))[:min(n, len(s.Customers))]
	var (
		mu   sync.Mutex
		out  []grant
		errs []error
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range 4 {
		wg.Go(func() {
			for {
				k := int(next.Add(1)) - 1
				if k >= len(idx) {
					return
				}
				i := idx[k]
				c := clients[i%len(clients)]
				g, err := flow(ctx, c, s.Customers[i])
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					out = append(out, g)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, fmt.Errorf("%d flows failed, first: %w", len(errs), errs[0])
	}
	return out, nil
}

func flow(ctx context.Context, c *firmclient.Client, cus customer) (grant, error) {
	pk := firmclient.NewPKCE()
	authURL, err := c.PAR(ctx, redirectURI, details, pk)
	if err != nil {
		return grant{}, err
	}
	code, err := firmclient.NewCustomer(c.Base, cus.Handle, customerPW).Approve(ctx, authURL, "Contact", "Preference")
	if err != nil {
		return grant{}, err
	}
	tok, err := c.Exchange(ctx, code, pk.Verifier, redirectURI)
	if err != nil {
		return grant{}, err
	}
	r, err := c.Do(ctx, http.MethodPost, "/oauth/introspect", url.Values{"token": {tok.AccessToken}}, nil, "")
	if err != nil {
		return grant{}, err
	}
	var in struct {
		ConsentID broker.ConsentID `json:"consent_id"`
	}
	if err := r.JSON(&in); err != nil || in.ConsentID == "" {
		return grant{}, fmt.Errorf("introspection: %d %s", r.Status, r.Body)
	}
	return grant{client: c, token: tok.AccessToken, consent: in.ConsentID}, nil
}

// fetchPath is what every measured fetch asks for.
func fetchPath(g grant) string {
	return "/v1/consents/" + string(g.consent) + "/data?fields=Contact.email"
}

// signed is a fetch prepared before the clock starts: its token and proof.
type signed struct {
	g     grant
	proof string
}

// maxSignedRate bounds the fetches a second a run's signed-ahead proofs
// are made for; past them the clients sign as they go.
const maxSignedRate = 2000

// signAhead signs proofs for n fetches with randomly chosen grants, on
// every core.
func signAhead(grants []grant, n int) ([]signed, error) {
	out := make([]signed, n)
	var wg sync.WaitGroup
	var first atomic.Pointer[error]
	var next atomic.Int64
	for range max(1, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				g := grants[rng.IntN(len(grants))]
				p, err := g.client.ProofFor(http.MethodGet, fetchPath(g), g.token)
				if err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
				out[i] = signed{g, p}
			}
		})
	}
	wg.Wait()
	if err := first.Load(); err != nil {
		return nil, *err
	}
	return out, nil
}

// measure runs c clients fetching for dur and prints the figures, with
// the CPU time the server (pid), PostgreSQL and the harness spent. Unless
// live, the fetches' proofs are signed before the clock starts.
func measure(ctx context.Context, base string, grants []grant, c int, dur time.Duration, pid int, live bool) error {
	var ahead []signed
	if !live {
		// A proof is accepted for a minute after its iat.
		if dur > 45*time.Second {
			return fmt.Errorf("a run of %v outlives the proofs signed before it; use -sign-live or a shorter -duration", dur)
		}
		var err error
		if ahead, err = signAhead(grants, int(maxSignedRate*dur.Seconds())); err != nil {
			return fmt.Errorf("sign proofs: %w", err)
		}
	}
	var (
		taken   atomic.Int64
		livecnt atomic.Int64
		mu      sync.Mutex
		lat     []time.Duration
		bad     atomic.Int64
		badBody atomic.Value
		wg      sync.WaitGroup
	)
	cpu0, batch0 := readCPU(pid), batchSizes(base)
	deadline := time.Now().Add(dur)
	start := time.Now()
	for w := range c {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			var mine []time.Duration
			for time.Now().Before(deadline) && ctx.Err() == nil {
				var r firmclient.Response
				var err error
				t := time.Now()
				if i := int(taken.Add(1) - 1); i < len(ahead) {
					s := ahead[i]
					r, err = s.g.client.Send(ctx, http.MethodGet, fetchPath(s.g), nil, "", s.proof, s.g.token)
				} else {
					livecnt.Add(1)
					g := grants[rng.IntN(len(grants))]
					r, err = g.client.Do(ctx, http.MethodGet, fetchPath(g), nil, nil, g.token)
				}
				d := time.Since(t)
				if err != nil || r.Status != http.StatusOK {
					bad.Add(1)
					if err == nil {
						badBody.Store(fmt.Sprintf("%d %s", r.Status, r.Body))
					} else {
						badBody.Store(err.Error())
					}
					continue
				}
				mine = append(mine, d)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	used, batch := readCPU(pid).since(cpu0), batchSizes(base)
	if len(lat) == 0 {
		return fmt.Errorf("no successful fetch at concurrency %d: %v", c, badBody.Load())
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	fmt.Printf("concurrency %2d: %6d disclosures in %v = %7.1f/s; latency p50 %v p90 %v p99 %v p99.9 %v max %v; %d failed\n",
		c, len(lat), elapsed.Round(time.Millisecond), float64(len(lat))/elapsed.Seconds(),
		r(q(0.50)), r(q(0.90)), r(q(0.99)), r(q(0.999)), r(lat[len(lat)-1]), bad.Load())
	per := func(d time.Duration) time.Duration { return (d / time.Duration(len(lat))).Round(time.Microsecond) }
	fmt.Printf("  CPU per disclosure: server %v, PostgreSQL %v, harness %v, the rest of the machine %v; machine idle %.0f%%\n",
		per(used.server), per(used.postgres), per(used.harness), per(used.busy-used.server-used.postgres-used.harness),
		100*used.idle.Seconds()/(used.idle+used.busy).Seconds())
	if live {
		fmt.Println("  each proof signed as its fetch was made")
	} else {
		fmt.Printf("  proofs signed before the clock started, but for %d fetches signed as made\n", livecnt.Load())
	}
	if n := batch[1] - batch0[1]; n > 0 {
		fmt.Printf("  %.0f disclosure transactions, %.2f fetches each on average\n", n, (batch[0]-batch0[0])/n)
	}
	if b := badBody.Load(); b != nil {
		fmt.Printf("  a failure: %v\n", b)
	}
	return nil
}

// batchSizes reads the sum and count of the server's
// steward_disclosure_batch_size histogram from /metrics (zeros if absent).
func batchSizes(base string) [2]float64 {
	var out [2]float64
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, _ := strconv.ParseFloat(val, 64)
		switch name {
		case "steward_disclosure_batch_size_sum":
			out[0] = v
		case "steward_disclosure_batch_size_count":
			out[1] = v
		}
	}
	return out
}

// cpuUse is CPU time from /proc: of the server, of every postgres
// process, of this process, and the whole machine's busy and idle time.
type cpuUse struct{ server, postgres, harness, busy, idle time.Duration }

func (u cpuUse) since(v cpuUse) cpuUse {
	return cpuUse{u.server - v.server, u.postgres - v.postgres, u.harness - v.harness, u.busy - v.busy, u.idle - v.idle}
}

// clockTick is USER_HZ, the unit of /proc's CPU times, on Linux.
const clockTick = 10 * time.Millisecond

// readCPU reads cpuUse; where /proc is missing the figures are zero.
func readCPU(server int) cpuUse {
	u := cpuUse{server: procCPU(strconv.Itoa(server)), harness: procCPU("self")}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if comm, err := os.ReadFile("/proc/" + e.Name() + "/comm"); err == nil && strings.TrimSpace(string(comm)) == "postgres" {
			u.postgres += procCPU(e.Name())
		}
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		for i, f := range strings.Fields(line)[1:] {
			n, _ := strconv.ParseInt(f, 10, 64)
			switch i {
			case 3, 4: // idle, iowait
				u.idle += time.Duration(n) * clockTick
			case 0, 1, 2, 5, 6, 7:
				u.busy += time.Duration(n) * clockTick
			}
		}
	}
	return u
}

// procCPU is the user and system time of /proc/<pid>.
func procCPU(pid string) time.Duration {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// The command name may hold spaces; the fields after it are fixed.
	_, rest, ok := strings.Cut(string(b), ") ")
	if !ok {
		return 0
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * clockTick
}
