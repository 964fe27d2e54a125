-- The transactional outbox, webhook subscriptions and the expiring-points notices (docs/events.md).
--
-- Every domain change writes its events in its own transaction, so a rolled-back change leaves
-- none. Readers (webhook delivery, WatchEvents) read in (tx, position) order and only events whose
-- tx is below the oldest transaction still running (pg_snapshot_xmin): every event that will ever
-- sort before what a reader has seen is already committed, so a cursor never skips one.

-- Per member: its last event's sequence number and the largest tx its events carry. The row is
-- locked by each write of the member's events, so a member's events get dense sequence numbers and
-- a later write never sorts before an earlier one (tx = greatest(own xid, last_tx)).
CREATE TABLE outbox_member (
    member_id       uuid PRIMARY KEY,
    last_seq        bigint NOT NULL CHECK (last_seq >= 1),
    last_tx         xid8 NOT NULL
);

CREATE TABLE outbox_event (
    member_id       uuid NOT NULL,
    -- 1, 2, 3 ... per member, in the order the member's changes committed.
    seq             bigint NOT NULL CHECK (seq >= 1),
    programme_id    uuid NOT NULL,
    -- The stable id receivers deduplicate by (webhook-id).
    event_id        uuid NOT NULL,
    type            text NOT NULL CHECK (type ~ '^[a-z]+(_[a-z]+)*\.[a-z]+(_[a-z]+)*$'),
    payload_version integer NOT NULL CHECK (payload_version >= 1),
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL,
    -- The stream's order: (tx, position). tx is at least the writer's own transaction id.
    tx              xid8 NOT NULL,
    position        bigint GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (member_id, seq)
);
CREATE INDEX outbox_event_stream ON outbox_event (tx, position);
CREATE INDEX outbox_event_programme_stream ON outbox_event (programme_id, tx, position);
CREATE UNIQUE INDEX outbox_event_id ON outbox_event (event_id, member_id);
-- The retention purge takes the oldest first.
CREATE INDEX outbox_event_created_at ON outbox_event (created_at);

-- A receiver of a programme's events. The signing secret is not stored: it is derived from the
-- server's webhook master key and the subscription id (docs/trust.md).
CREATE TABLE webhook_subscription (
    subscription_id uuid PRIMARY KEY,
    programme_id    uuid NOT NULL REFERENCES programme,
    url             text NOT NULL CHECK (url ~ '^https?://' AND length(url) <= 2000),
    -- The event types delivered; empty: every type.
    event_types     text[] NOT NULL DEFAULT '{}',
    description     text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    created_at      timestamptz NOT NULL,
    created_by      text NOT NULL,
    deleted_at      timestamptz,
    -- Delivery progress: every event at or before (cursor_tx, cursor_position) was delivered or
    -- dead-lettered; the event after it is the head, tried `attempts` times so far.
    cursor_tx       xid8 NOT NULL,
    cursor_position bigint NOT NULL CHECK (cursor_position >= 0),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL,
    last_error      text NOT NULL DEFAULT '' CHECK (length(last_error) <= 500)
);
CREATE INDEX webhook_subscription_programme ON webhook_subscription (programme_id) WHERE deleted_at IS NULL;

-- Events a subscription gave up on after its attempts; RedeliverWebhook makes them due again.
CREATE TABLE webhook_dead_letter (
    subscription_id uuid NOT NULL REFERENCES webhook_subscription ON DELETE CASCADE,
    member_id       uuid NOT NULL,
    seq             bigint NOT NULL,
    attempts        integer NOT NULL CHECK (attempts >= 1),
    last_error      text NOT NULL DEFAULT '' CHECK (length(last_error) <= 500),
    dead_at         timestamptz NOT NULL,
    -- Set by RedeliverWebhook: the delivery job tries it once more.
    redeliver_at    timestamptz,
    PRIMARY KEY (subscription_id, member_id, seq)
);
CREATE INDEX webhook_dead_letter_due ON webhook_dead_letter (subscription_id, redeliver_at)
    WHERE redeliver_at IS NOT NULL;

-- One "points expiring soon" notice per member, expiry date and notice window.
CREATE TABLE expiry_notice (
    member_id       uuid NOT NULL,
    expires_on      date NOT NULL,
    days_before     integer NOT NULL CHECK (days_before >= 1),
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (member_id, expires_on, days_before)
);

-- How many days before an expiry date the member's points are announced (e.g. {30,7}); empty: never.
ALTER TABLE programme ADD COLUMN expiry_notice_days integer[] NOT NULL DEFAULT '{}'
    CHECK (cardinality(expiry_notice_days) <= 5 AND 1 <= ALL(expiry_notice_days) AND 366 >= ALL(expiry_notice_days));

-- The right to manage webhooks and read the event stream; 'privacy' and 'order_void' come with
-- their own features (0013, 0015) and are listed so the migrations may land in any order. The list
-- is store/keys.py's RIGHTS.
ALTER TABLE api_key DROP CONSTRAINT api_key_rights_check;
ALTER TABLE api_key ADD CONSTRAINT api_key_rights_check CHECK (
    cardinality(rights) >= 1
    AND rights <@ ARRAY['pos', 'ecommerce', 'programme_admin', 'personal_discount', 'manual_points', 'level_status',
                        'read_only', 'card_unlock', 'privacy', 'order_void', 'webhook_admin']::text[]);
