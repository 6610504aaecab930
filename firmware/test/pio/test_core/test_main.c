/* PlatformIO's Unity runner (pio test -e native) for the same cases `make -C firmware test` runs:
 * PlatformIO compiles every C file in the root of its test_dir into each suite, so the make-built
 * harnesses in firmware/test stay outside it and this suite includes the case file. */
#include "../../test_core.c"
