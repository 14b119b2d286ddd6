/* The C API from an installed parallax-jit, built with pkg-config:
 *   cc hello.c $(pkg-config --cflags --libs parallax) \
 *      -Wl,-rpath,$(pkg-config --variable=libdir parallax) -o plx-hello && ./plx-hello
 * Creates an engine on device 0 and exits with plx_engine_create's code (0 on success,
 * PLX_ERROR_NO_GPU = 2 on a machine without a GPU or driver), printing the reason. */
#include <parallax/parallax.h>
#include <stdio.h>

int main(void) {
  plx_engine *engine = NULL;
  int rc = plx_engine_create(&engine, 0);
  if (rc != PLX_OK) {
    fprintf(stderr, "plx-hello: plx_engine_create failed (%d): %s\n", rc, plx_last_error());
    return rc;
  }
  printf("plx-hello: engine ready on device 0\n");
  /* ... fill a plx_attention_args (struct_size = sizeof it) and call plx_attention ... */
  plx_engine_destroy(engine);
  return 0;
}
