#!/usr/bin/env python3
"""stub_wrappers.py: replace generated gotch wrappers with a runtime error.

Usage: stub_wrappers.py TORCH_API_GENERATED_CPP_H LIBTORCH_VERSION NAME...

gotch v0.9.1's libtch/torch_api_generated.cpp.h is generated from libtorch 2.1.0's
ATen declarations. Against a newer libtorch (2.11) three of its ~2,500 wrappers no
longer compile because the ATen functions they call changed signature
(_cslt_sparse_mm, _scaled_mm, _scaled_mm_out). Each generated wrapper reads

    void atg_NAME(tensor *out__, ...) {
      PROTECT(
        ...
      )
    }

and this script replaces what PROTECT guards with a throw, which PROTECT turns into
gotch's usual error (ts.TorchErr), so calling one from Go returns an error that
names the op and the libtorch instead of failing the build. The file is rewritten
in place; a wrapper that is missing, or found more than once, is an error.
"""
import os
import re
import sys


def main():
    if len(sys.argv) < 4:
        sys.exit("usage: stub_wrappers.py TORCH_API_GENERATED_CPP_H LIBTORCH_VERSION NAME...")
    path, version, names = sys.argv[1], sys.argv[2], sys.argv[3:]
    with open(path) as f:
        src = f.read()
    for name in names:
        pat = re.compile(r"(^void %s\([^)]*\) \{\n  PROTECT\(\n)(.*?)(\n  \)\n\})" % re.escape(name), re.S | re.M)
        msg = ("%s is not available in this captiongo build: gotch v0.9.1 wraps libtorch 2.1.0's "
               "signature, and libtorch %s changed it" % (name[len("atg_"):], version))
        body = '    throw std::runtime_error("%s");' % msg
        src, n = pat.subn(lambda m: m.group(1) + body + m.group(3), src)
        if n != 1:
            sys.exit("stub_wrappers.py: %s: found wrapper %s %d times, want exactly once" % (path, name, n))
    with open(path + ".tmp", "w") as f:
        f.write(src)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
