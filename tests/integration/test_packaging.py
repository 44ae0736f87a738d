"""What an installed eddy looks like to the programs that use it: the symbols libeddy.so
exports."""

import os
import re
import subprocess

from eddyserver import BUILD, ROOT

HEADER = os.path.join(ROOT, "include", "eddy.h")


def declared_functions():
    """Names of the functions eddy.h declares: a declaration starts in column 0 with its
    return type (typedefs of callbacks excluded)."""
    with open(HEADER) as f:
        text = f.read()
    names = set()
    for match in re.finditer(r"^(?!typedef|#|\s)[^;{}()]*?\b(eddy_\w+)\(", text, re.M):
        names.add(match.group(1))
    return names


def exported_symbols():
    out = subprocess.run(["nm", "-D", "--defined-only", os.path.join(BUILD, "libeddy.so")],
                         check=True, capture_output=True, text=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def test_shared_library_exports_exactly_the_public_api():
    declared = declared_functions()
    assert len(declared) > 50, "the header parser found too few declarations"
    exported = exported_symbols()
    assert sorted(exported - declared) == [], "exported but not in eddy.h"
    assert sorted(declared - exported) == [], "declared in eddy.h but not exported"
    assert not [name for name in exported if name.startswith("eddy__")]
