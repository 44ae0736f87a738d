# SPDX-License-Identifier: MIT
"""What an installed eddy looks like to the programs that use it: the symbols libeddy.so
exports."""

import os
import re
import subprocess
import time

import pytest

from eddyserver import BUILD, ROOT

# The public headers: the engine's and the real-time layer's.
HEADERS = [os.path.join(ROOT, "include", name) for name in ("eddy.h", "eddy_rt.h")]


def declared_functions():
    """Names of the functions the public headers declare: a declaration starts in column 0
    with its return type (typedefs of callbacks excluded)."""
    names = set()
    for header in HEADERS:
        with open(header) as f:
            text = f.read()
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
    assert sorted(exported - declared) == [], "exported but not in a public header"
    assert sorted(declared - exported) == [], "declared in a public header but not exported"
    assert not [name for name in exported if name.startswith("eddy__")]


# ---------------------------------------------------------------------------------------
# make install, then the README's example built against the installed eddy.pc
# ---------------------------------------------------------------------------------------

def readme_example():
    """The C program README.md shows first, on a free loopback port (the README's 0.0.0.0:9501
    is the Swoole example's; tests use loopback only and must not collide)."""
    with open(os.path.join(ROOT, "README.md")) as f:
        source = re.search(r"```c\n(.*?)```", f.read(), re.S).group(1)
    assert 'eddy_server_new("0.0.0.0", 9501)' in source
    return source.replace('eddy_server_new("0.0.0.0", 9501)', 'eddy_server_new("127.0.0.1", 0)')


def sanitizer_flags():
    """A sanitizer build's library needs the sanitizer runtime in the program too."""
    name = os.path.basename(BUILD)
    if name.startswith("san-"):
        return ["-fsanitize=" + name[len("san-"):].replace("-", ",")]
    return []


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """make install DESTDIR=<tmp> PREFIX=/usr; returns the staging root."""
    root = tmp_path_factory.mktemp("stage")
    subprocess.run(["make", "--no-print-directory", "-C", ROOT, "install",
                    "BUILD=" + os.path.relpath(BUILD, ROOT), "DESTDIR=" + str(root),
                    "PREFIX=/usr"], check=True, capture_output=True, timeout=600)
    return root


def pkg_config(staged, *args):
    env = dict(os.environ, PKG_CONFIG_SYSROOT_DIR=str(staged),
               PKG_CONFIG_PATH=str(staged / "usr/lib/pkgconfig"))
    out = subprocess.run(["pkg-config", *args, "eddy"], env=env, check=True,
                         capture_output=True, text=True).stdout
    return out.split()


def test_install_lays_out_the_soname_chain(staged):
    lib = staged / "usr/lib"
    with open(HEADERS[0]) as f:
        version = re.search(r'#define EDDY_VERSION_STRING\s+"([^"]+)"', f.read()).group(1)
    major, minor, _ = version.split(".")
    soname = f"libeddy.so.0.{minor}" if major == "0" else f"libeddy.so.{major}"
    assert os.readlink(lib / "libeddy.so") == soname
    assert os.readlink(lib / soname) == f"libeddy.so.{version}"
    assert (lib / f"libeddy.so.{version}").is_file()
    dynamic = subprocess.run(["readelf", "-d", str(lib / f"libeddy.so.{version}")],
                             check=True, capture_output=True, text=True).stdout
    assert f"Library soname: [{soname}]" in dynamic
    assert (staged / "usr/include/eddy.h").is_file()


def test_pc_file_is_relocatable_and_lists_each_library_once(staged):
    with open(staged / "usr/lib/pkgconfig/eddy.pc") as f:
        variables = dict(line.split("=", 1) for line in f.read().splitlines()
                         if re.match(r"^\w+=", line))
    assert variables["libdir"] == "${exec_prefix}/lib"
    assert variables["includedir"] == "${prefix}/include"
    static_libs = pkg_config(staged, "--static", "--libs")
    for lib in ("-leddy", "-lssl", "-lcrypto", "-lz"):
        assert static_libs.count(lib) == 1, static_libs


def run_until_listening(program, env):
    """Starts program, waits for eddy's "listening on" log line, then stops it."""
    proc = subprocess.Popen([str(program)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        seen = []
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            if "listening on 127.0.0.1:" in line:
                return
        raise AssertionError("the README example did not start listening: " + "".join(seen))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("link", ["shared", "static"])
def test_readme_example_builds_against_the_installed_pc(staged, tmp_path, link):
    source = tmp_path / "app.c"
    source.write_text(readme_example())
    program = tmp_path / "app"
    flags = pkg_config(staged, "--cflags")
    if link == "shared":
        libs = pkg_config(staged, "--libs")
    else:
        libs = [arg if arg != "-leddy" else "-l:libeddy.a"
                for arg in pkg_config(staged, "--static", "--libs")]
    subprocess.run(["cc", *sanitizer_flags(), "-o", str(program), str(source), *flags, *libs],
                   check=True, timeout=300)
    env = dict(os.environ, LD_LIBRARY_PATH=str(staged / "usr/lib"))
    ldd = subprocess.run(["ldd", str(program)], env=env, check=True, capture_output=True,
                         text=True).stdout
    assert "not found" not in ldd, ldd
    if link == "shared":
        assert str(staged / "usr/lib/libeddy.so.0.") in ldd, ldd
    else:
        assert "libeddy" not in ldd, ldd
    run_until_listening(program, env)


def test_install_puts_the_eddy_program_in_bin(staged):
    program = staged / "usr/bin/eddy"
    assert os.access(program, os.X_OK)
    out = subprocess.run([str(program), "version"], check=True, capture_output=True, text=True)
    assert out.stdout.startswith("eddy ")
