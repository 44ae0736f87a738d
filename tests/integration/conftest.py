# SPDX-License-Identifier: MIT
"""Fixtures for the integration tests: the shared code lives in tests/support (see
eddyserver.py), which this file puts on sys.path for the test modules too."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))

from eddyserver import start_server, tls_cert  # noqa: E402,F401  (fixtures)
from sioserver import start_sio_server  # noqa: E402,F401  (fixture)
