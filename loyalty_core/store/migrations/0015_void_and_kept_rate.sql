-- Voided orders, and the purchase total a kept accumulative rate was earned at.

-- A paid (captured or completed) order can be voided: it stops counting towards purchase totals,
-- the accumulative discount and levels; its points stay as they are (docs/ledger.md).
ALTER TABLE orders DROP CONSTRAINT orders_state_check;
ALTER TABLE orders ADD CONSTRAINT orders_state_check
    CHECK (state IN ('held', 'captured', 'cancelled', 'completed', 'voided'));
ALTER TABLE orders ADD COLUMN voided_at timestamptz;
ALTER TABLE orders ADD CONSTRAINT orders_voided_at CHECK ((state = 'voided') = (voided_at IS NOT NULL));

-- The least purchase total of the range that gave member.accumulative_discount_bps when the member
-- reached it: a refund or a void lowers the kept rate only when the total falls below this
-- (seed 002: a rate is "not decreased but stays as is"). Members who had a rate before this
-- migration get 0 (what earned it is not known), so no refund lowers a rate they already had.
ALTER TABLE member ADD COLUMN accumulative_from_minor bigint NOT NULL DEFAULT 0
    CHECK (accumulative_from_minor >= 0);

-- The right to void a paid order (VoidOrder); the list is store/keys.py's RIGHTS (privacy comes
-- with migration 0013).
ALTER TABLE api_key DROP CONSTRAINT api_key_rights_check;
ALTER TABLE api_key ADD CONSTRAINT api_key_rights_check CHECK (
    cardinality(rights) >= 1
    AND rights <@ ARRAY['pos', 'ecommerce', 'programme_admin', 'personal_discount', 'manual_points', 'level_status',
                        'read_only', 'card_unlock', 'privacy', 'order_void']::text[]);
