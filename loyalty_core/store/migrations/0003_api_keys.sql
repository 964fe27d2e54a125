-- API keys: who may call loyalty-core, with which rights, on which programmes.
--
-- Only the sha256 of a key is stored: keys are 32 random bytes, so a plain hash is enough
-- (no salt or slow hash is needed against guessing) and lets a lookup be one index probe.
-- A key is revoked, never deleted, and a name is never reused: every ledger movement
-- records the key's name as its actor, and that name must keep meaning one key.

CREATE TABLE api_key (
    name                     text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    key_hash                 bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    -- The first characters of the key, so an operator can tell which key a client holds.
    key_prefix               text NOT NULL CHECK (length(key_prefix) BETWEEN 4 AND 16),
    rights                   text[] NOT NULL CHECK (
                                 cardinality(rights) >= 1
                                 AND rights <@ ARRAY['pos', 'ecommerce', 'programme_admin', 'personal_discount',
                                                     'manual_points', 'level_status', 'read_only']::text[]),
    -- true: every programme, present and future; programme_ids is then empty.
    all_programmes           boolean NOT NULL,
    programme_ids            uuid[] NOT NULL DEFAULT '{}',
    created_at               timestamptz NOT NULL,
    revoked_at               timestamptz,
    CHECK (all_programmes = (cardinality(programme_ids) = 0))
);
