package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stewardhq/steward/broker/oauth"
	"github.com/stewardhq/steward/broker/oauth/dpop"
	"github.com/stewardhq/steward/broker/oauthconsent"
	"github.com/stewardhq/steward/broker/policy"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/web"
)

// oauthCleanupEvery is how often expired codes, tokens, jtis and DPoP
// proofs are deleted.
const oauthCleanupEvery = 5 * time.Minute

// loadOrCreateFile returns the file's bytes, first writing make()'s output
// to it (mode 0600) when it does not exist.
func loadOrCreateFile(path string, make func() ([]byte, error)) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if b, err = make(); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
		return b, nil
	}
	return b, err
}

// loadOAuthKeys reads the authorization server's ECDSA P-256 signing key
// (PKCS #8 PEM) and its token/cookie secret, creating both on first start.
func loadOAuthKeys(c config) (*ecdsa.PrivateKey, []byte, error) {
	keyFile, secretFile := c.OAuthKeyFile, c.OAuthSecretFile
	if keyFile == "" {
		keyFile = filepath.Join(c.DataDir, "oauth.key")
	}
	if secretFile == "" {
		secretFile = filepath.Join(c.DataDir, "oauth.secret")
	}
	pemBytes, err := loadOrCreateFile(keyFile, func() ([]byte, error) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("oauth key: %w", err)
	}
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		return nil, nil, fmt.Errorf("oauth key file %s: not PEM", keyFile)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("oauth key file %s: %w", keyFile, err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("oauth key file %s: want an ECDSA P-256 key", keyFile)
	}
	secret, err := loadOrCreateFile(secretFile, func() ([]byte, error) {
		b := make([]byte, 32)
		_, err := rand.Read(b)
		return b, err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("oauth secret: %w", err)
	}
	return key, secret, nil
}

// startOAuth builds the authorization server for issuer, with consent
// decided by broker/consent under the policy engine, and starts the
// periodic cleanup. It returns nil (and logs why) when issuer cannot be an
// OAuth issuer: plain http on a host other than loopback.
// startOAuth starts the authorization server. Its consent decisions use
// eng, the one policy engine serve runs, so the operator's reloads apply
// to them at once.
func startOAuth(ctx context.Context, c config, s backend.Migrator, eng *policy.Engine, issuer string, log *slog.Logger) (*oauth.Provider, func(), error) {
	if u, err := url.Parse(issuer); err != nil || u.Scheme != "https" && u.Hostname() != "127.0.0.1" && u.Hostname() != "localhost" && u.Hostname() != "::1" {
		log.LogAttrs(ctx, slog.LevelWarn, "oauth server disabled: set --public-url to an https URL", slog.String("issuer", issuer))
		return nil, func() {}, nil
	}
	key, secret, err := loadOAuthKeys(c)
	if err != nil {
		return nil, nil, err
	}
	v, err := newDPoPValidator(secret, s.OAuth())
	if err != nil {
		return nil, nil, err
	}
	svc := consentService(s, eng)
	p, err := oauth.New(oauth.Config{Issuer: issuer, SigningKey: key, Secret: secret, Store: s, Templates: web.Templates, Logger: log,
		DPoP: v, DPoPOptional: false, AccessTokenLifespan: c.AccessTokenTTL, Decoupled: oauthconsent.Decoupled(svc),
		JWKSAllowLoopback: c.OAuthJWKSAllowLoopback, ClientIP: clientIPFrom(c.ClientIPHeader)}, s.OAuth(), oauthconsent.Func(svc))
	if err != nil {
		return nil, nil, err
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(oauthCleanupEvery)
		defer t.Stop()
		for {
			select {
			case <-cctx.Done():
				return
			case <-t.C:
				if n, err := p.Cleanup(cctx); err != nil {
					log.LogAttrs(cctx, slog.LevelError, "oauth cleanup", slog.Any("error", err))
				} else {
					log.LogAttrs(cctx, slog.LevelDebug, "oauth cleanup", slog.Int64("rows", n))
				}
			}
		}
	}()
	return p, func() { cancel(); <-done }, nil
}

// newDPoPValidator returns the DPoP proof validator (RFC 9449). Its nonce
// key is derived from the OAuth secret, so every replica issues and
// accepts the same nonces; accepted proofs are remembered in the database,
// so a proof replayed to another replica is refused too.
func newDPoPValidator(secret []byte, storage oauth.Storage) (*dpop.Validator, error) {
	nonceKey, err := hkdf.Key(sha256.New, secret, nil, "steward dpop nonce", dpop.MinNonceKeySize)
	if err != nil {
		return nil, fmt.Errorf("dpop nonce key: %w", err)
	}
	nonces, err := dpop.NewNonces(0, nonceKey)
	if err != nil {
		return nil, fmt.Errorf("dpop nonces: %w", err)
	}
	return dpop.NewValidator(dpop.Config{Replay: oauth.NewReplayCache(storage, nil), Nonces: nonces})
}

// clientIPFrom returns, for a header set by the reverse proxy in front of
// Steward, a func reading the client's address from its last entry (the
// one the proxy appended; earlier ones come from the client and prove
// nothing). Without a header, or when it holds no address, the
// connection's peer is used (nil means that to the provider).
func clientIPFrom(header string) func(*http.Request) string {
	if header == "" {
		return nil
	}
	return func(r *http.Request) string {
		vs := r.Header.Values(header)
		if len(vs) > 0 {
			parts := strings.Split(vs[len(vs)-1], ",")
			if a, err := netip.ParseAddr(strings.TrimSpace(parts[len(parts)-1])); err == nil {
				return a.String()
			}
		}
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			return r.RemoteAddr
		}
		return host
	}
}
