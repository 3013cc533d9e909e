"""The test suite. Importing it (pytest does, before any conftest or test module) makes the
environment hermetic first: see tests/hermetic.py."""

from tests.hermetic import seal

seal()
