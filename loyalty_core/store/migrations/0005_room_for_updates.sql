-- Every write claims its idempotency key (INSERT) and stores its result in the same row before it
-- commits (UPDATE), and a capture updates the order a checkout inserted. With full pages the new
-- row versions go to other pages and every index gets a new entry (about two in three of these
-- updates, measured under the benchmark's load); with room left on the page they are HOT updates,
-- which touch no index. Applies to pages written from now on (VACUUM FULL rewrites old ones).
ALTER TABLE idempotency_key SET (fillfactor = 70);
ALTER TABLE orders SET (fillfactor = 80);
