#!/usr/bin/env python3
"""fetch_libtorch.py: put libtorch 2.1.0 (CPU) from PyPI's torch==2.1.0 wheel into a folder.

Usage: fetch_libtorch.py DEST WHEELDIR

PyPI's torch 2.1.0 wheel for Linux carries libtorch built with the pre-C++11 ABI.
For a CPU build captiongo needs only its headers, libc10, libtorch_cpu and the
bundled libgomp; libtorch_cpu.so also names libcudart.so.12 and libcupti.so.12
(its profiler), which two small nvidia-* wheels carry. The files are laid out as in
site-packages (DEST/torch/lib, DEST/nvidia/cuda_runtime/lib, ...) so that the RPATH
libtorch_cpu.so was built with ($ORIGIN/../../nvidia/...) finds them unchanged.
Nothing is executed from the wheels; the extraction is written to DEST.tmp and
renamed into place, so an interrupted run leaves no half-made folder behind.
"""
import glob
import os
import shutil
import subprocess
import sys
import zipfile

PINS = [
    "torch==2.1.0",
    "nvidia-cuda-runtime-cu12==12.1.105",
    "nvidia-cuda-cupti-cu12==12.1.105",
]

# Member prefixes kept from each wheel (CPU build).
KEEP = (
    "torch/include/",
    "torch/lib/libc10.so",
    "torch/lib/libtorch_cpu.so",
    "torch/lib/libgomp-",
    "torch/lib/libshm.so",
    "torch/version.py",
    "nvidia/cuda_runtime/lib/libcudart.so.12",
    "nvidia/cuda_cupti/lib/libcupti.so.12",
)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: fetch_libtorch.py DEST WHEELDIR")
    dest, wheeldir = sys.argv[1], sys.argv[2]
    os.makedirs(wheeldir, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.11", "--platform", "manylinux1_x86_64",
           "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
           "-d", wheeldir] + PINS
    print("captiongo setup: downloading " + " ".join(PINS) + " from PyPI (cached in " + wheeldir + ")", flush=True)
    r = subprocess.run(cmd)
    if r.returncode != 0:
        sys.exit("captiongo setup: pip could not download %s; check the network or point "
                 "LIBTORCH=/path/to/libtorch-2.1.0 at a libtorch you have" % " ".join(PINS))
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    wheels = []
    for pin in PINS:
        name, ver = pin.split("==")
        pat = os.path.join(wheeldir, name.replace("-", "_") + "-" + ver + "-*.whl")
        found = sorted(glob.glob(pat))
        if not found:
            sys.exit("captiongo setup: no wheel matching %s after download" % pat)
        wheels.append(found[-1])
    for whl in wheels:
        with zipfile.ZipFile(whl) as z:
            for m in z.infolist():
                if m.filename.startswith(KEEP) and not m.is_dir():
                    z.extract(m, tmp)
    for p in glob.glob(os.path.join(tmp, "**", "*.so*"), recursive=True):
        os.chmod(p, 0o755)
    shutil.rmtree(dest, ignore_errors=True)
    os.rename(tmp, dest)
    # The wheels stay in pip's own cache; the copy here is no longer needed.
    shutil.rmtree(wheeldir, ignore_errors=True)
    print("captiongo setup: libtorch 2.1.0 (CPU, pre-C++11 ABI) is in " + os.path.join(dest, "torch"), flush=True)


if __name__ == "__main__":
    main()
