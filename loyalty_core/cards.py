"""Cards and secrets: Luhn check digits, virtual card numbers, and salted scrypt hashes of short secrets."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets

from loyalty_core import errors

# A virtual card number: this many random digits (the first never 0) and one Luhn check digit,
# 16 in all, the length of the cards tills already read.
CARD_BODY_DIGITS = 15
# A card's secret code: digits only, so a cashier can type it on a numeric keypad.
CARD_SECRET_DIGITS = 8
# scrypt cost: 16 MiB and about 50 ms per hash here. The parameters are stored with each hash,
# so raising them later leaves old hashes verifiable.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES = 16
HASH_BYTES = 32
SCHEME = "scrypt"
# Wrong secrets a card may take: the attempt that reaches this many locks the card for
# CARD_LOCKOUT_S, on every server (the count is stored). An 8-digit secret then takes on average
# 10**8 / 2 / 5 lockouts, about 285 years at 15 minutes each, to guess.
CARD_SECRET_ATTEMPTS = 5
CARD_LOCKOUT_S = 15 * 60


def luhn_check_digit(body: str) -> str:
    """The digit that makes ``body + digit`` pass the Luhn check."""
    if not body.isdigit():
        raise ValueError(f"a card number body must be digits, got {body!r}")
    total = 0
    # From the right of the body, every first digit is doubled (it becomes every second
    # digit once the check digit is appended).
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    """Whether ``number`` (digits only, at least two) ends in its correct Luhn check digit."""
    return len(number) >= 2 and number.isdigit() and luhn_check_digit(number[:-1]) == number[-1]


def generate_card_number() -> str:
    """A random 16-digit virtual card number that passes the Luhn check."""
    body = str(1 + secrets.randbelow(9)) + "".join(str(secrets.randbelow(10)) for _ in range(CARD_BODY_DIGITS - 1))
    return body + luhn_check_digit(body)


def generate_digits(count: int) -> str:
    """``count`` random decimal digits from the operating system's CSPRNG (leading zeros kept)."""
    return "".join(str(secrets.randbelow(10)) for _ in range(count))


def generate_card_secret() -> str:
    return generate_digits(CARD_SECRET_DIGITS)


def hash_secret(secret: str) -> str:
    """``scrypt$n$r$p$salt$hash`` of ``secret`` with a fresh random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=HASH_BYTES)
    return "$".join([SCHEME, str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)])


def secret_matches(secret: str, stored: str) -> bool:
    """Whether ``secret`` hashes to ``stored``, compared in constant time."""
    scheme, n, r, p, salt, digest = stored.split("$")
    assert scheme == SCHEME, f"unknown secret hash scheme {scheme!r}"
    expected = base64.b64decode(digest)
    actual = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                            dklen=len(expected))
    return hmac.compare_digest(actual, expected)


async def hash_secret_async(secret: str) -> str:
    """``hash_secret`` off the event loop: scrypt takes tens of milliseconds of CPU."""
    return await asyncio.to_thread(hash_secret, secret)


async def secret_matches_async(secret: str, stored: str) -> bool:
    return await asyncio.to_thread(secret_matches, secret, stored)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
