-- Which identifications may spend a member's points (docs/trust.md "Who may spend points") and the
-- one-time spend codes sent by SMS.

-- Empty: the default the proto describes (it follows card_secret_required).
ALTER TABLE programme ADD COLUMN spend_identifications text[] NOT NULL DEFAULT '{}'
    CHECK (spend_identifications <@ ARRAY['card_secret', 'card', 'phone', 'spend_code',
                                          'trusted_member_id']::text[]);

-- The member's latest spend code, hashed (scrypt, like the confirmation codes). A new code replaces
-- the previous one and its attempts. Attempts are counted before a code is checked, outside the
-- member's row lock (an UPDATE that leaves member_id alone takes no lock on the member's row).
CREATE TABLE spend_code (
    member_id       uuid PRIMARY KEY REFERENCES member,
    phone           text NOT NULL,
    code_hash       text NOT NULL,
    sent_at         timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    attempts_max    integer NOT NULL CHECK (attempts_max >= 1),
    -- Set by the spend it authorised: a code is used once.
    used_at         timestamptz,
    CHECK (expires_at > sent_at),
    CHECK (attempts <= attempts_max)
);
