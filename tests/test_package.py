"""The package surface: top-level API names, `pcseg --version` and the libusb-safe open3d import."""

import builtins
import importlib
import re
import subprocess
import sys

import pytest

import pcseg
from pcseg.utils import open3d as open3d_utils


def test_top_level_api_names():
    from pcseg.fuser import Fuser
    from pcseg.segmenter import Segmenter

    assert pcseg.Segmenter is Segmenter
    assert pcseg.Fuser is Fuser
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        pcseg.Nope  # noqa: B018


def test_import_pcseg_does_not_import_torch():
    code = "import sys, pcseg; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_version_flag_prints_the_package_version(capsys):
    from pcseg.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"pcseg {pcseg.__version__}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+", pcseg.__version__)


def _fail_like_missing_libusb(monkeypatch):
    real = importlib.import_module
    calls = []

    def fake(name, *args):
        if name == "open3d":
            calls.append(name)
            if len(calls) == 1:
                raise OSError("libusb-1.0.so.0: cannot open shared object file: No such file")
            return "open3d-module"
        return real(name, *args)

    monkeypatch.setattr(open3d_utils.importlib, "import_module", fake)
    return calls


def test_open3d_libusb_error_names_the_fix(monkeypatch):
    _fail_like_missing_libusb(monkeypatch)
    real_import = builtins.__import__

    def no_libusb_package(name, *args, **kwargs):
        if name == "libusb_package":
            raise ImportError("no libusb_package")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_libusb_package)
    with pytest.raises(ImportError, match="apt-get install libusb-1.0-0"):
        open3d_utils.import_open3d()


def test_open3d_libusb_package_is_preloaded_and_import_retried(monkeypatch):
    calls = _fail_like_missing_libusb(monkeypatch)
    loaded = []

    class FakeLibusbPackage:
        @staticmethod
        def get_library_path():
            return "/fake/libusb-1.0.so"

    monkeypatch.setitem(sys.modules, "libusb_package", FakeLibusbPackage)
    monkeypatch.setattr(open3d_utils.ctypes, "CDLL", lambda path, mode: loaded.append(path))
    assert open3d_utils.import_open3d() == "open3d-module"
    assert loaded == ["/fake/libusb-1.0.so"] and len(calls) == 2


def test_open3d_other_os_errors_propagate(monkeypatch):
    def fake(name, *args):
        raise OSError("libGL.so.1: cannot open shared object file")

    monkeypatch.setattr(open3d_utils.importlib, "import_module", fake)
    with pytest.raises(OSError, match="libGL"):
        open3d_utils.import_open3d()
