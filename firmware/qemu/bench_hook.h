/* Forced into every source of the bench image (-include): the native slices' profiling hook. */
#ifndef EEQ_BENCH_HOOK_H
#define EEQ_BENCH_HOOK_H

/** Called by the generated ee_native.c after every kernel: records the TIMER0 reading. */
void eeq_op_done(int slice, int op);

#define EE_NATIVE_OP_DONE(slice, op) eeq_op_done((slice), (op))

#endif /* EEQ_BENCH_HOOK_H */
