"""fetch_cuda_headers.py SITE_TORCH OUT: the CUDA headers that c10d's
ProcessGroupNCCL.hpp needs (through ATen/cuda/CUDAContext.h) and a pip-installed
CUDA torch may lack, into OUT/nvidia/*/include: nccl.h, cuBLAS, cuSPARSE, cuSOLVER,
the runtime, and CUDA 13's crt/ and cccl (nv/target), which no torch wheel
depends on. The versions are the ones the torch wheel pins (its METADATA, and for
CUDA 13 wheels the cuda-toolkit metadata package it names). Only the wheels'
include/ folders are kept; the wheels (about 1 GB, mostly libraries) are
downloaded to a temporary folder and removed.

Used by scripts/device_pack.sh, so that the binary it builds for the GPU machine
has NCCL; a user's CUDA build gets the same with
  pip install nvidia-cuda-crt==<toolkit's> nvidia-cuda-cccl==<toolkit's>
next to torch (make finds site-packages/nvidia/*/include).
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

# The header wheels, by the name's stem (a -cu12 / -cu13 suffix may follow).
WANT = ("nvidia-nccl", "nvidia-cublas", "nvidia-cusparse", "nvidia-cusolver", "nvidia-cuda-runtime",
        "nvidia-cuda-crt", "nvidia-cuda-cccl")


def pins(metadata, extra=None):
    """(name, version) of the name==version requirements of a METADATA text (those of one extra, or
    the unconditional ones)."""
    out = []
    for line in metadata.splitlines():
        m = re.match(r"Requires-Dist: ([A-Za-z0-9_.-]+)(\[[^]]*\])?\s*\(?==\s*([0-9][0-9A-Za-z.*]*)\)?\s*(;.*)?$",
                     line.strip())
        if not m:
            continue
        cond = m.group(4) or ""
        if extra is not None and f"extra == '{extra}'" not in cond:
            continue
        if extra is None and "extra ==" in cond:
            continue
        out.append((m.group(1).lower().replace("_", "-"), m.group(3)))
    return out


def wanted(name):
    return any(name == w or name.startswith(w + "-cu") for w in WANT)


def main():
    site_torch, out = sys.argv[1], sys.argv[2]
    metas = glob.glob(os.path.join(site_torch, "..", "torch-*.dist-info", "METADATA"))
    if not metas:
        sys.exit(f"fetch_cuda_headers: no torch-*.dist-info/METADATA beside {site_torch}")
    meta = open(metas[0]).read()
    tmp = tempfile.mkdtemp()
    try:
        reqs = {}
        for name, ver in pins(meta):
            if wanted(name):
                reqs[name] = ver
            if name == "cuda-toolkit":  # CUDA 13 wheels: the toolkit's own pins
                subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp,
                                f"cuda-toolkit=={ver}"], check=True)
                w = glob.glob(os.path.join(tmp, "cuda_toolkit-*.whl"))[0]
                with zipfile.ZipFile(w) as z:
                    tm = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
                for n, v in pins(tm, "all") + pins(tm, "cudart") + pins(tm, "crt") + pins(tm, "cccl"):
                    if wanted(n):
                        reqs[n] = v
        if not any(n.startswith("nvidia-nccl") for n in reqs):
            sys.exit("fetch_cuda_headers: this torch pins no nvidia-nccl wheel (not a CUDA build from PyPI?)")
        specs = [f"{n}=={v}" for n, v in sorted(reqs.items())]
        print("fetch_cuda_headers: the include/ folders of", " ".join(specs))
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp] + specs,
                       check=True)
        part = out + ".tmp"
        shutil.rmtree(part, ignore_errors=True)
        for w in glob.glob(os.path.join(tmp, "nvidia_*.whl")):
            with zipfile.ZipFile(w) as z:
                for n in z.namelist():
                    if re.match(r"nvidia/[^/]+/include/", n) and not n.endswith("/"):
                        z.extract(n, part)
        shutil.rmtree(out, ignore_errors=True)
        os.rename(part, out)
        open(os.path.join(out, ".captiongo-ok"), "w").close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
