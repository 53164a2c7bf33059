"""Build the Cython kernels: ``-O3``, and OpenMP where the compiler supports it.

The exported C API (``cython_kernels.pxd`` and its definitions,
``_c_api.pxi``) and the declarations of the C loops with their fused callers
(``_hot_loops.pxi``) are generated first from Tempita templates, one plain
name per type pair, the way scikit-learn generates its ``.pyx.tp`` kernels.

OpenMP is detected by compiling and linking a small test program with the same
compiler that builds the extension. Where that fails (for example Apple clang
without libomp) the extension is built serial and the build says so; the
kernels stay correct, only single-threaded. ``SOFTMAX_FAST_OPENMP=0`` forces the
serial build.
"""

import glob
import os
import sys
import tempfile
import textwrap

from Cython import Tempita
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError, LinkError

HERE = os.path.dirname(os.path.abspath(__file__))
KERNELS = os.path.join("softmax_fast", "kernels")
# The type pairs of the exported C API: (name suffix, weights' C type[, features' C type]).
WEIGHT_TYPES = [("f32", "float"), ("f64", "double")]
KERNEL_TYPES = [
    ("f32", "float", "float"),
    ("f32_u8", "float", "unsigned char"),
    ("f64", "double", "double"),
    ("f64_u8", "double", "unsigned char"),
]
# The instantiations of hot_loops/pair_impl.h, by weights' type: (suffix, C type,
# [(pair suffix, features' C type, their name in the fused type features_t)]).
LOOP_TYPES = [
    ("f32", "float", [("f32_u8", "unsigned char", "uchar"), ("f32_f32", "float", "float")]),
    ("f64", "double", [("f64_u8", "unsigned char", "uchar"), ("f64_f64", "double", "double")]),
]
# The CSR kernels' type pairs, of their loops and of the exported C API: (name suffix, weights' C type,
# indices' C type).
CSR_TYPES = [
    ("f32_i32", "float", "int32_t"),
    ("f32_i64", "float", "int64_t"),
    ("f64_i32", "double", "int32_t"),
    ("f64_i64", "double", "int64_t"),
]
TEMPLATES = ["cython_kernels.pxd.tp", "_c_api.pxi.tp", "_hot_loops.pxi.tp"]
# The C headers of the loops: hot_loops.h, which the kernels include, and the
# headers it includes, all in hot_loops/ (globbed, so that a new one is not
# forgotten): a change to any of them rebuilds the extension.
HEADERS = [os.path.join(KERNELS, "hot_loops.h")] + sorted(
    glob.glob(os.path.join(KERNELS, "hot_loops", "*.h"), root_dir=HERE)
)


def render_templates():
    """Write each template of ``TEMPLATES`` without its ``.tp``, where the text changed."""
    for name in TEMPLATES:
        template = os.path.join(HERE, KERNELS, name)
        with open(template) as f:
            text = Tempita.Template(f.read(), name=template).substitute(
                weight_types=WEIGHT_TYPES, kernel_types=KERNEL_TYPES, loop_types=LOOP_TYPES, csr_types=CSR_TYPES)
        target = template[: -len(".tp")]
        if os.path.exists(target):
            with open(target) as f:
                if f.read() == text:
                    continue
        with open(target, "w") as f:
            f.write(text)


OPENMP_TEST_PROGRAM = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int threads = 0;
        #pragma omp parallel reduction(+: threads)
        threads += 1;
        return threads > 0 ? 0 : 1;
    }
    """
)


def openmp_flags(compiler):
    """``(compile_args, link_args)`` that enable OpenMP with ``compiler``, or ``None``."""
    if os.environ.get("SOFTMAX_FAST_OPENMP", "1") == "0":
        return None
    flags = (["/openmp"], []) if compiler.compiler_type == "msvc" else (["-fopenmp"], ["-fopenmp"])
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "openmp_test.c")
        with open(source, "w") as f:
            f.write(OPENMP_TEST_PROGRAM)
        try:
            objects = compiler.compile([source], output_dir=tmp, extra_postargs=flags[0])
            compiler.link_executable(objects, "openmp_test", output_dir=tmp, extra_postargs=flags[1])
        except (CompileError, LinkError) as exc:
            print(f"softmax_fast: OpenMP test program failed ({exc})", file=sys.stderr)
            return None
    return flags


class BuildExtWithOpenMP(build_ext):
    def build_extensions(self):
        optimize = ["/O2"] if self.compiler.compiler_type == "msvc" else ["-O3"]
        flags = openmp_flags(self.compiler)
        if flags is None:
            print(
                "softmax_fast: WARNING: building the Cython kernels WITHOUT OpenMP; "
                "they will run on one thread.",
                file=sys.stderr,
            )
            flags = ([], [])
        for ext in self.extensions:
            ext.extra_compile_args += optimize + flags[0]
            ext.extra_link_args += flags[1]
        super().build_extensions()


render_templates()
setup(
    ext_modules=cythonize(
        [
            Extension(
                "softmax_fast.kernels.cython_kernels",
                ["softmax_fast/kernels/cython_kernels.pyx"],
                depends=HEADERS,
            )
        ],
        compiler_directives={"language_level": 3},
    ),
    cmdclass={"build_ext": BuildExtWithOpenMP},
)
