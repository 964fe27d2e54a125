-- ListMembers' indexes (below), and the right to edit a member's data (ChangeMemberPhone, ChangeMemberCard, ChangeCustomerGroup);
-- the list is store/keys.py's RIGHTS, with the rights that land beside this one (order_void,
-- webhook_admin, event_bonus), so that whichever of their migrations runs last allows them all.
ALTER TABLE api_key DROP CONSTRAINT api_key_rights_check;
ALTER TABLE api_key ADD CONSTRAINT api_key_rights_check CHECK (
    cardinality(rights) >= 1
    AND rights <@ ARRAY['pos', 'ecommerce', 'programme_admin', 'personal_discount', 'manual_points', 'level_status',
                        'read_only', 'card_unlock', 'privacy', 'order_void', 'webhook_admin', 'member_edit',
                        'event_bonus']::text[]);

-- ListMembers by status or level walks only the members it lists, in member id order (by phone
-- and card number the unique constraints' indexes find them).
CREATE INDEX member_programme_status ON member (programme_id, status, member_id);
CREATE INDEX member_programme_level ON member (programme_id, level_id, member_id);
