// Package dpop implements OAuth 2.0 Demonstrating Proof of Possession
// (DPoP, RFC 9449) for Steward: validating proofs, binding tokens to the
// client's key by its JWK SHA-256 thumbprint (RFC 7638), server nonces,
// replay detection, the resource-server binding check, and the fosite
// handlers that bind tokens issued at the token endpoint.
//
// # Contracts
//
// A Validator accepts a proof only if every check of RFC 9449 §4.3 passes:
//
//   - the proof is a single compact JWS no longer than MaxProofSize;
//   - its header typ is dpop+jwt, its alg is one of the configured
//     asymmetric algorithms (never none, never an HMAC), it names no crit
//     extension, and its jwk is a public key of the type alg demands (a
//     key with private members MUST be refused);
//   - the signature verifies with that jwk;
//   - the claims jti, htm, htu and iat are present; htm equals the request
//     method; htu equals the request URI without query and fragment after
//     RFC 3986 §6.2.2–6.2.3 normalisation; iat lies within Window (plus
//     Leeway) of the server's clock, in either direction;
//   - when an access token is presented, ath is base64url(SHA-256(token));
//   - when the Validator has Nonces, the nonce claim is a current nonce,
//     otherwise the error is use_dpop_nonce carrying a fresh nonce;
//   - the proof (its iat, key thumbprint and jti: ReplayKey) has not been
//     accepted before, as told by the ReplayCache (an error from the cache
//     refuses the proof).
//
// A token bound to a key (its cnf.jkt) MUST be refused by a resource server
// when presented as Bearer, without a proof, with a proof signed by another
// key, or with a replayed proof; Validator.CheckBinding does exactly that.
//
// Errors are *fosite.RFC6749Error values (invalid_dpop_proof,
// use_dpop_nonce, invalid_token) for fosite or the resource server to
// render. Nothing in this package logs, and errors never quote the proof
// or the token.
//
// # Authorization server
//
// fosite runs its handlers in the order they were composed, and these
// handlers depend on that order:
//
//   - PARHandler before fosite's PAR handler (which stores the request);
//   - AuthorizeHandler before fosite's authorization-code handler (which
//     stores the session behind the code);
//   - TokenHandler before fosite's grant and PKCE handlers (so a refused
//     proof, or a use_dpop_nonce round trip, consumes nothing);
//   - TokenHandler.Binding after fosite's grant handlers (so it sees the
//     session they restore).
//
// The session type MUST implement Binder and keep the thumbprint across
// Clone and storage. Endpoints MUST copy NonceFromError into the DPoP-Nonce
// header of error responses. broker/oauth.Extensions does all of this.
//
// An authorization server and a resource server that want nonces from
// different sources use two Validators; they MAY share a ReplayCache.
package dpop

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
)

// Header is the request header that carries a DPoP proof.
const Header = "DPoP"

// ProofType is the required typ header of a DPoP proof.
const ProofType = "dpop+jwt"

// Defaults for Config.
const (
	DefaultWindow       = 60 * time.Second
	DefaultLeeway       = 5 * time.Second
	DefaultMaxProofSize = 8 << 10
	// MinRSABits is the smallest RSA modulus accepted for PS* proofs.
	MinRSABits = 2048
)

// DefaultAlgorithms are the proof algorithms accepted when Config.Algorithms
// is empty: those FAPI 2.0 allows.
var DefaultAlgorithms = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.PS256}

// supported lists every asymmetric algorithm a Config may name.
var supported = map[jose.SignatureAlgorithm]bool{
	jose.ES256: true, jose.ES384: true, jose.ES512: true,
	jose.EdDSA: true,
	jose.PS256: true, jose.PS384: true, jose.PS512: true,
	jose.RS256: true, jose.RS384: true, jose.RS512: true,
}

// Config configures a Validator. The zero value of each optional field
// selects the default.
type Config struct {
	// Replay remembers accepted proofs. Required.
	Replay ReplayCache
	// Algorithms are the accepted proof algorithms, all asymmetric.
	Algorithms []jose.SignatureAlgorithm
	// Window is the largest accepted distance between iat and now.
	Window time.Duration
	// Leeway is added to Window to absorb clock skew.
	Leeway time.Duration
	// Nonces, when set, requires every proof to carry a current server nonce.
	Nonces *Nonces
	// MaxProofSize bounds the proof's length in bytes.
	MaxProofSize int
	// Now returns the current time; time.Now if nil.
	Now func() time.Time
}

// Validator validates DPoP proofs. It is safe for concurrent use.
type Validator struct {
	replay  ReplayCache
	algs    map[jose.SignatureAlgorithm]bool
	names   []string
	window  time.Duration
	leeway  time.Duration
	nonces  *Nonces
	maxSize int
	now     func() time.Time
}

// NewValidator checks c, fills its defaults and returns a Validator.
func NewValidator(c Config) (*Validator, error) {
	if c.Replay == nil {
		return nil, errors.New("dpop: config needs a replay cache")
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = DefaultAlgorithms
	}
	v := &Validator{
		replay: c.Replay, algs: map[jose.SignatureAlgorithm]bool{},
		window: c.Window, leeway: c.Leeway, nonces: c.Nonces, maxSize: c.MaxProofSize, now: c.Now,
	}
	for _, a := range c.Algorithms {
		if !supported[a] {
			return nil, fmt.Errorf("dpop: algorithm %q is not an asymmetric signature algorithm", a)
		}
		if !v.algs[a] {
			v.names = append(v.names, string(a))
		}
		v.algs[a] = true
	}
	if v.window == 0 {
		v.window = DefaultWindow
	}
	if v.leeway == 0 {
		v.leeway = DefaultLeeway
	}
	if v.window < 0 || v.leeway < 0 {
		return nil, errors.New("dpop: negative window or leeway")
	}
	if v.maxSize == 0 {
		v.maxSize = DefaultMaxProofSize
	}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

// WithReplay returns a Validator like v (same algorithms, window, nonces
// and clock) that remembers proofs in r instead. A resource server that
// records each proof in its own database transaction uses it.
func (v *Validator) WithReplay(r ReplayCache) *Validator {
	w := *v
	w.replay = r
	return &w
}

// Algorithms returns the accepted algorithm names, for the
// dpop_signing_alg_values_supported metadata and WWW-Authenticate challenges.
func (v *Validator) Algorithms() []string { return append([]string(nil), v.names...) }

// Nonce returns a fresh server nonce, or "" if the Validator uses none.
// Servers MAY send it as the DPoP-Nonce header on successful responses.
func (v *Validator) Nonce() string {
	if v.nonces == nil {
		return ""
	}
	return v.nonces.Issue(v.now())
}

// Request is one HTTP request carrying a DPoP proof.
type Request struct {
	// Proof is the value of the single DPoP header (see ProofFromHeader).
	Proof string
	// Method is the HTTP method the request used.
	Method string
	// URL is the absolute URI the server is known by, as the client addressed
	// it (scheme, host, path); query and fragment are ignored. Servers behind
	// a proxy MUST build it from configuration, not from the Host header.
	URL string
	// AccessToken is the access token presented with the proof at a
	// resource server; empty at the token endpoint. When set, the proof
	// MUST carry a matching ath claim.
	AccessToken string
}

// Proof is an accepted DPoP proof.
type Proof struct {
	// JKT is the RFC 7638 SHA-256 thumbprint of the proof key, base64url:
	// the value bound into a token's cnf.jkt.
	JKT string
	// Key is the proof's public key.
	Key jose.JSONWebKey
	// ID is the proof's jti.
	ID string
	// IssuedAt is the proof's iat.
	IssuedAt time.Time
}

// ProofFromHeader returns the single DPoP proof in h, or "" if there is none.
// More than one DPoP header (or a comma-joined list) is an error (§4.3 check 1).
func ProofFromHeader(h http.Header) (string, error) {
	vs := h.Values(Header)
	switch {
	case len(vs) == 0:
		return "", nil
	case len(vs) > 1 || strings.Contains(vs[0], ","):
		return "", ErrInvalidDPoPProof.WithHint("More than one DPoP header.")
	}
	return strings.TrimSpace(vs[0]), nil
}

type header struct {
	Typ  string          `json:"typ"`
	Alg  string          `json:"alg"`
	JWK  json.RawMessage `json:"jwk"`
	Crit json.RawMessage `json:"crit"`
}

type claims struct {
	JTI   *string         `json:"jti"`
	HTM   *string         `json:"htm"`
	HTU   *string         `json:"htu"`
	IAT   json.RawMessage `json:"iat"`
	ATH   *string         `json:"ath"`
	Nonce *string         `json:"nonce"`
}

// privateMembers are JWK members that only private or symmetric keys have.
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

func invalid(hint string) error { return ErrInvalidDPoPProof.WithHint(hint) }

// Validate checks r.Proof against r as described in the package
// documentation and returns the accepted proof.
func (v *Validator) Validate(ctx context.Context, r Request) (Proof, error) {
	now := v.now()
	if r.Proof == "" {
		return Proof{}, invalid("No DPoP proof.")
	}
	if len(r.Proof) > v.maxSize {
		return Proof{}, invalid("The DPoP proof is too large.")
	}
	parts, ok := compactParts(r.Proof)
	if !ok {
		return Proof{}, invalid("The DPoP proof is not a compact JWS.")
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return Proof{}, invalid("The DPoP proof header is not base64url.")
	}
	var h header
	if err := json.Unmarshal(hb, &h); err != nil {
		return Proof{}, invalid("The DPoP proof header is not a JSON object.")
	}
	if !strings.EqualFold(h.Typ, ProofType) {
		return Proof{}, invalid("The DPoP proof typ is not dpop+jwt.")
	}
	alg := jose.SignatureAlgorithm(h.Alg)
	if !v.algs[alg] {
		return Proof{}, invalid("The DPoP proof alg is not supported; use one of " + strings.Join(v.names, ", ") + ".")
	}
	if h.Crit != nil {
		return Proof{}, invalid("The DPoP proof names a critical header extension.")
	}
	key, jkt, err := cachedJWK(h.JWK, alg)
	if err != nil {
		return Proof{}, err
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return Proof{}, invalid("The DPoP proof payload is not base64url.")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !verifySignature(alg, key.Key, r.Proof[:len(parts[0])+1+len(parts[1])], sig) {
		return Proof{}, invalid("The DPoP proof signature does not verify with its jwk.")
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return Proof{}, invalid("The DPoP proof claims are not a JSON object.")
	}
	switch {
	case c.JTI == nil || *c.JTI == "":
		return Proof{}, invalid("The DPoP proof has no jti.")
	case len(*c.JTI) > 256:
		return Proof{}, invalid("The DPoP proof jti is too long.")
	case c.HTM == nil:
		return Proof{}, invalid("The DPoP proof has no htm.")
	case c.HTU == nil:
		return Proof{}, invalid("The DPoP proof has no htu.")
	case c.IAT == nil || string(c.IAT) == "null":
		return Proof{}, invalid("The DPoP proof has no iat.")
	}
	if *c.HTM != r.Method {
		return Proof{}, invalid("The DPoP proof htm does not match the request method.")
	}
	want, err := NormalizeURI(r.URL)
	if err != nil {
		return Proof{}, fosite.ErrServerError.WithWrap(err).WithDebug("the server's request URI is not absolute")
	}
	got, err := NormalizeURI(*c.HTU)
	if err != nil || got != want {
		return Proof{}, invalid("The DPoP proof htu does not match the request URI.")
	}
	iat, err := strconv.ParseFloat(string(c.IAT), 64)
	if err != nil || c.IAT[0] == '"' || math.IsNaN(iat) || math.IsInf(iat, 0) || iat < 0 || iat > 1<<40 {
		return Proof{}, invalid("The DPoP proof iat is not a NumericDate.")
	}
	sec, frac := math.Modf(iat)
	issued := time.Unix(int64(sec), int64(frac*1e9))
	if issued.After(now.Add(v.window + v.leeway)) {
		return Proof{}, invalid("The DPoP proof iat is in the future.")
	}
	if issued.Before(now.Add(-v.window - v.leeway)) {
		return Proof{}, invalid("The DPoP proof iat is too old.")
	}
	if r.AccessToken != "" {
		sum := sha256.Sum256([]byte(r.AccessToken))
		ath := base64.RawURLEncoding.EncodeToString(sum[:])
		if c.ATH == nil || subtle.ConstantTimeCompare([]byte(*c.ATH), []byte(ath)) != 1 {
			return Proof{}, invalid("The DPoP proof ath does not match the access token.")
		}
	}
	if v.nonces != nil && (c.Nonce == nil || !v.nonces.Valid(*c.Nonce, now)) {
		return Proof{}, ErrUseDPoPNonce.WithHint("Retry with the nonce in the DPoP-Nonce header.").
			WithWrap(&nonceRequired{nonce: v.nonces.Issue(now)})
	}
	seen, err := v.replay.Seen(ctx, ReplayKey(issued, jkt, *c.JTI), issued.Add(v.window+v.leeway))
	if err != nil {
		return Proof{}, fosite.ErrServerError.WithWrap(err).WithDebug("dpop replay cache")
	}
	if seen {
		return Proof{}, invalid("The DPoP proof was used before.")
	}
	return Proof{JKT: jkt, Key: key, ID: *c.JTI, IssuedAt: issued}, nil
}

// verifySignature reports whether sig is alg's signature by key of the
// JWS signing input (RFC 7515 §5.2: the encoded header, '.', the encoded
// payload), as RFC 7518 §3.3–3.5 and RFC 8037 §3.1 define them. key is
// publicJWK's, so its type fits alg. The header has been parsed and
// checked above; go-jose's ParseSigned would parse it, and the jwk in it,
// a second time, which cost a fifth of a proof's validation.
func verifySignature(alg jose.SignatureAlgorithm, key any, input string, sig []byte) bool {
	var h crypto.Hash
	switch alg {
	case jose.ES256, jose.RS256, jose.PS256:
		h = crypto.SHA256
	case jose.ES384, jose.RS384, jose.PS384:
		h = crypto.SHA384
	case jose.ES512, jose.RS512, jose.PS512:
		h = crypto.SHA512
	}
	digest := func() []byte {
		d := h.New()
		d.Write([]byte(input))
		return d.Sum(nil)
	}
	switch k := key.(type) {
	case ed25519.PublicKey:
		return alg == jose.EdDSA && ed25519.Verify(k, []byte(input), sig)
	case *ecdsa.PublicKey:
		// R and S, each the curve's size in bytes, big-endian.
		n := (k.Curve.Params().BitSize + 7) / 8
		if h == 0 || len(sig) != 2*n {
			return false
		}
		return ecdsa.Verify(k, digest(), new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:]))
	case *rsa.PublicKey:
		switch alg {
		case jose.RS256, jose.RS384, jose.RS512:
			return rsa.VerifyPKCS1v15(k, h, digest(), sig) == nil
		case jose.PS256, jose.PS384, jose.PS512:
			// RFC 7518 §3.5: the salt is as long as the hash.
			return rsa.VerifyPSS(k, h, digest(), sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
		}
	}
	return false
}

// compactParts splits a compact JWS into its three base64url parts.
func compactParts(s string) ([]string, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return nil, false
		}
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return nil, false
	}
	return parts, true
}

// jwkCache remembers the keys of proof headers already checked: a client
// signs every proof with the same key, and parsing and checking it (and
// hashing its thumbprint) is a pure function of the header's bytes and
// alg. Failures are not cached.
var jwkCache struct {
	sync.Mutex
	m map[string]checkedJWK
}

type checkedJWK struct {
	key jose.JSONWebKey
	jkt string
}

// maxCachedJWKs bounds jwkCache; past it the cache starts afresh.
const maxCachedJWKs = 4096

// cachedJWK is publicJWK and Thumbprint, remembered.
func cachedJWK(raw json.RawMessage, alg jose.SignatureAlgorithm) (jose.JSONWebKey, string, error) {
	id := string(alg) + "\x00" + string(raw)
	jwkCache.Lock()
	c, ok := jwkCache.m[id]
	jwkCache.Unlock()
	if ok {
		return c.key, c.jkt, nil
	}
	key, err := publicJWK(raw, alg)
	if err != nil {
		return jose.JSONWebKey{}, "", err
	}
	jkt, err := Thumbprint(&key)
	if err != nil {
		return jose.JSONWebKey{}, "", invalid("The DPoP proof jwk has no thumbprint.")
	}
	jwkCache.Lock()
	if jwkCache.m == nil || len(jwkCache.m) >= maxCachedJWKs {
		jwkCache.m = map[string]checkedJWK{}
	}
	jwkCache.m[id] = checkedJWK{key: key, jkt: jkt}
	jwkCache.Unlock()
	return key, jkt, nil
}

// publicJWK parses the jwk header and checks that it is a public key of
// the kind alg uses.
func publicJWK(raw json.RawMessage, alg jose.SignatureAlgorithm) (jose.JSONWebKey, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return jose.JSONWebKey{}, invalid("The DPoP proof header has no jwk.")
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return jose.JSONWebKey{}, invalid("The DPoP proof jwk is not a JSON object.")
	}
	for _, m := range privateMembers {
		if _, ok := members[m]; ok {
			return jose.JSONWebKey{}, invalid("The DPoP proof jwk contains private or symmetric key material.")
		}
	}
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(raw); err != nil || !k.Valid() || !k.IsPublic() {
		return jose.JSONWebKey{}, invalid("The DPoP proof jwk is not a valid public key.")
	}
	ok := false
	switch pk := k.Key.(type) {
	case *ecdsa.PublicKey:
		ok = alg == jose.ES256 && pk.Curve == elliptic.P256() ||
			alg == jose.ES384 && pk.Curve == elliptic.P384() ||
			alg == jose.ES512 && pk.Curve == elliptic.P521()
	case ed25519.PublicKey:
		ok = alg == jose.EdDSA
	case *rsa.PublicKey:
		ok = strings.HasPrefix(string(alg), "PS") || strings.HasPrefix(string(alg), "RS")
		if ok && pk.N.BitLen() < MinRSABits {
			return jose.JSONWebKey{}, invalid("The DPoP proof RSA key is too short.")
		}
	}
	if !ok {
		return jose.JSONWebKey{}, invalid("The DPoP proof jwk does not fit its alg.")
	}
	return k, nil
}

// Thumbprint returns the RFC 7638 JWK SHA-256 thumbprint of k, base64url
// without padding: the value of cnf.jkt and of the dpop_jkt parameter.
func Thumbprint(k *jose.JSONWebKey) (string, error) {
	pub := k.Public()
	if !pub.Valid() {
		return "", errors.New("dpop: thumbprint of an invalid or symmetric key")
	}
	b, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("dpop: thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// ValidJKT reports whether s has the form of a SHA-256 JWK thumbprint.
func ValidJKT(s string) bool {
	if len(s) != base64.RawURLEncoding.EncodedLen(sha256.Size) {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil
}
