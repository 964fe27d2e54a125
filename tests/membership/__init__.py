"""Tests of membership: statuses, confirmation, cards, levels, discounts, history."""
