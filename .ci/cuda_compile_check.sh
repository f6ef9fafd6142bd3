#!/usr/bin/env bash
# CUDA compile check for machines without a GPU: builds pcseg._C_cuda against a CUDA build of
# PyTorch with the pip CUDA toolkit, then checks that
#   * the extension holds device code (SASS) for sm_80 and sm_90,
#   * `import torch; import pcseg._C; import pcseg._C_cuda` works (no GPU needed to import),
#   * every pcseg op has a CUDA kernel registered.
# It uses a second virtual environment, .venv-cuda (created when absent, several GB), and builds in
# a temporary copy of the sources, so the main .venv and its in-place CPU build are untouched.
# Once .venv-cuda exists, nvcc compiling the .cu files for two architectures takes most of the
# time; the script prints the elapsed time (figures: benchmarks/RESULTS.md). Exits non-zero on
# any failure, including a compiler warning in pcseg's own sources.
#
# Environment: PYTHON (default python3.11, else python3) creates the venv; MAX_JOBS caps the
# parallel compile jobs (default: the number of cores).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-cuda"
start_s=$(date +%s)

fail() { echo "cuda_compile_check: FAIL: $*" >&2; exit 1; }

# --- 1. the CUDA venv: torch 2.14.1 (a CUDA 13.0 wheel) and the pip CUDA 13.0.3 toolkit -----
if [[ ! -x "$VENV/bin/python" ]]; then
  PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
  echo "== creating $VENV with $PY"
  "$PY" -m venv "$VENV"
  # ninja: the build runs its compile jobs in parallel (setup.py asks for it), otherwise the
  # .cu files compile one after another.
  "$VENV/bin/pip" install --quiet torch==2.14.1 'cuda-toolkit[nvcc,cccl]==13.0.3' numpy ninja \
    || fail "pip install into $VENV"
fi
PYBIN="$VENV/bin/python"
if [[ ! -x "$VENV/bin/ninja" ]]; then
  "$VENV/bin/pip" install --quiet ninja || fail "pip install ninja into $VENV"
fi
"$PYBIN" -c "import torch, sys; sys.exit(0 if torch.version.cuda else 1)" \
  || fail "the torch in $VENV is not a CUDA build"

SITE="$("$PYBIN" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")"
export CUDA_HOME="$SITE/nvidia/cu13"
NVCC="$CUDA_HOME/bin/nvcc"
if [[ ! -x "$NVCC" ]]; then
  # Wheels have moved nvcc between releases; take whichever nvcc the venv holds.
  NVCC="$(find "$SITE/nvidia" -path '*/bin/nvcc' -type f | head -n 1)"
  [[ -n "$NVCC" ]] || fail "no nvcc under $SITE/nvidia (is cuda-toolkit[nvcc] installed?)"
  CUDA_HOME="$(dirname "$(dirname "$NVCC")")"
fi
[[ -e "$CUDA_HOME/lib/libcudart.so.13" ]] || fail "no $CUDA_HOME/lib/libcudart.so.13"

# --- 2. an out-of-tree copy of the sources and a linkable libcudart.so -----------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/pcseg-cuda-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/lib" "$WORK/src"
# The wheel ships only libcudart.so.13; the link step asks for -lcudart.
ln -s "$CUDA_HOME/lib/libcudart.so.13" "$WORK/lib/libcudart.so"
export LIBRARY_PATH="$WORK/lib:$CUDA_HOME/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
tar -C "$ROOT" --exclude='*.so' --exclude='__pycache__' -cf - setup.py csrc pcseg \
  | tar -C "$WORK/src" -xf -

export PATH="$CUDA_HOME/bin:$VENV/bin:$PATH"
export TORCH_CUDA_ARCH_LIST="8.0;9.0"
export FORCE_CUDA=1
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
unset PCSEG_FORCE_CPU

echo "== nvcc: $("$NVCC" --version | tail -n 1)"
echo "== torch $("$PYBIN" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)')"
echo "== building pcseg._C and pcseg._C_cuda in $WORK/src (TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST, MAX_JOBS=$MAX_JOBS)"
build_start_s=$(date +%s)
if ! (cd "$WORK/src" && "$PYBIN" setup.py build_ext --inplace) > "$WORK/build.log" 2>&1; then
  grep -E "error|FAILED" "$WORK/build.log" | head -n 40 >&2 || true
  tail -n 30 "$WORK/build.log" >&2
  if grep -q "only available with .-std=c++20" "$WORK/build.log"; then
    fail "torch $("$PYBIN" -c 'import torch; print(torch.__version__)') needs C++20 but setup.py" \
         "passes -std=c++17: drop -std=c++17 from CXX_FLAGS and NVCC_FLAGS (torch adds" \
         "-std=c++20 itself when no -std is given)"
  fi
  fail "the build failed (log above)"
fi
echo "== build took $(( $(date +%s) - build_start_s )) s"

# Warnings that point into pcseg's own sources fail the check (torch's headers are not ours).
if grep -E "(^|/)csrc/[^:]*:[0-9]+.*warning" "$WORK/build.log" >&2; then
  fail "compiler warnings in csrc/ (above)"
fi

# --- 3. device code for sm_80 and sm_90 -----------------------------------------------------
SO="$(find "$WORK/src/pcseg" -maxdepth 1 -name '_C_cuda*.so' | head -n 1)"
[[ -n "$SO" ]] || fail "no pcseg/_C_cuda*.so was built (did setup.py skip CUDA?)"
CUOBJDUMP="$(command -v "$CUDA_HOME/bin/cuobjdump" cuobjdump 2>/dev/null | head -n 1 || true)"
if [[ -n "$CUOBJDUMP" ]]; then
  ARCHS="$("$CUOBJDUMP" --list-elf "$SO" | grep -oE 'sm_[0-9]+a?' | sort -u)"
  echo "== $(basename "$SO") holds ELF for (cuobjdump --list-elf): $(echo $ARCHS)"
else
  # The pip toolkit has no cuobjdump: read the .nv_fatbin section directly. Each fatbin entry
  # header is (u16 kind: 1 PTX / 2 ELF, u16 version, u32 header size, u64 payload size, ...,
  # u32 sm at byte 28); this lists exactly what `cuobjdump --list-elf` would.
  ARCHS="$("$PYBIN" - "$SO" <<'PY' | sort -u
import struct
import sys

data = open(sys.argv[1], "rb").read()
assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "not a 64-bit LE ELF file"
shoff, = struct.unpack_from("<Q", data, 0x28)
shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
names = data[headers[shstrndx][4]:headers[shstrndx][4] + headers[shstrndx][5]]
fatbin = b""
for name, _type, _flags, _addr, offset, size in headers:
    if names[name:names.index(b"\0", name)] == b".nv_fatbin":
        fatbin = data[offset:offset + size]
pos = 0
while pos + 16 <= len(fatbin):
    magic, _version, header_size, fat_size = struct.unpack_from("<IHHQ", fatbin, pos)
    if magic != 0xBA55ED50:  # padding between 8-byte aligned containers
        pos += 8
        continue
    entry, end = pos + header_size, pos + header_size + fat_size
    while entry < end:
        kind, _ver, entry_header_size, payload_size = struct.unpack_from("<HHIQ", fatbin, entry)
        sm, = struct.unpack_from("<I", fatbin, entry + 28)
        if kind == 2:  # ELF cubin (SASS); kind 1 is PTX
            print(f"sm_{sm}")
        entry += entry_header_size + payload_size
    pos = end
PY
)"
  echo "== $(basename "$SO") holds ELF for (.nv_fatbin entries, no cuobjdump in the toolkit): $(echo $ARCHS)"
fi
for arch in sm_80 sm_90; do
  grep -qx "$arch" <<< "$ARCHS" || fail "$(basename "$SO") has no $arch device code"
done

# --- 4. import and registration ----------------------------------------------------------------
(cd "$WORK" && PYTHONPATH="$WORK/src" "$PYBIN" - <<'PY') || fail "import / registration check"
import torch
import pcseg._C  # noqa: F401  (schemas and CPU kernels)
import pcseg._C_cuda  # noqa: F401  (CUDA kernels)
from pcseg.ops import HAS_CUDA_KERNELS

ops = ["farthest_point_sample", "knn", "ball_query", "ring_query", "gather_rows",
       "gather_rows_backward", "three_interpolate", "three_interpolate_backward",
       "normals_from_neighbors", "voxelize"]
missing = [op for op in ops
           if not torch._C._dispatch_has_kernel_for_dispatch_key(f"pcseg::{op}", "CUDA")]
assert not missing, f"no CUDA kernel registered for {missing}"
assert HAS_CUDA_KERNELS, "pcseg.ops did not pick up pcseg._C_cuda"
print(f"== imported pcseg._C_cuda with torch {torch.__version__}; CUDA kernels registered for "
      f"all {len(ops)} ops")
PY

echo "== cuda_compile_check: OK in $(( $(date +%s) - start_s )) s"
