"""Cards: Luhn check digits, virtual card numbers, secret hashing and the till's secret rule."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty_core import cards


@pytest.mark.parametrize("number", ["79927398713", "4539578763621486", "0000000000000000"])
def test_known_numbers_pass_luhn(number: str) -> None:
    assert cards.luhn_valid(number)


@given(st.text("0123456789", min_size=1, max_size=30), st.integers(1, 9))
def test_changing_any_one_digit_breaks_the_check(body: str, delta: int) -> None:
    number = body + cards.luhn_check_digit(body)
    assert cards.luhn_valid(number)
    for i in range(len(number)):
        wrong = number[:i] + str((int(number[i]) + delta) % 10) + number[i + 1:]
        assert not cards.luhn_valid(wrong)


def test_virtual_card_numbers_are_16_digits_that_pass_luhn() -> None:
    numbers = {cards.generate_card_number() for _ in range(200)}
    assert len(numbers) == 200
    assert all(len(n) == 16 and n[0] != "0" and cards.luhn_valid(n) for n in numbers)


def test_a_secret_hash_is_salted_and_checks_only_its_secret() -> None:
    first, second = cards.hash_secret("12345678"), cards.hash_secret("12345678")
    assert first != second and "12345678" not in first
    assert cards.secret_matches("12345678", first) and cards.secret_matches("12345678", second)
    assert not cards.secret_matches("12345679", first)


@settings(max_examples=20, deadline=None)
@given(st.text("0123456789", min_size=0, max_size=8))
def test_only_the_right_secret_matches(guess: str) -> None:
    stored = cards.hash_secret("00000000")
    assert cards.secret_matches(guess, stored) == (guess == "00000000")
