-- Erasure of a member's personal data (docs/trust.md "Members' data"): the member row stays, with its amounts and
-- ledger, under its id; phone, card and secret go, which frees them for a new enrolment.
ALTER TABLE member ADD COLUMN erased_at timestamptz;
-- 0001's "phone or card" (named by PostgreSQL) holds for every member not erased; an erased one holds
-- neither, nor a secret's hash, and is off-boarded.
ALTER TABLE member DROP CONSTRAINT member_check;
ALTER TABLE member ADD CONSTRAINT member_has_phone_or_card CHECK (
    erased_at IS NOT NULL OR phone IS NOT NULL OR card_number IS NOT NULL);
ALTER TABLE member ADD CONSTRAINT member_erased_holds_no_personal_data CHECK (
    erased_at IS NULL OR (phone IS NULL AND card_number IS NULL AND card_secret_hash IS NULL
                          AND customer_group = '' AND offboarded_at IS NOT NULL));

-- The ledger and the history stay append-only, with one exception: an erased member's rows may lose
-- their free text (the comment) and, in history, the personal details (phone, card, message text);
-- every other column, amounts and kinds and times, stays as it was. Same triggers, wider functions.
CREATE OR REPLACE FUNCTION movement_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.comment = ''
       AND to_jsonb(NEW) - 'comment' = to_jsonb(OLD) - 'comment'
       AND EXISTS (SELECT FROM member WHERE member_id = OLD.member_id AND erased_at IS NOT NULL) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the ledger is append-only: % on movement refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;

CREATE OR REPLACE FUNCTION member_event_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.comment = ''
       AND to_jsonb(NEW) - 'comment' - 'details' = to_jsonb(OLD) - 'comment' - 'details'
       AND EXISTS (SELECT FROM member WHERE member_id = OLD.member_id AND erased_at IS NOT NULL) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'member history is append-only: % on member_event refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;

-- The right to erase and export members' data; the list is store/keys.py's RIGHTS, and 'order_void'
-- (migration 0015), so that either migration may land first.
ALTER TABLE api_key DROP CONSTRAINT api_key_rights_check;
ALTER TABLE api_key ADD CONSTRAINT api_key_rights_check CHECK (
    cardinality(rights) >= 1
    AND rights <@ ARRAY['pos', 'ecommerce', 'programme_admin', 'personal_discount', 'manual_points', 'level_status',
                        'read_only', 'card_unlock', 'privacy', 'order_void']::text[]);
