package broker

// Receipt is what Steward hands a firm (and shows a customer) for a ledger
// entry: proof that the entry is in the public ledger. The ledger package
// builds and verifies receipts; this type only carries them.
//
// A receipt exists once the entry is sequenced (it has an index). Once the
// entry is integrated it also carries a signed checkpoint and an RFC 6962
// inclusion proof against that checkpoint, which anyone holding the log's
// public key can check offline, without asking Steward.
type Receipt struct {
	// Index is the entry's position in the ledger, counting from 0.
	Index int64 `json:"index"`
	// LeafHash is the base64 (standard, padded) RFC 6962 leaf hash of the
	// entry's canonical bytes: SHA-256(0x00 || bytes).
	LeafHash string `json:"leaf_hash"`
	// Checkpoint is a c2sp.org/tlog-checkpoint signed note whose tree
	// contains the entry; empty until the entry is integrated.
	Checkpoint string `json:"checkpoint,omitempty"`
	// Proof is the inclusion proof, base64 hashes from the leaf up, for
	// the tree in Checkpoint.
	Proof []string `json:"proof,omitempty"`
}

// Integrated reports whether the receipt carries an inclusion proof.
func (r Receipt) Integrated() bool { return r.Checkpoint != "" }
