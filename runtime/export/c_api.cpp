// C API of libparallax.so (include/parallax/parallax.h). Filled in with the engine.
