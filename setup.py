"""Build pcseg's native ops (the package metadata lives in pyproject.toml).

Two extensions, two failure domains:
  pcseg._C       the operator schemas and the C++ CPU kernels; always built.
  pcseg._C_cuda  the CUDA kernels; built when torch has CUDA and either FORCE_CUDA=1 or a GPU
                 is visible. If it fails to compile without FORCE_CUDA=1 the install goes on
                 CPU-only with a warning, so a broken .cu can never break a CPU install.
Environment: PCSEG_FORCE_CPU=1 skips CUDA, FORCE_CUDA=1 requires it (and makes its failure
fatal), TORCH_CUDA_ARCH_LIST picks the GPU architectures (it must be set when no GPU is
visible). Torch is not a build requirement on purpose (build isolation would fetch a
multi-GB CUDA torch): install with `pip install -e . --no-build-isolation`.
"""

import glob
import os
import warnings

import torch
from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _sources(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def _want_cuda():
    if os.environ.get("PCSEG_FORCE_CPU", "0") == "1":
        return False
    if os.environ.get("FORCE_CUDA", "0") == "1":
        return True
    return torch.version.cuda is not None and CUDA_HOME is not None and torch.cuda.is_available()


# -ffp-contract=off / --fmad=false: squared distances must round exactly like the pure-PyTorch
# references (x*x + y*y then + z*z, no fused multiply-add), so FPS and kNN return identical
# indices, ties included.
# -fno-trapping-math: nothing in pcseg reads floating-point exception flags, and without it
# GCC will not vectorise a loop whose selects guard a division (ring_query's angular keys);
# rounding is unaffected (no -ffast-math, nothing reassociated).
# No -std flag: torch's cpp_extension adds the standard its own headers need (C++20 for
# torch 2.13 and 2.14; torch 2.14's ATen refuses to compile under -std=c++17).
# AT_PER_OPERATOR_HEADERS + TORCH_ASSERT_ONLY_METHOD_OPERATORS: a source includes the header of
# each ATen function it calls (<ATen/ops/empty.h>), never <ATen/ATen.h>, which declares every
# operator and would be parsed again for each source and each GPU architecture.
ATEN_HEADERS = ["-DAT_PER_OPERATOR_HEADERS", "-DTORCH_ASSERT_ONLY_METHOD_OPERATORS"]
CXX_FLAGS = ["-O3", "-fopenmp", "-ffp-contract=off", "-fno-trapping-math", *ATEN_HEADERS]
NVCC_FLAGS = ["-O3", "--fmad=false", "--expt-relaxed-constexpr", *ATEN_HEADERS]

ext_modules = [
    CppExtension(
        "pcseg._C",
        _sources("csrc/pcseg.cpp") + _sources("csrc/*/*_cpu.cpp"),
        include_dirs=[os.path.join(ROOT, "csrc")],
        extra_compile_args={"cxx": CXX_FLAGS},
        extra_link_args=["-fopenmp"],
    )
]
if _want_cuda():
    ext_modules.append(
        CUDAExtension(
            "pcseg._C_cuda",
            _sources("csrc/cuda_registration.cpp") + _sources("csrc/*/*_cuda.cu"),
            include_dirs=[os.path.join(ROOT, "csrc")],
            extra_compile_args={"cxx": CXX_FLAGS, "nvcc": NVCC_FLAGS},
        )
    )


class BuildPcsegExtensions(BuildExtension):
    def build_extension(self, ext):
        if ext.name != "pcseg._C_cuda" or os.environ.get("FORCE_CUDA", "0") == "1":
            return super().build_extension(ext)
        try:
            super().build_extension(ext)
        except Exception as err:  # noqa: BLE001 - any compiler failure means: go on CPU-only
            warnings.warn(  # noqa: B028 - a build message, not a caller's mistake
                f"pcseg: the CUDA kernels failed to build ({err}); installing the "
                "CPU kernels only. Set FORCE_CUDA=1 to make this an error."
            )


setup(
    ext_modules=ext_modules,
    cmdclass={"build_ext": BuildPcsegExtensions.with_options(use_ninja=True)},
)
