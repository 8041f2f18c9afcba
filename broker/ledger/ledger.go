// Package ledger is Steward's append-only, verifiable consent ledger: a
// transparency log in the style of Certificate Transparency and the Go
// checksum database.
//
// Every consent event and every disclosure is a broker.Entry. Its canonical
// bytes become a leaf of an RFC 6962 / RFC 9162 Merkle tree. The tree is
// published as signed checkpoints (c2sp.org/tlog-checkpoint notes signed
// with Ed25519 per c2sp.org/signed-note) and c2sp.org/tlog-tiles, so anyone
// can check it with tools nobody at Steward wrote. Witnesses cosign the
// checkpoints (c2sp.org/tlog-cosignature) after checking that each one is
// consistent with the last they saw.
//
// # Life of an entry
//
//  1. Stage: the entry's bytes are inserted into a staging table in the same
//     SQL transaction as the state change they record (a grant, a
//     disclosure). Either both commit or neither does. Entries with no such
//     transaction use Storage.Stage.
//  2. Sequence: the sequencer moves staged entries, in batches (group
//     commit), into the leaf table at dense indices 0, 1, 2, … under one
//     coordination row. Sequencing is the one serialised step.
//  3. Integrate: the integrator reads newly sequenced leaves, computes the
//     stored hashes of the tree with golang.org/x/mod/sumdb/tlog, writes
//     them, and signs and stores a new checkpoint with compare-and-swap on
//     the tree size.
//
// Start runs steps 2 and 3 continuously. Every step is idempotent and safe
// to restart after a crash at any point; see Storage for the contracts.
//
// # Reading
//
// Handler serves the tlog-tiles read API (checkpoint, tiles, entry bundles)
// and JSON proofs; Export writes the same files into a directory;
// NewReceipt and VerifyReceipt build and check a broker.Receipt. Package
// ledger/verify audits a whole log; package ledger/witness cosigns it.
//
// This package never hashes Merkle nodes itself: all tree math is
// golang.org/x/mod/sumdb/tlog.
package ledger

import (
	"context"

	"golang.org/x/mod/sumdb/tlog"
)

// TileHeight is the height of every tile, fixed at 8 by c2sp.org/tlog-tiles.
const TileHeight = 8

// TileWidth is the number of hashes in a full tile and of entries in a full
// entry bundle.
const TileWidth = 1 << TileHeight

// Reader is the read side of ledger storage: all that proofs, receipts,
// the HTTP handlers and Export need. Storage includes it.
type Reader interface {
	// ReadCheckpoint returns the signed note of the latest checkpoint,
	// exactly as given to Storage.WriteCheckpoint, and its tree size.
	// It MUST return an error wrapping broker.ErrNotFound when no
	// checkpoint has been written.
	ReadCheckpoint(ctx context.Context) (size int64, note []byte, err error)

	// ReadLeaves returns the sequenced entries at indices [start, start+n),
	// in index order. It MUST return exactly n entries, or an error
	// wrapping broker.ErrNotFound if any of those indices is not sequenced.
	// It MUST return the bytes exactly as staged.
	ReadLeaves(ctx context.Context, start int64, n int) ([][]byte, error)

	// ReadHashes returns the stored hashes at the given stored-hash
	// indexes (tlog.StoredHashIndex numbering), in the order asked. It MUST
	// return an error wrapping broker.ErrNotFound if any is not stored.
	ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error)

	// ReadCosignatures returns the witness cosignature lines stored for the
	// checkpoint of tree size size (each a complete signed-note signature
	// line ending in '\n'), ordered by witness name. No cosignatures is not
	// an error.
	ReadCosignatures(ctx context.Context, size int64) ([][]byte, error)

	// FindLeaf returns the lowest index whose entry has RFC 6962 leaf hash
	// h (tlog.RecordHash of the entry). It MUST return an error wrapping
	// broker.ErrNotFound if no sequenced entry has that hash, including
	// entries still staged.
	FindLeaf(ctx context.Context, h tlog.Hash) (int64, error)
}

// Storage is what the sequencer and integrator need from persistence.
// Implementations: ledger/memory (tests), store/postgres and store/sqlite.
// Every implementation MUST pass ledgertest.Run.
//
// Storage is shared by every replica of the broker: all methods MUST be
// safe for concurrent use, from one process or many.
//
// The leaf, hash and checkpoint tables are append-only: no method ever
// changes or removes a row of them once written.
type Storage interface {
	Reader

	// Stage durably queues entries for sequencing, in the order given.
	// Once Stage returns nil, each entry MUST be sequenced exactly once by
	// later calls to Sequence. Stage MUST NOT assign indices.
	//
	// SQL stores also stage entries inside business transactions by
	// inserting into the same staging table; Stage is the same insert in
	// a transaction of its own.
	Stage(ctx context.Context, entries ...[]byte) error

	// Sequence moves up to limit of the oldest staged entries (in staging
	// order) into the leaf table at the next indices and returns the new
	// number of sequenced entries. With nothing staged it moves nothing
	// and returns the current number.
	//
	// It MUST be atomic: after a crash at any point either the whole batch
	// is sequenced and gone from staging, or none of it is. Concurrent
	// calls, from any process, MUST be serialised (a SQL store locks one
	// coordination row with SELECT … FOR UPDATE), so that indices are
	// dense: never reused and never skipped.
	Sequence(ctx context.Context, limit int) (size int64, err error)

	// Size returns the number of sequenced entries.
	Size(ctx context.Context) (int64, error)

	// WriteHashes stores hashes at stored-hash indexes start,
	// start+1, …. It MUST be idempotent: writing a hash that is already
	// stored with the same value succeeds and changes nothing. Writing a
	// different value at an index already stored MUST fail with an error
	// wrapping broker.ErrConflict and store none of the batch.
	WriteHashes(ctx context.Context, start int64, hashes []tlog.Hash) error

	// WriteCheckpoint stores note as the checkpoint of tree size size,
	// provided the latest stored checkpoint has size old (no checkpoint
	// counts as size 0) and size ≥ old. Otherwise, or if a checkpoint of
	// size size is already stored, it MUST fail with an error wrapping
	// broker.ErrConflict and store nothing. This compare-and-swap makes a
	// racing integrator harmless.
	WriteCheckpoint(ctx context.Context, old, size int64, note []byte) error

	// AddCosignature stores a witness's cosignature line for the
	// checkpoint of tree size size. A later line from the same witness for
	// the same size replaces the earlier one.
	AddCosignature(ctx context.Context, size int64, witness string, line []byte) error
}
