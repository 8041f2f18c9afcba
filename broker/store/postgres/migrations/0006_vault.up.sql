-- The encrypted vault. Each customer has a 256-bit data key, stored only
-- wrapped (AES-256-GCM) by the master key of key_version; records hold
-- only values sealed under that data key. Deleting a customer's key row
-- makes every value sealed under it unreadable (crypto-shredding).
CREATE TABLE customer_keys (
    customer_id TEXT PRIMARY KEY REFERENCES customers(id),
    wrapped     BYTEA NOT NULL,
    key_version INTEGER NOT NULL CHECK (key_version > 0),
    created_at  TIMESTAMPTZ NOT NULL
);

-- Records now hold ciphertext instead of plaintext JSON. Plaintext values
-- cannot be sealed in SQL, so the pre-vault table is dropped with its
-- rows (only ever demo data); the demo re-seeds vaults that are empty.
DROP TABLE records;
CREATE TABLE records (
    customer_id TEXT NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    category    TEXT NOT NULL REFERENCES categories(name),
    sealed      BYTEA NOT NULL,
    source      TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (customer_id, category)
);
