"""libparallax.so through ctypes: finding and loading it, one engine per CUDA device, and
the packed plx_attention_args (include/parallax/parallax.h). No torch here, so the
library can be located, loaded and its errors tested on a machine without PyTorch."""
import ctypes
import os
import struct
import sys
import threading
from pathlib import Path

LIB_NAME = "libparallax.so"

# plx_attention_args, ABI 2, as the C compiler lays it out on LP64 ('@': native sizes and
# alignment): struct_size, variant, dtype, batch, q_len, kv_len, heads_q, heads_kv,
# head_dim, causal, window_left (11 int), qk_scale (float), q, r, k, v, o, seqused_k,
# block_table (7 pointers), page_size, max_pages (2 int). tests/test_c_api.cpp pins the
# offsets on the C side. One struct.pack per call is cheaper than setting 21 fields of a
# ctypes.Structure, and the bytes object it returns is private to the call, so
# concurrent callers share nothing.
ARGS = struct.Struct("@11if7P2i")
ARGS_ABI = 2
# ABI 3 appends stats and barv (2 pointers), which the training forward sets; only that
# path packs this longer layout, so inference calls stay on ARGS. BACKWARD_ARGS is
# plx_backward_args: struct_size, then dout, o, stats, barv, dq, dr, dk, dv.
ARGS3 = struct.Struct("@11if7P2i2P")
BACKWARD_ARGS = struct.Struct("@i8P")
BACKWARD_ABI = 3

FAMILIES = {"softmax": 0, "parallax": 1, "parallax_uncentered": 2}

_ERROR_NAMES = {1: "invalid argument", 2: "no GPU", 3: "CUDA driver error", 4: "kernel compile error",
                5: "internal error"}


class LibraryNotFoundError(OSError):
    """libparallax.so could not be found or loaded; the message lists every place tried."""


class ParallaxError(RuntimeError):
    """A libparallax call failed; .code is the PLX_ERROR_* value, the message plx_last_error()."""

    def __init__(self, function, code, message):
        self.code = code
        super().__init__(f"{function} failed ({_ERROR_NAMES.get(code, 'error')} {code}): {message}")


def _package_dir():
    return Path(__file__).resolve().parent


def candidates():
    """Where the library is looked for, in order, as (how it was found, path or soname).
    PARALLAX_LIB, when set, is the only candidate: an explicit choice never falls back."""
    env = os.environ.get("PARALLAX_LIB")
    if env:
        p = Path(env)
        return [("PARALLAX_LIB", str(p / LIB_NAME if p.is_dir() else p))]
    out = []
    # `pip install --prefix P ./python` next to `cmake --install build --prefix P` puts the
    # package at P/lib/pythonX.Y/site-packages/parallax_jit and the library at P/lib.
    # The same holds for a virtual environment's prefix (cmake --install --prefix "$VIRTUAL_ENV").
    pkg = _package_dir()
    prefixes = []
    if pkg.parent.name in ("site-packages", "dist-packages"):  # <prefix>/lib/pythonX.Y/site-packages
        prefixes.append(pkg.parents[3])
    prefixes.append(Path(sys.prefix))
    for prefix in dict.fromkeys(prefixes):
        out.append(("install prefix", str(prefix / "lib" / LIB_NAME)))
    # Run from a source checkout: <repo>/python/parallax_jit, library at <repo>/build.
    repo = pkg.parent.parent
    if (repo / "CMakeLists.txt").is_file():
        out.append(("build tree", str(repo / "build" / LIB_NAME)))
    out += [("loader path", "libparallax.so.0"), ("loader path", LIB_NAME)]
    return out


class Library:
    """The loaded libparallax.so and its entry points."""

    def __init__(self, path, cdll):
        self.path = path
        self._cdll = cdll
        c = cdll
        c.plx_engine_create.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
        c.plx_engine_create.restype = ctypes.c_int
        c.plx_engine_destroy.argtypes = [ctypes.c_void_p]
        c.plx_engine_destroy.restype = None
        # args is passed as the packed bytes object: ctypes hands C its buffer.
        c.plx_attention.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        c.plx_attention.restype = ctypes.c_int
        c.plx_last_error.argtypes = []
        c.plx_last_error.restype = ctypes.c_char_p
        self.attention_fn = c.plx_attention
        # ABI 3 only; None in older libraries (callers check self.abi first).
        self.backward_fn = getattr(c, "plx_attention_backward", None)
        if self.backward_fn is not None:
            self.backward_fn.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]
            self.backward_fn.restype = ctypes.c_int
        # Libraries from before these two existed read ABI 1 or 2; assume the older, so
        # paged-KV fields are never handed to a library that would silently ignore them.
        try:
            fn = c.plx_abi_version
            fn.restype = ctypes.c_int
            self.abi = int(fn())
        except AttributeError:
            self.abi = 1
        try:
            fn = c.plx_version
            fn.restype = ctypes.c_char_p
            self.version = fn().decode()
        except AttributeError:
            self.version = "unknown (before 0.1.0)"
        self._engines = {}
        self._lock = threading.Lock()

    def last_error(self):
        msg = self._cdll.plx_last_error()
        return msg.decode(errors="replace") if msg else ""

    def engine(self, device):
        """The engine of CUDA device `device`, created on first use. Engines live as long as
        the process: destroying one at exit could race the CUDA context's own teardown."""
        e = self._engines.get(device)
        if e is not None:
            return e
        with self._lock:
            e = self._engines.get(device)
            if e is None:
                h = ctypes.c_void_p()
                rc = self._cdll.plx_engine_create(ctypes.byref(h), device)
                if rc != 0:
                    raise ParallaxError(f"plx_engine_create(device {device})", rc, self.last_error())
                e = self._engines[device] = h
        return e

    def attention(self, engine, packed_args, stream):
        """plx_attention with args packed by ARGS; raises ParallaxError on failure."""
        rc = self.attention_fn(engine, packed_args, stream)
        if rc != 0:
            raise ParallaxError("plx_attention", rc, self.last_error())

    def attention_backward(self, engine, packed_args, packed_backward_args, stream):
        """plx_attention_backward with args packed by ARGS3 and BACKWARD_ARGS."""
        if self.abi < BACKWARD_ABI or self.backward_fn is None:
            raise ParallaxError("plx_attention_backward", 1,
                                f"{self!r} has no backward (it needs args ABI {BACKWARD_ABI})")
        rc = self.backward_fn(engine, packed_args, packed_backward_args, stream)
        if rc != 0:
            raise ParallaxError("plx_attention_backward", rc, self.last_error())

    def __repr__(self):
        return f"<libparallax {self.version} (args ABI {self.abi}) at {self.path}>"


_library = None
_load_lock = threading.Lock()


def load():
    """The process's Library, loaded on first use (see candidates() for the search order)."""
    global _library
    if _library is not None:
        return _library
    with _load_lock:
        if _library is None:
            _library = _load()
    return _library


def _load():
    tried = []
    for how, path in candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(f"  {how}: {path} (absent)")
            continue
        try:
            cdll = ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"  {how}: {path} ({e})")
            continue
        if not hasattr(cdll, "plx_attention"):
            tried.append(f"  {how}: {path} (loaded, but it has no plx_attention: not libparallax)")
            continue
        resolved = path
        if os.sep not in path:  # found by the loader: report where
            resolved = _loaded_path(path) or path
        return Library(os.path.realpath(resolved) if os.sep in resolved else resolved, cdll)
    raise LibraryNotFoundError(
        "parallax_jit: cannot load libparallax.so. Tried, in order:\n" + "\n".join(tried) +
        "\nBuild it (tools/main.sh builds build/libparallax.so), install it with "
        "`cmake --install build --prefix P`, then set PARALLAX_LIB=P/lib/libparallax.so "
        "(or install this package with `pip install --prefix P ./python`).")


def _loaded_path(soname):
    """The file the dynamic loader mapped for `soname`, from /proc/self/maps (Linux)."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.rstrip("\n").split(None, 5)
                if len(p) == 6 and os.path.basename(p[5]).startswith(LIB_NAME):
                    return p[5]
    except OSError:
        pass
    return None
