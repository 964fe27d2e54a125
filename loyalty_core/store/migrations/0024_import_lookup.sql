-- member_import (0022) is a look-up unique per programme, as a phone or an order id is (0023): on
-- Citus it is distributed by the external id (store/distribute.py LOOKUPS), away from the member's
-- shard, where a foreign key to member cannot reach. The import writes the member in the same
-- transaction, as enrolment writes member_phone; the index finds a member's row for the export.
ALTER TABLE member_import DROP CONSTRAINT member_import_member_id_fkey;
