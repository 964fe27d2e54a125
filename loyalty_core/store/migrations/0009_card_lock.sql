-- Wrong card secrets, counted per member so a lockout holds on every server.
--
-- No foreign key to member on purpose: inserting a row would take a KEY SHARE lock on the member's
-- row, so counting a wrong secret would wait behind a write holding the member (the very call an
-- attacker queues). A member's rows here are removed with the member's card (erase, card change).
CREATE TABLE card_lock (
    member_id       uuid PRIMARY KEY,
    -- Wrong secrets since the last right one or the last lockout.
    failures        integer NOT NULL CHECK (failures >= 0),
    -- Until then every use of the card is refused (card_locked); NULL when not locked.
    locked_until    timestamptz,
    updated_at      timestamptz NOT NULL
);

-- The right to unlock a card (UnlockCard); the list is store/keys.py's RIGHTS.
ALTER TABLE api_key DROP CONSTRAINT api_key_rights_check;
ALTER TABLE api_key ADD CONSTRAINT api_key_rights_check CHECK (
    cardinality(rights) >= 1
    AND rights <@ ARRAY['pos', 'ecommerce', 'programme_admin', 'personal_discount', 'manual_points', 'level_status',
                        'read_only', 'card_unlock']::text[]);
