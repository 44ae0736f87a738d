# SPDX-License-Identifier: MIT
"""`make deb`: debian/ builds the eddy, libeddy0.1 and libeddy-dev packages with
dpkg-buildpackage; their contents, conffile, units and hardening are checked, and the
packaged program runs. Built once, in the plain `make test` pass (about 35 s without LTO on
two cores): the packages do not depend on the sanitizer the other passes build with."""

import os
import re
import subprocess

import pytest

from eddyserver import BUILD, ROOT

pytestmark = pytest.mark.skipif(os.path.basename(BUILD).startswith("san-"),
                                reason="the packages are built in the plain pass only")

VERSION = "0.1.0"


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    """Builds the packages (without LTO) in a scratch build directory: {name: path}."""
    build = tmp_path_factory.mktemp("debbuild")
    out = subprocess.run(["make", "-C", ROOT, "deb", "LTO=", f"BUILD={build}"],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:] + \
        "\n(scripts/deps.sh test installs debhelper and dpkg-dev)"
    found = {}
    for name in ("eddy", "libeddy0.1", "libeddy-dev"):
        path = build / "deb" / f"{name}_{VERSION}_amd64.deb"
        assert path.exists(), name
        found[name] = path
    return found


def contents(deb):
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], check=True, capture_output=True,
                             text=True).stdout
    return {line.split()[5].removeprefix(".") for line in listing.splitlines()}


def field(deb, name):
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_eddy_package_holds_the_program_man_pages_units_and_conffile(debs, tmp_path):
    files = contents(debs["eddy"])
    for path in ("/usr/bin/eddy", "/usr/bin/eddy-ws", "/etc/eddy/eddy.conf",
                 "/usr/share/man/man1/eddy.1.gz", "/usr/share/man/man5/eddy.conf.5.gz",
                 "/lib/systemd/system/eddy.service", "/lib/systemd/system/eddy.socket",
                 "/usr/share/eddy/www/index.html", "/usr/share/doc/eddy/copyright"):
        assert path in files, path
    assert not [f for f in files if "/usr/local" in f or f.startswith("/usr/include")]
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "-e", str(debs["eddy"]), str(control)], check=True)
    assert (control / "conffiles").read_text().split() == ["/etc/eddy/eddy.conf"]
    assert "deb-systemd-helper enable 'eddy.service'" in (control / "postinst").read_text()
    depends = field(debs["eddy"], "Depends")
    for lib in ("libssl3", "libinih1", "libjansson4", "libcurl4"):
        assert lib in depends, depends

    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(debs["eddy"]), str(root)], check=True)
    unit = (root / "lib/systemd/system/eddy.service").read_text()
    assert "ExecStart=/usr/bin/eddy serve -c /etc/eddy/eddy.conf" in unit
    assert "WorkingDirectory=/usr/share/eddy" in unit
    eddy = str(root / "usr/bin/eddy")
    version = subprocess.run([eddy, "version"], capture_output=True, text=True, timeout=10)
    assert version.returncode == 0 and VERSION in version.stdout
    check = subprocess.run([eddy, "config", "check", "-c", str(root / "etc/eddy/eddy.conf")],
                           capture_output=True, text=True, timeout=10, cwd=root / "usr/share/eddy")
    assert check.returncode == 0, check.stdout + check.stderr
    # dpkg-buildflags' hardening reached the link: full RELRO (BIND_NOW) and PIE.
    dynamic = subprocess.run(["readelf", "-d", eddy], check=True, capture_output=True,
                             text=True).stdout
    assert "BIND_NOW" in dynamic and "PIE" in dynamic


def test_library_packages_hold_the_shared_library_headers_and_pkg_config(debs, tmp_path):
    lib = contents(debs["libeddy0.1"])
    assert "/usr/lib/x86_64-linux-gnu/libeddy.so.0.1.0" in lib
    assert "/usr/lib/x86_64-linux-gnu/libeddy.so.0.1" in lib
    dev = contents(debs["libeddy-dev"])
    for path in ("/usr/include/eddy.h", "/usr/include/eddy_rt.h",
                 "/usr/lib/x86_64-linux-gnu/libeddy.a", "/usr/lib/x86_64-linux-gnu/libeddy.so",
                 "/usr/lib/x86_64-linux-gnu/pkgconfig/eddy.pc"):
        assert path in dev, path
    assert f"libeddy0.1 (= {VERSION})" in field(debs["libeddy-dev"], "Depends")
    root = tmp_path / "root"
    for name in ("libeddy0.1", "libeddy-dev"):
        subprocess.run(["dpkg-deb", "-x", str(debs[name]), str(root)], check=True)
    so = root / "usr/lib/x86_64-linux-gnu/libeddy.so.0.1.0"
    dynamic = subprocess.run(["readelf", "-d", str(so)], check=True, capture_output=True,
                             text=True).stdout
    assert re.search(r"SONAME.*\[libeddy\.so\.0\.1\]", dynamic)  # the package's name
    pc = (root / "usr/lib/x86_64-linux-gnu/pkgconfig/eddy.pc").read_text()
    assert "prefix=/usr\n" in pc and "libdir=${exec_prefix}/lib/x86_64-linux-gnu" in pc
