"""The calculation everyone imports: the compiled twin, or the pure-Python reference when forced or missing."""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

__all__ = [
    "IMPLEMENTATION",
    "NEVER",
    "BasketPricing",
    "burn_forecast",
    "clawback",
    "draw_fifo",
    "expired_lots",
    "load",
    "lot_summary",
    "price_basket",
    "prorate",
    "spread",
]

log = logging.getLogger(__name__)

_MODULES = {"cython": "loyalty_core._fastcalc", "python": "loyalty_core._calc_py"}


def load(impl: str) -> ModuleType:
    """Return the twin named ``impl`` (``"cython"`` or ``"python"``); ImportError if it is not built."""
    if impl not in _MODULES:
        raise ValueError(f"calculation implementation must be one of {sorted(_MODULES)}, not {impl!r}")
    return importlib.import_module(_MODULES[impl])


def _choose(requested: str) -> tuple[str, ModuleType]:
    """Honour ``LOYALTY_CALC_IMPL``; unset means the compiled twin, falling back loudly when it is missing."""
    if requested:
        return requested, load(requested)
    try:
        return "cython", load("cython")
    except ImportError as exc:
        # Correct but many times slower: whoever runs this must see it (the metrics label it too).
        log.warning("loyalty_core._fastcalc is not built (%s); using the pure-Python calculation", exc)
        return "python", load("python")


IMPLEMENTATION, _impl = _choose(os.environ.get("LOYALTY_CALC_IMPL", ""))

NEVER: int = _impl.NEVER
BasketPricing = _impl.BasketPricing
price_basket = _impl.price_basket
spread = _impl.spread
prorate = _impl.prorate
draw_fifo = _impl.draw_fifo
clawback = _impl.clawback
expired_lots = _impl.expired_lots
lot_summary = _impl.lot_summary
burn_forecast = _impl.burn_forecast
