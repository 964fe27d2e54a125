-- Issue 15: custom fields, the store a member enrolled in, and SMS sender names per store.
-- A programme declares its custom fields (loyalty_core.model.CustomField as JSON) and the sender
-- names its messages go under: one per store where the programme lists one, else the default.
ALTER TABLE programme ADD COLUMN custom_fields jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(custom_fields) = 'array'),
    ADD COLUMN sms_senders jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(sms_senders) = 'array'),
    ADD COLUMN default_sms_sender text NOT NULL DEFAULT '' CHECK (length(default_sms_sender) <= 64);

-- The member's store (seed 001's "the store of the client's card"): where they enrolled, from the
-- enrolment's WriteContext.store_id; '' for a back-office enrolment.
ALTER TABLE member ADD COLUMN store_id text NOT NULL DEFAULT '' CHECK (length(store_id) <= 128);

-- A member's custom field values, one row per field set, in the field's canonical text form
-- (loyalty_core/custom_fields.py). Personal data: erased and exported with the member.
CREATE TABLE member_custom_value (
    member_id                uuid NOT NULL REFERENCES member,
    name                     text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_]{0,63}$'),
    programme_id             uuid NOT NULL,
    value                    text NOT NULL CHECK (length(value) BETWEEN 1 AND 1000),
    updated_at               timestamptz NOT NULL,
    PRIMARY KEY (member_id, name)
);
-- Finding members by a field's value.
CREATE INDEX member_custom_value_by_value ON member_custom_value (programme_id, name, value, member_id);
