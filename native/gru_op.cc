// mof.native::QGru(xw float [T, B, 3U], h0 float [B, U], R int8 [U, 3U], r_scale float [3U],
//                  b_h float [U]) -> (h_T float [B, U], Y float [T, B, U]?)
//
// one op for the int8 GRU that quant/gru_rewrite.py + quant/rowwise.py write as a first step at top
// level and a Loop over the others (each step: Mul, QuantizeLinear, MatMulIntegerToFloat, Split x2,
// Add, Sigmoid, Split, Add, Mul, Add, Tanh, Sub, Mul, Add), with their arithmetic bit for bit
// (gru.h). T >= 1. R must be in [-64, 64]; a constant R is packed once, when the session creates
// the kernel. Each step's unit blocks are shared out on onnxruntime's intra-op threads.
#include <algorithm>

#include "gru.h"
#include "op_util.h"

namespace {

using namespace mof_ops;
using mof_native::GruRun;
using mof_native::GruWeights;
constexpr int64_t kParallelMacs = 1 << 16;  // a step's products below this run on one thread
constexpr int64_t kMaxTasks = 8;

struct Kernel {
  bool constant = false;               // R was a constant input: packed at creation
  GruWeights w;
};

OrtStatus* pack(const Tensor& R, GruWeights* out) {
  if (R.type != MOF_ORT_INT8 || R.dims.size() != 2 || R.dims[1] != 3 * R.dims[0])
    return error("QGru: R must be int8 [U, 3U]");
  mof_native::pack_gru(static_cast<const int8_t*>(R.data), R.dims[0], out);
  if (out->packed.peak > kWeightMax) return error("QGru: R must be in [-64, 64] (7-bit weights)");
  return nullptr;
}

OrtStatus* inputs(OrtKernelContext* ctx, Tensor t[5]) {
  for (size_t i = 0; i < 5; ++i) {
    const OrtValue* v = nullptr;
    MOF_TRY(g_api.KernelContext_GetInput(ctx, i, &v));
    if (v == nullptr) return error("QGru: every input is required");
    MOF_TRY(read_tensor(v, &t[i]));
  }
  return nullptr;
}

OrtStatus* check(const Tensor t[5], int64_t U) {
  const Tensor &xw = t[0], &h0 = t[1], &scale = t[3], &bh = t[4];
  if (xw.type != MOF_ORT_FLOAT || xw.dims.size() != 3 || xw.dims[2] != 3 * U)
    return error("QGru: xw must be float [T, B, 3U]");
  if (xw.dims[0] < 1) return error("QGru: xw must hold at least one step");
  if (h0.type != MOF_ORT_FLOAT || h0.dims.size() != 2 || h0.dims[0] != xw.dims[1] || h0.dims[1] != U)
    return error("QGru: h0 must be float [B, U]");
  if (scale.type != MOF_ORT_FLOAT || scale.count() != 3 * U) return error("QGru: r_scale must be float [3U]");
  if (bh.type != MOF_ORT_FLOAT || bh.count() != U) return error("QGru: b_h must be float [U]");
  return nullptr;
}

struct Job {
  GruRun run;
  int64_t per_task = 1;                // unit blocks per task
};

void step_chunk(void* data, size_t task) {
  Job& j = *static_cast<Job*>(data);
  const int64_t ub0 = int64_t(task) * j.per_task;
  mof_native::gru_units(g_isa, &j.run, ub0, std::min(j.run.w->UB, ub0 + j.per_task));
}

OrtStatus* outputs(OrtKernelContext* ctx, const Tensor& xw, int64_t U, float** h_T, float** y) {
  size_t n = 0;
  MOF_TRY(g_api.KernelContext_GetOutputCount(ctx, &n));
  const int64_t h_dims[2] = {xw.dims[1], U}, y_dims[3] = {xw.dims[0], xw.dims[1], U};
  OrtValue* v = nullptr;
  MOF_TRY(g_api.KernelContext_GetOutput(ctx, 0, h_dims, 2, &v));
  MOF_TRY(g_api.GetTensorMutableData(v, reinterpret_cast<void**>(h_T)));
  *y = nullptr;
  if (n > 1) {
    MOF_TRY(g_api.KernelContext_GetOutput(ctx, 1, y_dims, 3, &v));
    if (v != nullptr) MOF_TRY(g_api.GetTensorMutableData(v, reinterpret_cast<void**>(y)));
  }
  return nullptr;
}

OrtStatus* compute(Kernel* k, OrtKernelContext* ctx) {
  Tensor t[5];
  MOF_TRY(inputs(ctx, t));
  GruWeights local;
  if (!k->constant) MOF_TRY(pack(t[2], &local));
  const GruWeights& w = k->constant ? k->w : local;
  MOF_TRY(check(t, w.U));
  float *h_T = nullptr, *y = nullptr;
  MOF_TRY(outputs(ctx, t[0], w.U, &h_T, &y));
  Job j;
  GruRun& r = j.run;
  r.w = &w;
  r.xw = static_cast<const float*>(t[0].data);
  r.T = t[0].dims[0];
  r.B = t[0].dims[1];
  r.y = y;
  mof_native::gru_start(&r, static_cast<const float*>(t[1].data), static_cast<const float*>(t[3].data),
                        static_cast<const float*>(t[4].data));
  const int64_t tasks = 3 * w.U * w.U * r.B >= kParallelMacs ? std::min(w.UB, kMaxTasks) : 1;
  j.per_task = (w.UB + tasks - 1) / tasks;
  for (r.t = 0; r.t < r.T; ++r.t) {
    MOF_TRY(parallel(ctx, step_chunk, size_t((w.UB + j.per_task - 1) / j.per_task), &j));
    r.cur = 1 - r.cur;
  }
  std::copy(r.h[r.cur].begin(), r.h[r.cur].end(), h_T);
  return nullptr;
}

struct GruOp {
  static constexpr const char* kName = "QGru";
  static constexpr size_t kInputs = 5;
  static constexpr size_t kOutputs = 2;
  static int input_type(size_t i) { return i == 2 ? MOF_ORT_INT8 : MOF_ORT_FLOAT; }
  static int input_characteristic(size_t) { return MOF_ORT_REQUIRED; }
  static int output_characteristic(size_t i) { return i == 1 ? MOF_ORT_OPTIONAL : MOF_ORT_REQUIRED; }
  static OrtStatus* create(const OrtKernelInfo* info, void** out) {
    return create_packed<Kernel>(info, 2, pack, kName, "R", out);
  }
  static OrtStatus* compute(void* kernel, OrtKernelContext* ctx) {
    return ::compute(static_cast<Kernel*>(kernel), ctx);
  }
  static void destroy(void* kernel) { delete static_cast<Kernel*>(kernel); }
};

}  // namespace

namespace mof_ops {

OrtCustomOp make_gru_op() { return describe<GruOp>(); }

}  // namespace mof_ops
