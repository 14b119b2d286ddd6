# The package's release; pyproject.toml reads it from here. Kept equal to CMakeLists.txt's
# project(VERSION): the CTest python_parallax_jit checks that the two agree.
__version__ = "0.1.0"
