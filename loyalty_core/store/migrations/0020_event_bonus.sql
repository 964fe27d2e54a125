-- Event bonuses (issue 13, seed 001 "Puntos y descuentos en los eventos"): points and an order discount
-- granted when something happens to a member outside a purchase (a birthday, an app install, a review).

-- A programme's event types: reference data of the programme, like its levels (no member in it).
CREATE TABLE event_type (
    programme_id             uuid NOT NULL REFERENCES programme,
    -- The caller's name for the event ("birthday"); fixed once created.
    code                     text NOT NULL CHECK (code ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    name                     text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    points                   bigint NOT NULL CHECK (points >= 0),
    -- The points' expiry, as loyalty_core.model.Expiry encodes it (as programme.welcome_bonus_expiry).
    expiry                   jsonb NOT NULL
        CHECK (expiry->>'rule' IN ('programme_default', 'lifetime_days', 'expire_at', 'never')),
    -- The order discount granted; 0: none.
    discount_bps             integer NOT NULL CHECK (discount_bps BETWEEN 0 AND 10000),
    -- How long the discount lasts: this many days from the grant, every order; 0: the next order only.
    discount_days            integer NOT NULL CHECK (discount_days >= 0),
    -- How often one member may receive it: once ever, once per frequency_days days, once per calendar year (UTC).
    frequency                text NOT NULL CHECK (frequency IN ('once', 'every_n_days', 'calendar_year')),
    frequency_days           integer NOT NULL CHECK (frequency_days >= 0),
    -- The window events are granted in (start included, end excluded); NULL: open.
    active_from              timestamptz,
    active_until             timestamptz,
    created_at               timestamptz NOT NULL,
    updated_at               timestamptz NOT NULL,
    PRIMARY KEY (programme_id, code),
    CHECK (points > 0 OR discount_bps > 0),
    CHECK ((frequency = 'every_n_days') = (frequency_days > 0)),
    CHECK (active_from IS NULL OR active_until IS NULL OR active_until > active_from)
);

-- What each event granted one member: one row per (member, event type, occurrence), so the same
-- occurrence (the birthday of 2026) grants once whatever request_id it comes with.
CREATE TABLE event_grant (
    member_id                uuid NOT NULL REFERENCES member,
    event_code               text NOT NULL,
    occurrence_key           text NOT NULL CHECK (length(occurrence_key) BETWEEN 1 AND 128),
    programme_id             uuid NOT NULL,
    points                   bigint NOT NULL CHECK (points >= 0),
    -- The points' movement and the lot they made; NULL when no points were granted (no lot either
    -- when they repaid debt).
    movement_id              bigint,
    lot_id                   bigint,
    -- The discount granted (0: none, or withheld from a member not confirmed).
    discount_bps             integer NOT NULL CHECK (discount_bps BETWEEN 0 AND 10000),
    -- The event type has a discount the member's status did not let through (not confirmed).
    discount_withheld        boolean NOT NULL,
    -- Until then the discount applies to every order; NULL with a discount: the next captured order.
    discount_ends_at         timestamptz,
    -- A next-order discount's use: when and by which order it was captured.
    discount_used_at         timestamptz,
    discount_order_id        text,
    granted_at               timestamptz NOT NULL,
    actor                    text NOT NULL,
    PRIMARY KEY (member_id, event_code, occurrence_key)
);
CREATE INDEX event_grant_latest ON event_grant (member_id, event_code, granted_at DESC);
CREATE INDEX event_grant_open_discount ON event_grant (member_id) WHERE discount_bps > 0 AND discount_used_at IS NULL;

-- The ledger's own kind and lot source for event points.
ALTER TABLE lot DROP CONSTRAINT lot_source_check;
ALTER TABLE lot ADD CONSTRAINT lot_source_check CHECK (source IN ('earned', 'welcome', 'manual_accrual', 'event_bonus'));
ALTER TABLE movement DROP CONSTRAINT movement_kind_check;
ALTER TABLE movement ADD CONSTRAINT movement_kind_check CHECK (kind IN (
    'earned', 'welcome', 'manual_accrual', 'refund_return', 'spent', 'held', 'released', 'expired', 'reversed',
    'activated', 'debt_repaid', 'debt_incurred', 'event_bonus'));

-- The right to record events (RecordEvent); the list is store/keys.py's RIGHTS, with 'order_void',
-- 'webhook_admin' and 'member_edit' (other migrations), so that any of them may land first.
ALTER TABLE api_key DROP CONSTRAINT api_key_rights_check;
ALTER TABLE api_key ADD CONSTRAINT api_key_rights_check CHECK (
    cardinality(rights) >= 1
    AND rights <@ ARRAY['pos', 'ecommerce', 'programme_admin', 'personal_discount', 'manual_points', 'level_status',
                        'read_only', 'card_unlock', 'privacy', 'order_void', 'webhook_admin', 'member_edit',
                        'event_bonus']::text[]);
