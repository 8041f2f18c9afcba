-- The consent ledger (see docs/ledger.md). Business transactions INSERT
-- into ledger_staged; the sequencer moves staged rows into ledger_leaves at
-- dense indices under the single ledger_coord row; the integrator writes
-- stored hashes and signed checkpoints. leaves, hashes and checkpoints are
-- append-only.
CREATE TABLE ledger_staged (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    entry BLOB NOT NULL
);

CREATE TABLE ledger_coord (
    id   INTEGER PRIMARY KEY CHECK (id IN (0, 1)),
    size BIGINT NOT NULL
);
-- row 0: number of sequenced leaves; row 1: size of the latest checkpoint.
INSERT INTO ledger_coord (id, size) VALUES (0, 0), (1, 0);

CREATE TABLE ledger_leaves (
    idx   BIGINT PRIMARY KEY,
    entry BLOB NOT NULL,
    hash  BLOB NOT NULL
);
CREATE INDEX ledger_leaves_hash ON ledger_leaves (hash);

CREATE TABLE ledger_hashes (
    idx  BIGINT PRIMARY KEY,
    hash BLOB NOT NULL
);

CREATE TABLE ledger_checkpoints (
    size       BIGINT PRIMARY KEY,
    note       BLOB NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE ledger_cosignatures (
    size    BIGINT NOT NULL,
    witness TEXT NOT NULL,
    line    BLOB NOT NULL,
    PRIMARY KEY (size, witness)
);
