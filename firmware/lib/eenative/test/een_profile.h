/* Forced into the profiled QEMU check driver's sources (-include): the native slices' profiling hook. */
#ifndef EEN_PROFILE_H
#define EEN_PROFILE_H

/** Called by the generated ee_native.c after every kernel (een_io_qemu.c sums SysTick ticks). */
void een_op_done(int slice, int op);

#define EE_NATIVE_OP_DONE(slice, op) een_op_done((slice), (op))

#endif /* EEN_PROFILE_H */
