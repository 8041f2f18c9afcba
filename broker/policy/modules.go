package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/policies"
)

// Modules maps a Rego file name (slash-separated, relative) to its source.
type Modules map[string][]byte

// MaxModuleBytes bounds one operator module; MaxOverlayModules bounds how
// many an overlay may hold.
const (
	MaxModuleBytes    = 1 << 20
	MaxOverlayModules = 100
)

// overlayPackage is the one package operators may replace or extend.
const overlayPackage = "regulatory"

// Builtin returns the policy modules embedded from policies/, tests left out.
func Builtin() (Modules, error) {
	m := Modules{}
	err := fs.WalkDir(policies.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !isModule(p) {
			return err
		}
		b, err := policies.FS.ReadFile(p)
		m[p] = b
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read embedded policies: %w", err)
	}
	return m, nil
}

func isModule(name string) bool {
	return strings.HasSuffix(name, ".rego") && !strings.HasSuffix(name, "_test.rego")
}

// ReadDir reads an operator's overlay from a directory: every *.rego file
// under it except tests. See Engine.Reload for what an overlay may hold.
func ReadDir(dir string) (Modules, error) {
	m := Modules{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !isModule(p) {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Size() > MaxModuleBytes {
			return fmt.Errorf("%w: %s is larger than %d bytes", broker.ErrInvalid, rel, MaxModuleBytes)
		}
		b, err := os.ReadFile(p)
		m[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read policy directory %s: %w", dir, err)
	}
	return m, nil
}

// ReadBundle reads an operator's overlay from an OPA bundle (tar.gz). The
// bundle may carry Rego modules only; data files are refused, because the
// taxonomy comes from Steward and regulatory parameters live in Rego.
func ReadBundle(r io.Reader) (Modules, error) {
	b, err := bundle.NewCustomReader(bundle.NewTarballLoaderWithBaseURL(r, "")).
		WithSizeLimitBytes(MaxModuleBytes * MaxOverlayModules).
		WithSkipBundleVerification(true).
		WithRegoVersion(ast.RegoV1).
		Read()
	if err != nil {
		return nil, fmt.Errorf("read policy bundle: %w: %w", broker.ErrInvalid, err)
	}
	if len(b.Data) > 0 {
		return nil, fmt.Errorf("read policy bundle: %w: bundles may carry Rego modules only, not data", broker.ErrInvalid)
	}
	m := Modules{}
	for _, f := range b.Modules {
		name := strings.TrimPrefix(path.Clean("/"+f.Path), "/")
		if isModule(name) {
			m[name] = f.Raw
		}
	}
	return m, nil
}

// overlay returns base with the operator's modules laid over it: a file of
// the same name replaces the built-in one, any other adds to the policy.
// Overlay modules MUST declare package regulatory.v1 (or a package under
// regulatory), so an operator can change the regulator's baseline but
// never how customers' terms are read.
func overlay(base, extra Modules) (Modules, error) {
	if len(extra) > MaxOverlayModules {
		return nil, fmt.Errorf("%w: more than %d policy modules", broker.ErrInvalid, MaxOverlayModules)
	}
	out := maps.Clone(base)
	for _, name := range slices.Sorted(maps.Keys(extra)) {
		src := extra[name]
		if len(src) > MaxModuleBytes {
			return nil, fmt.Errorf("%w: %s is larger than %d bytes", broker.ErrInvalid, name, MaxModuleBytes)
		}
		mod, err := ast.ParseModuleWithOpts(name, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", broker.ErrInvalid, err)
		}
		if pkg := mod.Package.Path; len(pkg) < 2 || pkg[1].Value.Compare(ast.String(overlayPackage)) != 0 {
			return nil, fmt.Errorf("%w: %s: package %s: operator modules must be in package %s.v1",
				broker.ErrInvalid, name, mod.Package.Path, overlayPackage)
		}
		if b, ok := base[name]; ok {
			bm, err := ast.ParseModuleWithOpts(name, string(b), ast.ParserOptions{RegoVersion: ast.RegoV1})
			if err != nil || len(bm.Package.Path) < 2 || bm.Package.Path[1].Value.Compare(ast.String(overlayPackage)) != 0 {
				return nil, fmt.Errorf("%w: %s would replace a built-in module that is not regulatory", broker.ErrInvalid, name)
			}
		}
		out[name] = src
	}
	return out, nil
}

// bundleHash is "sha256:" + hex of SHA-256 over the module files in name
// order, each as name, NUL, length, NUL, source, followed by the taxonomy
// data the same way under the name "data/taxonomy.json".
func bundleHash(mods Modules, taxonomy []byte) string {
	h := sha256.New()
	write := func(name string, b []byte) {
		io.WriteString(h, name+"\x00"+strconv.Itoa(len(b))+"\x00")
		h.Write(b)
	}
	for _, name := range slices.Sorted(maps.Keys(mods)) {
		write(name, mods[name])
	}
	write("data/taxonomy.json", taxonomy)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
