-- The points ledger: programmes, members, lots, holds, orders, movements, idempotency.
--
-- Every member-owned table carries member_id so the schema can later distribute by it
-- (Citus), with every transaction touching one member's rows. Invariants are written
-- as CHECK constraints here and checked again by `loyalty-core verify`.

CREATE TABLE programme (
    programme_id             uuid PRIMARY KEY,
    name                     text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    enabled                  boolean NOT NULL,
    starts_at                timestamptz,
    ends_at                  timestamptz,
    store_ids                text[] NOT NULL DEFAULT '{}',
    channels                 text[] NOT NULL DEFAULT '{}',
    currency_code            char(3) NOT NULL,
    point_value_minor        bigint NOT NULL CHECK (point_value_minor >= 1),
    point_lifetime_days      bigint NOT NULL CHECK (point_lifetime_days >= 0),
    activation_delay_days    bigint NOT NULL CHECK (activation_delay_days >= 0),
    order_pay_share_bps      integer NOT NULL CHECK (order_pay_share_bps BETWEEN 0 AND 10000),
    default_cashback_bps     integer NOT NULL CHECK (default_cashback_bps BETWEEN 0 AND 10000),
    default_pay_share_bps    integer NOT NULL CHECK (default_pay_share_bps BETWEEN 0 AND 10000),
    -- [{"category": "bar", "cashback_bps": 500, "pay_share_bps": 1000}, ...]
    category_rules           jsonb NOT NULL DEFAULT '[]',
    discounted_items_earn    boolean NOT NULL,
    compatibility            text NOT NULL CHECK (compatibility IN ('points_after_discounts', 'points_instead_of_discounts')),
    refund_returns_spent_points boolean NOT NULL,
    hold_ttl_s               bigint NOT NULL CHECK (hold_ttl_s >= 1),
    negative_balance_policy  text NOT NULL CHECK (negative_balance_policy IN ('refuse', 'take_available', 'debt')),
    debt_limit_points        bigint NOT NULL CHECK (debt_limit_points >= 0),
    welcome_bonus_points     bigint NOT NULL CHECK (welcome_bonus_points >= 0),
    welcome_bonus_lifetime_days bigint NOT NULL CHECK (welcome_bonus_lifetime_days >= 0),
    require_confirmation     boolean NOT NULL,
    purchase_counts_when     text NOT NULL CHECK (purchase_counts_when IN ('captured', 'completed')),
    -- [{"customer_group": "", "min_purchases_minor": 30000, "discount_bps": 1000}, ...]
    discount_ranges          jsonb NOT NULL DEFAULT '[]',
    card_secret_required     boolean NOT NULL,
    created_at               timestamptz NOT NULL,
    updated_at               timestamptz NOT NULL,
    CHECK (ends_at IS NULL OR starts_at IS NULL OR ends_at > starts_at)
);

CREATE TABLE member (
    member_id                uuid PRIMARY KEY,
    programme_id             uuid NOT NULL REFERENCES programme,
    phone                    text,
    card_number              text,
    card_secret_hash         text,
    status                   text NOT NULL CHECK (status IN ('active', 'not_confirmed', 'deactivated')),
    phone_confirmed          boolean NOT NULL DEFAULT false,
    customer_group           text NOT NULL DEFAULT '',
    personal_discount_bps    integer NOT NULL DEFAULT 0 CHECK (personal_discount_bps BETWEEN 0 AND 10000),
    accumulative_discount_bps integer NOT NULL DEFAULT 0 CHECK (accumulative_discount_bps BETWEEN 0 AND 10000),
    purchases_total_minor    bigint NOT NULL DEFAULT 0 CHECK (purchases_total_minor >= 0),
    -- Points held by open checkouts: drawn from lots, not yet spent.
    held_points              bigint NOT NULL DEFAULT 0 CHECK (held_points >= 0),
    -- Points owed after refunds of already-spent points (DEBT policy).
    debt_points              bigint NOT NULL DEFAULT 0 CHECK (debt_points >= 0),
    earned_total_points      bigint NOT NULL DEFAULT 0 CHECK (earned_total_points >= 0),
    spent_total_points       bigint NOT NULL DEFAULT 0 CHECK (spent_total_points >= 0),
    expired_total_points     bigint NOT NULL DEFAULT 0 CHECK (expired_total_points >= 0),
    enrolled_at              timestamptz NOT NULL,
    offboarded_at            timestamptz,
    CHECK (phone IS NOT NULL OR card_number IS NOT NULL),
    UNIQUE (programme_id, phone),
    UNIQUE (programme_id, card_number)
);

-- A lot: points earned together, with one activation and one expiry time.
-- expires_at NULL means never. Pending = activates_at in the future.
CREATE TABLE lot (
    member_id                uuid NOT NULL REFERENCES member,
    lot_id                   bigint GENERATED ALWAYS AS IDENTITY,
    source                   text NOT NULL CHECK (source IN ('earned', 'welcome', 'manual_accrual')),
    amount                   bigint NOT NULL CHECK (amount > 0),
    remaining                bigint NOT NULL CHECK (remaining >= 0 AND remaining <= amount),
    activates_at             timestamptz NOT NULL,
    expires_at               timestamptz,
    order_id                 text,
    created_at               timestamptz NOT NULL,
    -- Set once the expiry run has burnt what was left, or recorded the activation.
    expired_at               timestamptz,
    activated_at             timestamptz,
    PRIMARY KEY (member_id, lot_id),
    CHECK (expires_at IS NULL OR expires_at > activates_at)
);
CREATE INDEX lot_usable ON lot (member_id) WHERE remaining > 0;
CREATE INDEX lot_to_expire ON lot (expires_at) WHERE remaining > 0 AND expired_at IS NULL;
CREATE INDEX lot_to_activate ON lot (activates_at) WHERE activated_at IS NULL;

-- Points held while a payment runs; lot_ids/lot_points say which lots they came from.
CREATE TABLE hold (
    member_id                uuid NOT NULL REFERENCES member,
    hold_id                  uuid NOT NULL,
    programme_id             uuid NOT NULL,
    order_id                 text NOT NULL,
    points                   bigint NOT NULL CHECK (points > 0),
    state                    text NOT NULL CHECK (state IN ('open', 'captured', 'released', 'expired')),
    lot_ids                  bigint[] NOT NULL,
    lot_points               bigint[] NOT NULL,
    created_at               timestamptz NOT NULL,
    expires_at               timestamptz NOT NULL,
    closed_at                timestamptz,
    PRIMARY KEY (member_id, hold_id),
    CHECK (cardinality(lot_ids) = cardinality(lot_points))
);
CREATE INDEX hold_open_expiry ON hold (expires_at) WHERE state = 'open';

CREATE TABLE orders (
    programme_id             uuid NOT NULL REFERENCES programme,
    order_id                 text NOT NULL CHECK (length(order_id) BETWEEN 1 AND 64),
    member_id                uuid NOT NULL REFERENCES member,
    state                    text NOT NULL CHECK (state IN ('held', 'captured', 'cancelled', 'completed')),
    store_id                 text NOT NULL,
    channel                  text NOT NULL,
    terminal_id              text NOT NULL,
    -- The domain's priced basket (loyalty_core's pricing result), replaced at capture.
    pricing                  jsonb NOT NULL,
    hold_id                  uuid,
    requested_points         bigint NOT NULL CHECK (requested_points >= 0),
    spent_points             bigint NOT NULL DEFAULT 0 CHECK (spent_points >= 0),
    earned_points            bigint NOT NULL DEFAULT 0 CHECK (earned_points >= 0),
    earned_lot_id            bigint,
    -- Whether the order's total is in the member's purchases_total_minor now.
    counted                  boolean NOT NULL DEFAULT false,
    created_at               timestamptz NOT NULL,
    captured_at              timestamptz,
    completed_at             timestamptz,
    cancelled_at             timestamptz,
    PRIMARY KEY (programme_id, order_id)
);
CREATE INDEX orders_member ON orders (member_id, created_at);

-- Per line what was captured and what has been refunded, for refunds by line.
CREATE TABLE order_line (
    programme_id             uuid NOT NULL,
    order_id                 text NOT NULL,
    member_id                uuid NOT NULL,
    line_no                  integer NOT NULL,
    line_id                  text NOT NULL,
    sku                      text NOT NULL,
    category                 text NOT NULL,
    quantity                 bigint NOT NULL CHECK (quantity >= 1),
    net_minor                bigint NOT NULL CHECK (net_minor >= 0),
    money_due_minor          bigint NOT NULL CHECK (money_due_minor >= 0),
    points                   bigint NOT NULL CHECK (points >= 0),
    earned_points            bigint NOT NULL CHECK (earned_points >= 0),
    refunded_quantity        bigint NOT NULL DEFAULT 0 CHECK (refunded_quantity BETWEEN 0 AND quantity),
    PRIMARY KEY (programme_id, order_id, line_no),
    UNIQUE (programme_id, order_id, line_id),
    FOREIGN KEY (programme_id, order_id) REFERENCES orders
);

CREATE TABLE refund (
    programme_id             uuid NOT NULL,
    order_id                 text NOT NULL,
    member_id                uuid NOT NULL,
    refund_id                uuid NOT NULL,
    -- [{"line_id": "1", "quantity": 2}, ...]
    lines                    jsonb NOT NULL,
    money_minor              bigint NOT NULL CHECK (money_minor >= 0),
    clawback_points          bigint NOT NULL CHECK (clawback_points >= 0),
    returned_points          bigint NOT NULL CHECK (returned_points >= 0),
    shortfall_points         bigint NOT NULL CHECK (shortfall_points >= 0),
    debt_points              bigint NOT NULL CHECK (debt_points >= 0),
    created_at               timestamptz NOT NULL,
    PRIMARY KEY (programme_id, order_id, refund_id),
    FOREIGN KEY (programme_id, order_id) REFERENCES orders
);

-- The append-only ledger. For every member:
--   sum(points)      = sum(lot.remaining)          (points move in and out of lots)
--   sum(held_delta)  = member.held_points          = sum of open holds
--   sum(debt_delta)  = member.debt_points
-- and for every lot, amount-remaining is the sum of its negative allocations, amount
-- the sum of its positive ones (lot_ids/lot_points, parallel arrays).
CREATE TABLE movement (
    member_id                uuid NOT NULL REFERENCES member,
    movement_id              bigint GENERATED ALWAYS AS IDENTITY,
    kind                     text NOT NULL CHECK (kind IN (
                                 'earned', 'welcome', 'manual_accrual', 'refund_return',
                                 'spent', 'held', 'released', 'expired', 'reversed',
                                 'activated', 'debt_repaid', 'debt_incurred')),
    points                   bigint NOT NULL,
    held_delta               bigint NOT NULL DEFAULT 0,
    debt_delta               bigint NOT NULL DEFAULT 0,
    lot_ids                  bigint[] NOT NULL DEFAULT '{}',
    lot_points               bigint[] NOT NULL DEFAULT '{}',
    order_id                 text,
    hold_id                  uuid,
    refund_id                uuid,
    created_at               timestamptz NOT NULL,
    actor                    text NOT NULL,
    store_id                 text NOT NULL DEFAULT '',
    terminal_id              text NOT NULL DEFAULT '',
    reason_code              text NOT NULL DEFAULT '',
    correlation_id           text NOT NULL DEFAULT '',
    comment                  text NOT NULL DEFAULT '',
    PRIMARY KEY (member_id, movement_id),
    CHECK (cardinality(lot_ids) = cardinality(lot_points))
);
CREATE INDEX movement_member_time ON movement (member_id, created_at DESC, movement_id DESC);

CREATE FUNCTION movement_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % on movement refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER movement_append_only BEFORE UPDATE OR DELETE ON movement
    FOR EACH ROW EXECUTE FUNCTION movement_is_append_only();

-- Idempotency keys (AIP-155), written in the same transaction as their effect.
-- A row with outcome 'refused' keeps a business refusal, so a retry stays refused.
CREATE TABLE idempotency_key (
    -- The programme's id as text, or 'programmes' for writes that create a programme.
    scope                    text NOT NULL,
    request_id               text NOT NULL CHECK (length(request_id) BETWEEN 1 AND 128),
    method                   text NOT NULL,
    fingerprint              bytea NOT NULL,
    outcome                  text NOT NULL CHECK (outcome IN ('done', 'refused')),
    -- The domain result (or refusal) as JSON, replayed verbatim.
    result                   jsonb NOT NULL,
    member_id                uuid,
    created_at               timestamptz NOT NULL,
    PRIMARY KEY (scope, request_id)
);
