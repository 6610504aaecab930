// Demo mode: what the core would send to an edge, printed as text lines for a person instead.
#ifndef EEFW_DEMO_H_
#define EEFW_DEMO_H_

#include <stddef.h>
#include <stdint.h>

/** Prints one line of text (no line ending). */
typedef void (*eefw_print_fn)(const char* line);

/**
 * eec_io.send for demo mode; `user` is an eefw_print_fn. Decodes each frame the core sends and
 * prints the HELLO as a banner and each request's TELEMETRY + RESULT (or ERROR) as one line,
 * naming the true class of demo sample `request_id` from ee_demo_samples.h. Returns 0, or -1
 * for bytes that are not exactly one frame.
 */
int eefw_demo_send(void* user, const uint8_t* data, size_t len);

#endif  // EEFW_DEMO_H_
