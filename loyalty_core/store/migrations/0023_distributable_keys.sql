-- A schema that distributes by member on Citus (docs/scale-out.md) and runs the same on one PostgreSQL.
--
-- Citus makes small shared tables reference tables (a copy on every node) only when they have no
-- triggers, and distributes a table by one column only when every primary and unique key holds it.
-- So: the programme's revision is raised by the statements that change the programme or its levels
-- (store/programmes.py, store/membership.py), not by triggers; and what is unique per programme but
-- is not a member id (a phone, a card number, an order id) is kept unique by a small look-up table
-- whose key starts with the looked-up value, written in the same transaction as the member's row.
-- On one PostgreSQL that is one transaction as before; on Citus the look-up is distributed by the
-- value and the transaction commits on both shards together.

DROP TRIGGER programme_next_revision ON programme;
DROP TRIGGER level_changes_programme_revision ON level;
DROP FUNCTION programme_next_revision();
DROP FUNCTION level_changes_programme_revision();

-- The member holding a phone in a programme.
CREATE TABLE member_phone (
    phone                    text NOT NULL,
    programme_id             uuid NOT NULL REFERENCES programme,
    member_id                uuid NOT NULL,
    CONSTRAINT member_phone_taken PRIMARY KEY (phone, programme_id)
);
INSERT INTO member_phone (phone, programme_id, member_id)
    SELECT phone, programme_id, member_id FROM member WHERE phone IS NOT NULL;

-- The member holding a card number in a programme.
CREATE TABLE member_card (
    card_number              text NOT NULL,
    programme_id             uuid NOT NULL REFERENCES programme,
    member_id                uuid NOT NULL,
    CONSTRAINT member_card_taken PRIMARY KEY (card_number, programme_id)
);
INSERT INTO member_card (card_number, programme_id, member_id)
    SELECT card_number, programme_id, member_id FROM member WHERE card_number IS NOT NULL;

ALTER TABLE member DROP CONSTRAINT member_programme_id_phone_key;
ALTER TABLE member DROP CONSTRAINT member_programme_id_card_number_key;
-- ListMembers' filters by phone and card still find the programme's members without a scan.
CREATE INDEX member_programme_phone ON member (programme_id, phone);
CREATE INDEX member_programme_card ON member (programme_id, card_number);

-- The member an order id of a programme belongs to.
CREATE TABLE order_key (
    order_id                 text NOT NULL,
    programme_id             uuid NOT NULL REFERENCES programme,
    member_id                uuid NOT NULL,
    CONSTRAINT order_id_taken PRIMARY KEY (order_id, programme_id)
);
INSERT INTO order_key (order_id, programme_id, member_id) SELECT order_id, programme_id, member_id FROM orders;

-- Orders, their lines and refunds are keyed by their member first.
ALTER TABLE order_line DROP CONSTRAINT order_line_programme_id_order_id_fkey;
ALTER TABLE refund DROP CONSTRAINT refund_programme_id_order_id_fkey;
ALTER TABLE order_line DROP CONSTRAINT order_line_pkey;
ALTER TABLE order_line DROP CONSTRAINT order_line_programme_id_order_id_line_id_key;
ALTER TABLE refund DROP CONSTRAINT refund_pkey;
ALTER TABLE orders DROP CONSTRAINT orders_pkey;
ALTER TABLE orders ADD PRIMARY KEY (member_id, programme_id, order_id);
ALTER TABLE order_line ADD PRIMARY KEY (member_id, programme_id, order_id, line_no),
    ADD UNIQUE (member_id, programme_id, order_id, line_id),
    ADD FOREIGN KEY (member_id, programme_id, order_id) REFERENCES orders;
ALTER TABLE refund ADD PRIMARY KEY (member_id, programme_id, order_id, refund_id),
    ADD FOREIGN KEY (member_id, programme_id, order_id) REFERENCES orders;
