-- `loyalty-core purge-idempotency` deletes keys older than the replay window, oldest first, a
-- batch per transaction: this index finds each batch without reading the whole table.
CREATE INDEX idempotency_key_created_at ON idempotency_key (created_at);
