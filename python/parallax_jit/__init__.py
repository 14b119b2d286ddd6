"""parallax_jit: Parallax-family attention kernels (libparallax.so, JIT-compiled with NVRTC)
for PyTorch, through the library's C API. No compiled extension: the library is found at
run time (PARALLAX_LIB, the install prefix, the build tree, then the loader path).

    import parallax_jit
    o = parallax_jit.attention(q, r, k, v)   # [batch, len, heads, head_dim], bf16/fp16, CUDA
"""
import importlib.util as _importlib_util

from ._version import __version__
from ._lib import FAMILIES, LibraryNotFoundError, ParallaxError
from ._lib import load as library

__all__ = ["attention", "library", "FAMILIES", "LibraryNotFoundError", "ParallaxError", "__version__"]

# Without a usable torch the package still imports (library(), errors), and attention
# says why it cannot run when called.
_why_no_torch = "parallax_jit.attention needs PyTorch (>= 2.4), which this Python cannot import"
if _importlib_util.find_spec("torch") is not None:
    try:
        from ._torch_op import attention
    except ImportError as _e:  # torch too old (the message says so) or broken
        _why_no_torch = str(_e)
if "attention" not in globals():
    def attention(*args, **kwargs):
        """Needs PyTorch >= 2.4; see parallax_jit._torch_op.attention."""
        raise ImportError(_why_no_torch)
