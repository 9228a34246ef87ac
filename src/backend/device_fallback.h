// How a device backend (cuda, opencl) runs an op its kernels do not take, or that failed on the
// device: on its CPU delegate, which it shares with a placement so there is one thread pool.
// The one helper both use, so a new device op writes its fallback as one call.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "core/status.h"

namespace fathom {

// Host floats [p, p + n) an op reads or writes.
struct HostSpan {
  const float* p = nullptr;
  int64_t n = 0;
};

// Runs on_device() (a Status); where it fails, on_cpu() (the op on the CPU delegate) instead: quietly for kUnsupported
// (placement: the kernels do not take this shape or format), after device.device_failed(op, st)
// otherwise (reported once by the device, which then keeps going on the CPU). Around the CPU's
// run the residency protocol holds: `reads` are made current on the host first (device.sync,
// then device.finish() for work the device still has queued, e.g. KV rows it stages), `writes`
// are announced to the device after (device.wrote). After a device run, device.after_op(writes)
// (a device that does not keep activations reads them back there). device.fallback_ops counts
// the ops that ran on the CPU instead.
template <typename Device, typename DeviceOp, typename CpuOp>
void run_on_device_or_cpu(Device& device, const char* op, std::initializer_list<HostSpan> reads,
                          std::initializer_list<HostSpan> writes, DeviceOp&& on_device, CpuOp&& on_cpu) {
  const Status st = on_device();
  if (st.is_ok()) return device.after_op(writes);
  ++device.fallback_ops;
  if (st.code() != ErrorCode::kUnsupported) device.device_failed(op, st);
  for (const HostSpan& r : reads) device.sync(r);
  if (const Status done = device.finish(); !done.is_ok()) device.device_failed(op, done);
  on_cpu();
  for (const HostSpan& w : writes) device.wrote(w);
}

}  // namespace fathom
