"""Build the example extension against the installed softmax_fast.

    python setup.py build_ext --inplace

softmax_fast.get_include() puts the installed package's cython_kernels.pxd on
Cython's include path; no C header of softmax_fast is needed, as the kernels
are found in the installed softmax_fast module when softmax_user is imported.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

import softmax_fast

setup(
    name="softmax_user",
    ext_modules=cythonize(
        [Extension("softmax_user", ["softmax_user.pyx"])],
        include_path=[softmax_fast.get_include()],
    ),
)
