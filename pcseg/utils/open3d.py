"""Importing open3d without the libusb trap.

The open3d wheels link libusb-1.0 (for RealSense) and fail with "libusb-1.0.so.0: cannot open
shared object file" on machines without the system package. When that happens and the
`libusb-package` wheel is installed, its bundled library is preloaded and the import retried,
so users never see the error; otherwise the message says how to fix it.
"""

from __future__ import annotations

import ctypes
import importlib


def import_open3d():
    """Import open3d lazily (pcseg never needs it at import time), working around a missing libusb.

    Returns:
        open3d: the open3d module.

    Raises:
        ImportError: when libusb-1.0 is missing and the libusb-package wheel is not
            installed; the message says how to install either.
    """
    try:
        return importlib.import_module("open3d")
    except OSError as err:
        if "libusb" not in str(err):
            raise
        try:
            import libusb_package
        except ImportError:
            raise ImportError(
                "open3d needs libusb-1.0: install the system package (Debian/Ubuntu: "
                "`apt-get install libusb-1.0-0`) or `pip install libusb-package`"
            ) from err
        path = libusb_package.get_library_path()
        ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
        return importlib.import_module("open3d")
