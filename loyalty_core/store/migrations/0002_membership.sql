-- Membership: levels, the member's level, counted purchases, phone confirmation codes, history.
--
-- Member-owned tables carry member_id first, like the ledger's, so they distribute with it.

CREATE TABLE level (
    programme_id             uuid NOT NULL REFERENCES programme,
    level_id                 uuid NOT NULL,
    name                     text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- 1 is the lowest; one ladder per programme (group levels are rungs only their group sees).
    priority                 integer NOT NULL CHECK (priority BETWEEN 1 AND 50),
    customer_group           text NOT NULL DEFAULT '',
    spend_needed_minor       bigint NOT NULL CHECK (spend_needed_minor >= 0),
    -- {"bar": 30000, ...}: per-category parts of the spend needed, never more than the total
    -- (checked in Python before writing: jsonb sums cannot be a CHECK).
    category_spend_needed    jsonb NOT NULL DEFAULT '{}',
    spend_period_days        bigint NOT NULL CHECK (spend_period_days BETWEEN 0 AND 36600),
    visits_needed            bigint NOT NULL CHECK (visits_needed >= 0),
    visit_period_days        bigint NOT NULL CHECK (visit_period_days BETWEEN 0 AND 36600),
    privilege                text NOT NULL CHECK (privilege IN ('cashback', 'discount')),
    cashback_bps             integer NOT NULL CHECK (cashback_bps BETWEEN 0 AND 10000),
    -- [{"category": "bar", "cashback_bps": 900, "pay_share_bps": 1500 or null}, ...]
    category_rules           jsonb NOT NULL DEFAULT '[]',
    discount_bps             integer NOT NULL CHECK (discount_bps BETWEEN 0 AND 10000),
    -- NULL: the programme's order pay share.
    pay_share_bps            integer CHECK (pay_share_bps BETWEEN 0 AND 10000),
    created_at               timestamptz NOT NULL,
    updated_at               timestamptz NOT NULL,
    PRIMARY KEY (programme_id, level_id),
    UNIQUE (programme_id, priority)
);

ALTER TABLE member
    ADD COLUMN level_id            uuid,
    ADD COLUMN level_assigned_at   timestamptz,
    ADD CONSTRAINT member_level_fk FOREIGN KEY (programme_id, level_id) REFERENCES level (programme_id, level_id),
    ADD CONSTRAINT member_level_assigned CHECK ((level_id IS NULL) = (level_assigned_at IS NULL));
CREATE INDEX member_programme ON member (programme_id, member_id);

-- One row per order that counts (or counted) towards the member's totals, visits and levels.
-- amount_minor is what counts now: it shrinks with refunds and is 0 once the order stops counting.
--   member.purchases_total_minor = sum(purchase.amount_minor)   (checked by the recalculation)
CREATE TABLE purchase (
    member_id                uuid NOT NULL REFERENCES member,
    programme_id             uuid NOT NULL,
    order_id                 text NOT NULL,
    amount_minor             bigint NOT NULL CHECK (amount_minor >= 0),
    -- {"bar": 30000, "tickets": 42000}: the counted amount by category.
    by_category              jsonb NOT NULL,
    -- The accumulative rate before this purchase counted: when it stops counting, the rate is
    -- recalculated but not below this (it was reached without the purchase).
    accumulative_before_bps  integer NOT NULL CHECK (accumulative_before_bps BETWEEN 0 AND 10000),
    counted_at               timestamptz NOT NULL,
    uncounted_at             timestamptz,
    PRIMARY KEY (member_id, order_id)
);
CREATE INDEX purchase_member_time ON purchase (member_id, counted_at) WHERE uncounted_at IS NULL;

-- The open phone confirmation of a member: the latest code sent, hashed.
CREATE TABLE phone_confirmation (
    member_id                uuid PRIMARY KEY REFERENCES member,
    phone                    text NOT NULL,
    code_hash                text NOT NULL,
    sent_at                  timestamptz NOT NULL,
    expires_at               timestamptz NOT NULL,
    attempts                 integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    attempts_max             integer NOT NULL CHECK (attempts_max >= 1),
    confirmed_at             timestamptz,
    CHECK (expires_at > sent_at),
    CHECK (attempts <= attempts_max)
);

-- The member's history: participation changes, counted orders and messages (never their codes).
CREATE TABLE member_event (
    member_id                uuid NOT NULL REFERENCES member,
    event_id                 bigint GENERATED ALWAYS AS IDENTITY,
    tab                      text NOT NULL CHECK (tab IN ('participation', 'orders', 'messages')),
    kind                     text NOT NULL CHECK (length(kind) BETWEEN 1 AND 64),
    details                  jsonb NOT NULL DEFAULT '{}',
    comment                  text NOT NULL DEFAULT '' CHECK (length(comment) <= 1000),
    actor                    text NOT NULL,
    created_at               timestamptz NOT NULL,
    PRIMARY KEY (member_id, event_id)
);
CREATE INDEX member_event_tab ON member_event (member_id, tab, event_id DESC);

CREATE FUNCTION member_event_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'member history is append-only: % on member_event refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER member_event_append_only BEFORE UPDATE OR DELETE ON member_event
    FOR EACH ROW EXECUTE FUNCTION member_event_is_append_only();
