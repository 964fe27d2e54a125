-- Members imported from a previous system (ImportMembers, `loyalty-core import`): one row per
-- imported row, by the previous system's own id for it, so that the import is idempotent per row and
-- resumable after a crash (docs/membership.md "Importing members"). It is the import's look-up
-- unique per programme, as a phone or an idempotency key is; it keeps its row when the member is
-- erased, so that running the import again does not bring an erased member back.
CREATE TABLE member_import (
    programme_id             uuid NOT NULL REFERENCES programme,
    external_id              text NOT NULL CHECK (length(external_id) BETWEEN 1 AND 128),
    member_id                uuid NOT NULL REFERENCES member,
    -- sha256 of the row as imported: the same id with another row is refused, not merged.
    fingerprint              bytea NOT NULL CHECK (length(fingerprint) = 32),
    imported_at              timestamptz NOT NULL,
    PRIMARY KEY (programme_id, external_id)
);
CREATE INDEX member_import_member ON member_import (member_id);

-- The right to import members with their balances and past purchases (ImportMembers): a
-- migration's, not the till's or the back office's everyday right. The list is store/keys.py's
-- RIGHTS (certificate_issue comes with migration 0021, listed so either may land first).
ALTER TABLE api_key DROP CONSTRAINT api_key_rights_check;
ALTER TABLE api_key ADD CONSTRAINT api_key_rights_check CHECK (
    cardinality(rights) >= 1
    AND rights <@ ARRAY['pos', 'ecommerce', 'programme_admin', 'personal_discount', 'manual_points', 'level_status',
                        'read_only', 'card_unlock', 'privacy', 'order_void', 'webhook_admin', 'member_edit',
                        'event_bonus', 'certificate_issue', 'member_import']::text[]);
