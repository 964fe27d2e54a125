"""Tests of the calculation twins."""
