"""Packaging: `pip install .` in a clean venv gives a working `xdpgate`, and nothing is
installed under generic top-level names such as `api` or `control`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory):
    d = tmp_path_factory.mktemp("venv")
    src = tmp_path_factory.mktemp("src") / "xdpgate"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "*.egg-info", "__pycache__",
                                                             "build", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "venv", str(d)], check=True)
    r = subprocess.run([str(d / "bin" / "pip"), "install", "-q", str(src)], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return d


def test_pip_install_gives_a_working_xdpgate_command(clean_venv):
    r = subprocess.run([str(clean_venv / "bin" / "xdpgate"), "--help"], capture_output=True,
                       text=True, cwd="/")
    assert r.returncode == 0, r.stderr
    for verb in ("run", "demo", "classify", "detach"):
        assert verb in r.stdout


def test_the_package_imports_as_xdpgate_only(clean_venv):
    py = str(clean_venv / "bin" / "python")
    ok = subprocess.run([py, "-c", "import xdpgate.control.policy, xdpgate.api, xdpgate.bpf"],
                        capture_output=True, text=True, cwd="/")
    assert ok.returncode == 0, ok.stderr
    for generic in ("api", "control", "bpf"):
        r = subprocess.run([py, "-c", f"import {generic}"], capture_output=True, text=True, cwd="/")
        assert r.returncode != 0, f"`import {generic}` works in a clean install"


def test_the_bpf_sources_ship_with_the_package(clean_venv):
    py = str(clean_venv / "bin" / "python")
    r = subprocess.run([py, "-c", "from xdpgate.control import loader; "
                        "print(sorted(p.name for p in loader.bpf_dir().iterdir()))"],
                       capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr
    for f in ("xdpgate.c", "parse.h", "maps.h", "xdpgate_types.h", "xdpgate_consts.h"):
        assert f in r.stdout


def test_the_vagrantfile_is_valid():
    vagrant = shutil.which("vagrant")
    assert vagrant, "vagrant is not installed (vagrant/provision.sh --test installs it)"
    r = subprocess.run([vagrant, "validate", "--ignore-provider"], cwd=ROOT / "vagrant",
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
