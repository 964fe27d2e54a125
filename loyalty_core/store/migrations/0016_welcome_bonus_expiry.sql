-- The welcome bonus's expiry, chosen as a manual accrual's is (issue 11, defect 8): the rule and its
-- term or date, as loyalty_core.model.Expiry encodes them. NULL keeps the older rule:
-- welcome_bonus_lifetime_days days, 0 meaning the programme's point lifetime (so a welcome bonus that
-- never expires could not be had where points expire).
ALTER TABLE programme ADD COLUMN welcome_bonus_expiry jsonb
    CHECK (welcome_bonus_expiry IS NULL
           OR welcome_bonus_expiry->>'rule' IN ('programme_default', 'lifetime_days', 'expire_at', 'never'));
