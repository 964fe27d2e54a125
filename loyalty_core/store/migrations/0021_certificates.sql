-- Bonus certificates (issue 13, seed 004): a value in points issued to a member, presented by its code
-- at the till, paying an order as points do. docs/certificates.md states the rules.

-- Seed 004's redemption rule: a certificate pays one order (what it does not pay is forfeited), or
-- several (what is left stays on it).
ALTER TABLE programme ADD COLUMN certificate_redemption text NOT NULL DEFAULT 'single_order'
    CHECK (certificate_redemption IN ('single_order', 'multiple_orders'));

-- Of what certificates paid an order, what a refund gave back to them (RefundRecord).
ALTER TABLE refund ADD COLUMN certificate_returned_points bigint NOT NULL DEFAULT 0
    CHECK (certificate_returned_points >= 0);

-- One certificate of one member. The code is kept only as its sha256: codes are 80 random bits, so
-- the hash confirms no guess, and the till's code finds its row by the hash.
CREATE TABLE certificate (
    member_id                uuid NOT NULL REFERENCES member,
    certificate_id           uuid NOT NULL,
    programme_id             uuid NOT NULL,
    code_hash                bytea NOT NULL CHECK (length(code_hash) = 32),
    value_points             bigint NOT NULL CHECK (value_points > 0),
    -- What it may still pay, and what of that an open checkout holds (held_order_id's).
    remaining_points         bigint NOT NULL CHECK (remaining_points >= 0),
    held_points              bigint NOT NULL CHECK (held_points >= 0),
    held_order_id            text,
    -- The hold's end: the order's hold lifetime; the expiry run releases it after.
    held_until               timestamptz,
    -- The programme's redemption rule when it was issued: it keeps that rule.
    multiple_orders          boolean NOT NULL,
    state                    text NOT NULL CHECK (state IN ('active', 'held', 'used', 'expired', 'cancelled')),
    -- It pays before this time; NULL: never expires.
    expires_at               timestamptz,
    note                     text NOT NULL CHECK (length(note) <= 1000),
    issued_at                timestamptz NOT NULL,
    -- When it became used, expired or cancelled, and the cancel's reason.
    ended_at                 timestamptz,
    end_reason               text NOT NULL DEFAULT '' CHECK (length(end_reason) <= 1000),
    PRIMARY KEY (member_id, certificate_id),
    UNIQUE (member_id, code_hash),
    CHECK (remaining_points + held_points <= value_points),
    CHECK ((state = 'held') = (held_order_id IS NOT NULL)),
    CHECK ((state = 'held') = (held_until IS NOT NULL)),
    CHECK (state IN ('active', 'held') OR (remaining_points = 0 AND held_points = 0 AND ended_at IS NOT NULL))
);
CREATE INDEX certificate_of_programme ON certificate (programme_id, issued_at, certificate_id);
CREATE INDEX certificate_of_member ON certificate (member_id, issued_at, certificate_id);
CREATE INDEX certificate_of_order ON certificate (member_id, held_order_id) WHERE held_order_id IS NOT NULL;
-- What the expiry run finds: certificates past their expiry, holds past their end.
CREATE INDEX certificate_expiring ON certificate (expires_at) WHERE state = 'active' AND expires_at IS NOT NULL;
CREATE INDEX certificate_hold_ending ON certificate (held_until) WHERE state = 'held';
-- What the points-liability gauge reads: the certificates still owed.
CREATE INDEX certificate_owed ON certificate (programme_id, expires_at) WHERE state IN ('active', 'held');

-- Every movement of a certificate, append-only: ``points`` changes remaining_points, ``held_delta``
-- held_points, so both always equal the sums of their movements (VerifyLedger checks it).
CREATE TABLE certificate_movement (
    member_id                uuid NOT NULL,
    movement_id              bigint GENERATED ALWAYS AS IDENTITY,
    certificate_id           uuid NOT NULL,
    kind                     text NOT NULL CHECK (kind IN (
        'issued', 'held', 'spent', 'released', 'expired', 'cancelled', 'returned')),
    points                   bigint NOT NULL,
    held_delta               bigint NOT NULL,
    -- What of a single-order certificate's value its spend forfeited (part of points).
    forfeited_points         bigint NOT NULL DEFAULT 0 CHECK (forfeited_points >= 0),
    order_id                 text,
    created_at               timestamptz NOT NULL,
    actor                    text NOT NULL,
    comment                  text NOT NULL DEFAULT '',
    PRIMARY KEY (member_id, movement_id),
    FOREIGN KEY (member_id, certificate_id) REFERENCES certificate
);
CREATE INDEX certificate_movement_of ON certificate_movement (member_id, certificate_id, movement_id);

-- Append-only as the points ledger, by the points ledger's own function (0013): only an erased
-- member's rows may lose their comment, every other column staying as it was.
CREATE TRIGGER certificate_movement_append_only BEFORE UPDATE OR DELETE ON certificate_movement
    FOR EACH ROW EXECUTE FUNCTION movement_is_append_only();

-- The right to issue and cancel certificates; the list is store/keys.py's RIGHTS, with
-- 'member_import' (migration 0022), so that either may land first.
ALTER TABLE api_key DROP CONSTRAINT api_key_rights_check;
ALTER TABLE api_key ADD CONSTRAINT api_key_rights_check CHECK (
    cardinality(rights) >= 1
    AND rights <@ ARRAY['pos', 'ecommerce', 'programme_admin', 'personal_discount', 'manual_points', 'level_status',
                        'read_only', 'card_unlock', 'privacy', 'order_void', 'webhook_admin', 'member_edit',
                        'event_bonus', 'certificate_issue', 'member_import']::text[]);
