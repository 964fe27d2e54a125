"""docs/errors.md catalogues every reason, and is what server.errors_doc generates from errors.py."""

from loyalty_core import errors
from server import errors_doc


def test_every_code_has_guidance_and_no_guidance_is_orphaned():
    assert set(errors.GUIDANCE) == set(errors.CODES)


def test_every_code_is_in_the_catalogue():
    text = errors_doc.PATH.read_text()
    assert [code for code in errors.CODES if f"| `{code}` |" not in text] == []


def test_the_catalogue_is_current():
    assert errors_doc.PATH.read_text() == errors_doc.render(), "run `python -m server.errors_doc`"
