"""loyalty_core.calc picks the compiled twin, honours LOYALTY_CALC_IMPL, and says so when it falls back."""

from __future__ import annotations

import importlib
import logging
import os

import pytest

import loyalty_core._calc_py
import loyalty_core._fastcalc
from loyalty_core import calc


@pytest.fixture
def reload_calc(monkeypatch):
    """Reload the facade under a patched environment, and restore it afterwards."""

    def reload(impl: str | None):
        if impl is None:
            monkeypatch.delenv("LOYALTY_CALC_IMPL", raising=False)
        else:
            monkeypatch.setenv("LOYALTY_CALC_IMPL", impl)
        return importlib.reload(calc)

    yield reload
    monkeypatch.undo()
    importlib.reload(calc)


def test_the_loaded_twin_is_the_one_asked_for():
    expected = "python" if os.environ.get("LOYALTY_CALC_IMPL") == "python" else "cython"
    assert calc.IMPLEMENTATION == expected
    assert calc.draw_fifo is calc.load(expected).draw_fifo


def test_the_environment_forces_a_twin(reload_calc):
    assert reload_calc("python").price_basket is loyalty_core._calc_py.price_basket
    assert reload_calc("cython").price_basket is loyalty_core._fastcalc.price_basket
    with pytest.raises(ValueError):
        reload_calc("fortran")


def test_a_missing_compiled_twin_falls_back_with_a_warning(reload_calc, monkeypatch, caplog):
    real_import = importlib.import_module

    def without_fastcalc(name, *args):
        if name == "loyalty_core._fastcalc":
            raise ImportError("not built")
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", without_fastcalc)
    with caplog.at_level(logging.WARNING, logger="loyalty_core.calc"):
        facade = reload_calc(None)
    assert facade.IMPLEMENTATION == "python"
    assert facade.spread is loyalty_core._calc_py.spread
    assert "pure-Python" in caplog.text


def test_the_facade_exports_every_name_of_both_twins():
    for name in calc.__all__:
        assert hasattr(calc, name)
    for twin in ("python", "cython"):
        module = calc.load(twin)
        for name in set(calc.__all__) - {"IMPLEMENTATION", "load"}:
            assert hasattr(module, name), (twin, name)
