# SPDX-License-Identifier: MIT
"""Fixtures for the integration tests: the shared code lives in tests/support (see
eddyserver.py), which this file puts on sys.path for the test modules too."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))

from eddyserver import BUILD, start_server, tls_cert  # noqa: E402,F401  (fixtures)
from sioserver import start_sio_server  # noqa: E402,F401  (fixture)


def pytest_collection_modifyitems(config, items):
    """In a sanitizer build's pass (build/san-*), the cases against Node's reference servers
    only (parameter "reference": sio_reference.js, eio_reference.js) are skipped: they run
    nothing of the build, and the plain pass runs them (about 50 s a pass)."""
    if not os.path.basename(BUILD).startswith("san-"):
        return
    skip = pytest.mark.skip(reason="Node's reference server only: run in the plain pass")
    for item in items:
        params = getattr(item, "callspec", None)
        if params is not None and "reference" in params.params.values():
            item.add_marker(skip)
