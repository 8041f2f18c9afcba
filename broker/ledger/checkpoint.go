package ledger

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"

	"github.com/stewardhq/steward/broker"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint is the body of a c2sp.org/tlog-checkpoint: the log's origin,
// its tree size and the RFC 6962 root hash of the tree of that size.
type Checkpoint struct {
	Origin string
	Size   int64
	Hash   tlog.Hash
}

// EmptyRoot is the RFC 6962 hash of the empty tree, SHA-256 of nothing.
var EmptyRoot = tlog.Hash(sha256.Sum256(nil))

// Text returns the checkpoint body: origin, decimal size and standard
// base64 root hash, each on its own line.
func (c Checkpoint) Text() []byte {
	return fmt.Appendf(nil, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Hash[:]))
}

// ParseCheckpoint parses a checkpoint body. It accepts extension lines
// after the first three (other logs use them) but refuses a body whose
// first three lines are not in the exact form Text writes.
func ParseCheckpoint(text []byte) (Checkpoint, error) {
	lines := bytes.SplitN(text, []byte("\n"), 4)
	if len(lines) < 4 {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint has fewer than three lines", broker.ErrInvalid)
	}
	origin := string(lines[0])
	if origin == "" {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint has an empty origin", broker.ErrInvalid)
	}
	size, err := strconv.ParseInt(string(lines[1]), 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != string(lines[1]) {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint size %q", broker.ErrInvalid, lines[1])
	}
	h, err := base64.StdEncoding.Strict().DecodeString(string(lines[2]))
	if err != nil || len(h) != tlog.HashSize {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint root hash %q", broker.ErrInvalid, lines[2])
	}
	rest := lines[3]
	if len(rest) > 0 && (rest[len(rest)-1] != '\n' || rest[0] == '\n' || bytes.Contains(rest, []byte("\n\n"))) {
		return Checkpoint{}, fmt.Errorf("%w: malformed checkpoint extension lines", broker.ErrInvalid)
	}
	return Checkpoint{Origin: origin, Size: size, Hash: tlog.Hash(h)}, nil
}

// SignCheckpoint returns c as a signed note.
func SignCheckpoint(c Checkpoint, signer note.Signer) ([]byte, error) {
	msg, err := note.Sign(&note.Note{Text: string(c.Text())}, signer)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint %s@%d: %w", c.Origin, c.Size, err)
	}
	return msg, nil
}

// OpenCheckpoint verifies a signed checkpoint note: it must carry a valid
// signature by logKey, and its origin must be logKey's name (the C2SP
// convention). Signatures by other keys, such as witnesses', are
// allowed and returned unverified in the note's UnverifiedSigs.
// Verification failures wrap broker.ErrInvalid.
func OpenCheckpoint(msg []byte, logKey note.Verifier) (Checkpoint, *note.Note, error) {
	n, err := note.Open(msg, note.VerifierList(logKey))
	if err != nil {
		return Checkpoint{}, nil, fmt.Errorf("%w: checkpoint signature: %v", broker.ErrInvalid, err)
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, nil, err
	}
	if c.Origin != logKey.Name() {
		return Checkpoint{}, nil, fmt.Errorf("%w: checkpoint origin %q is not the key name %q", broker.ErrInvalid, c.Origin, logKey.Name())
	}
	return c, n, nil
}

// GenerateKey returns a new Ed25519 signer key (keep secret) and verifier
// key (publish; served at <prefix>vkey) in signed-note key format for a log
// whose origin is origin, such as "steward.example/ledger".
func GenerateKey(origin string) (skey, vkey string, err error) {
	skey, vkey, err = note.GenerateKey(rand.Reader, origin)
	if err != nil {
		return "", "", fmt.Errorf("generate key for %q: %w", origin, err)
	}
	return skey, vkey, nil
}

// appendSignatures adds signature lines to a signed note. Each line is a
// complete "— name base64\n" line.
func appendSignatures(msg []byte, lines [][]byte) []byte {
	out := bytes.Clone(msg)
	for _, l := range lines {
		out = append(out, l...)
	}
	return out
}
