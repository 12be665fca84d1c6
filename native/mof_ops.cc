// mof's custom onnxruntime ops, registered with SessionOptions.register_custom_ops_library(path):
//
//   mof.native::QGru (gru_op.cc), and
//   mof.native::RowwiseQMatMul(x float [..., K], W int8 [K, N], w_scale float [N], bias float [N]?,
//                              residual float [..., N]?) -> y float [..., N]
//
// one op for quant/rowwise.py's Abs, ReduceMax, Mul, Div, QuantizeLinear, MatMulIntegerToFloat,
// Mul (and the Add of a bias after them, and then a residual connection's Add of a tensor of y's
// shape), with their arithmetic bit for bit (qgemm.h). W must be
// in [-64, 64] (7 bits, what rowwise.py writes); a constant W is packed once, when the session
// creates the kernel.
#include <vector>

#include "op_util.h"

using mof_native::Isa;
using mof_native::Packed;

namespace mof_ops {

mof_ort::Api g_api;
Isa g_isa = Isa::kScalar;

OrtStatus* error(const char* msg) { return g_api.CreateStatus(MOF_ORT_INVALID_ARGUMENT, msg); }

OrtStatus* read_tensor(const OrtValue* value, Tensor* out) {
  OrtTensorTypeAndShapeInfo* info = nullptr;
  MOF_TRY(g_api.GetTensorTypeAndShape(value, &info));
  size_t rank = 0;
  OrtStatus* status = g_api.GetTensorElementType(info, &out->type);
  if (!status) status = g_api.GetDimensionsCount(info, &rank);
  if (!status) {
    out->dims.resize(rank);
    status = g_api.GetDimensions(info, out->dims.data(), rank);
  }
  g_api.ReleaseTensorTypeAndShapeInfo(info);
  if (status) return status;
  return g_api.GetTensorMutableData(const_cast<OrtValue*>(value), &out->data);
}

const OrtValue* constant_input(const OrtKernelInfo* info, size_t index) {
  int is_constant = 0;
  const OrtValue* value = nullptr;
  OrtStatus* status = g_api.KernelInfoGetConstantInput_tensor(info, index, &is_constant, &value);
  if (status != nullptr) {              // "not constant": computed at run time
    g_api.ReleaseStatus(status);
    return nullptr;
  }
  return is_constant ? value : nullptr;
}

OrtStatus* parallel(OrtKernelContext* ctx, void (*fn)(void*, size_t), size_t total, void* data) {
  if (total <= 1) {
    for (size_t i = 0; i < total; ++i) fn(data, i);
    return nullptr;
  }
  return g_api.KernelContext_ParallelFor(ctx, fn, total, 0, data);
}

}  // namespace mof_ops

namespace {

using namespace mof_ops;

struct Kernel {
  bool constant = false;               // W was a constant input: packed at creation
  Packed w;
};

OrtStatus* pack(const Tensor& w, Packed* out) {
  if (w.type != MOF_ORT_INT8 || w.dims.size() != 2) return error("RowwiseQMatMul: W must be int8 [K, N]");
  mof_native::pack_weights(static_cast<const int8_t*>(w.data), w.dims[0], w.dims[1], out);
  if (out->peak > kWeightMax) return error("RowwiseQMatMul: W must be in [-64, 64] (7-bit weights)");
  return nullptr;
}

struct Run {
  const float* x;
  int64_t K;
  int64_t rows_per_chunk;
  mof_native::Product p;
  std::vector<uint8_t> u8;             // [M, K4 * 4]
  std::vector<float> x_scale;          // [M]
};

void quantize_chunk(void* data, size_t chunk) {
  Run& r = *static_cast<Run*>(data);
  const int64_t kp = r.p.w->K4 * 4;
  const int64_t m1 = std::min<int64_t>(r.p.M, (int64_t(chunk) + 1) * r.rows_per_chunk);
  for (int64_t m = int64_t(chunk) * r.rows_per_chunk; m < m1; ++m)
    r.x_scale[m] = mof_native::quantize_row(g_isa, r.x + m * r.K, r.K, r.u8.data() + m * kp);
}

void product_chunk(void* data, size_t tile) {
  mof_native::product_tile(g_isa, static_cast<Run*>(data)->p, int64_t(tile));
}

constexpr size_t kInputs = 5;          // x, W, w_scale, bias?, residual?
constexpr size_t kBias = 3, kResidual = 4;

OrtStatus* inputs(OrtKernelContext* ctx, Tensor t[kInputs], bool present[kInputs]) {
  size_t n = 0;
  MOF_TRY(g_api.KernelContext_GetInputCount(ctx, &n));
  for (size_t i = 0; i < n && i < kInputs; ++i) {
    const OrtValue* v = nullptr;
    MOF_TRY(g_api.KernelContext_GetInput(ctx, i, &v));
    if (v == nullptr) continue;
    MOF_TRY(read_tensor(v, &t[i]));
    present[i] = true;
  }
  if (t[0].type != MOF_ORT_FLOAT || t[0].dims.empty()) return error("RowwiseQMatMul: x must be float [..., K]");
  return nullptr;
}

// The inputs' shapes against W's; y's dims in ``dims``.
OrtStatus* check(const Tensor t[kInputs], const bool present[kInputs], const Packed& w, std::vector<int64_t>* dims) {
  const int64_t K = t[0].dims.back(), N = w.N;
  if (K != w.K) return error("RowwiseQMatMul: x's last axis must be W's first");
  if (t[2].type != MOF_ORT_FLOAT || t[2].count() != N) return error("RowwiseQMatMul: w_scale must be float [N]");
  if (present[kBias] && (t[kBias].type != MOF_ORT_FLOAT || t[kBias].count() != N))
    return error("RowwiseQMatMul: bias must be float [N]");
  *dims = t[0].dims;
  dims->back() = N;
  if (present[kResidual] && t[kResidual].type != MOF_ORT_FLOAT) return error("RowwiseQMatMul: residual must be float");
  return nullptr;
}

// numpy broadcasting of two shapes (right-aligned), or false when they do not broadcast
bool broadcast_dims(const std::vector<int64_t>& a, const std::vector<int64_t>& b, std::vector<int64_t>* out) {
  const size_t r = std::max(a.size(), b.size());
  out->assign(r, 1);
  for (size_t i = 0; i < r; ++i) {
    const int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    if (da != db && da != 1 && db != 1) return false;
    (*out)[i] = da == 1 ? db : da;
  }
  return true;
}

// out = a + b with numpy broadcasting to ``dims`` (each element one IEEE addition, as Add), a row
// of the last axis at a time
void broadcast_add(const float* a, const std::vector<int64_t>& da, const float* b, const std::vector<int64_t>& db,
                   const std::vector<int64_t>& dims, float* out) {
  const size_t r = dims.size();
  std::vector<int64_t> sa(r, 0), sb(r, 0), idx(r, 0);      // strides, 0 along a broadcast axis
  for (int64_t i = int64_t(r) - 1, ka = 1, kb = 1; i >= 0; --i) {
    const size_t ia = size_t(i) + da.size(), ib = size_t(i) + db.size();
    const int64_t na = ia >= r ? da[ia - r] : 1, nb = ib >= r ? db[ib - r] : 1;
    sa[size_t(i)] = na == 1 ? 0 : ka;
    sb[size_t(i)] = nb == 1 ? 0 : kb;
    ka *= na;
    kb *= nb;
  }
  const int64_t n = r ? dims[r - 1] : 1, ja = r ? sa[r - 1] : 0, jb = r ? sb[r - 1] : 0;
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < r; ++i) rows *= dims[i];
  for (int64_t row = 0, oa = 0, ob = 0; row < rows; ++row) {
    float* o = out + row * n;
    const float *pa = a + oa, *pb = b + ob;
    if (ja && jb) for (int64_t j = 0; j < n; ++j) o[j] = pa[j] + pb[j];
    else if (ja) for (int64_t j = 0; j < n; ++j) o[j] = pa[j] + pb[0];
    else if (jb) for (int64_t j = 0; j < n; ++j) o[j] = pa[0] + pb[j];
    else for (int64_t j = 0; j < n; ++j) o[j] = pa[0] + pb[0];
    for (size_t i = r - 1; i-- > 0;) {                      // the next row
      oa += sa[i];
      ob += sb[i];
      if (++idx[i] < dims[i]) break;
      oa -= sa[i] * dims[i];
      ob -= sb[i] * dims[i];
      idx[i] = 0;
    }
  }
}

// y [M, N] = the product of x and W (+ bias) (+ the residual, when ``with_residual``) into ``out``
OrtStatus* run_product(OrtKernelContext* ctx, const Tensor t[kInputs], const bool present[kInputs], const Packed& w,
                       int64_t M, float* out, bool with_residual) {
  const int64_t K = t[0].dims.back();
  Run r;
  r.x = static_cast<const float*>(t[0].data);
  r.K = K;
  r.u8.resize(size_t(M * w.K4 * 4));
  r.x_scale.resize(size_t(M));
  auto opt = [&](size_t i) { return present[i] ? static_cast<const float*>(t[i].data) : nullptr; };
  r.p = {&w, r.u8.data(), r.x_scale.data(), static_cast<const float*>(t[2].data), opt(kBias),
         with_residual ? opt(kResidual) : nullptr, out, M};
  const int64_t chunks = M * K >= 32768 ? std::min<int64_t>(M, 8) : 1;
  r.rows_per_chunk = (M + chunks - 1) / chunks;
  MOF_TRY(parallel(ctx, quantize_chunk, size_t((M + r.rows_per_chunk - 1) / r.rows_per_chunk), &r));
  const int64_t tiles = (w.NB + mof_native::kTileBlocks - 1) / mof_native::kTileBlocks;
  return parallel(ctx, product_chunk, size_t(tiles), &r);
}

OrtStatus* compute(Kernel* k, OrtKernelContext* ctx) {
  Tensor t[kInputs];
  bool present[kInputs] = {};
  MOF_TRY(inputs(ctx, t, present));
  Packed local;
  if (!k->constant) MOF_TRY(pack(t[1], &local));
  const Packed& w = k->constant ? k->w : local;
  std::vector<int64_t> dims, out_dims;
  MOF_TRY(check(t, present, w, &dims));
  // a residual of y's shape is added in the product's epilogue; another one (broadcast) after it
  const bool apart = present[kResidual] && t[kResidual].dims != dims;
  if (apart && !broadcast_dims(dims, t[kResidual].dims, &out_dims))
    return error("RowwiseQMatMul: residual does not broadcast with y");
  if (!apart) out_dims = dims;
  const int64_t K = t[0].dims.back(), N = w.N;
  OrtValue* y = nullptr;
  MOF_TRY(g_api.KernelContext_GetOutput(ctx, 0, out_dims.data(), out_dims.size(), &y));
  const int64_t M = K > 0 ? t[0].count() / K : 0;
  void* out = nullptr;
  MOF_TRY(g_api.GetTensorMutableData(y, &out));
  if (M == 0 || N == 0) return nullptr;                     // then out_dims hold a 0 too
  std::vector<float> product(apart ? size_t(M * N) : 0);
  MOF_TRY(run_product(ctx, t, present, w, M, apart ? product.data() : static_cast<float*>(out), !apart));
  if (apart)
    broadcast_add(product.data(), dims, static_cast<const float*>(t[kResidual].data), t[kResidual].dims, out_dims,
                  static_cast<float*>(out));
  return nullptr;
}

// ---------------------------------------------------------------- the op's description

struct RowwiseOp {
  static constexpr const char* kName = "RowwiseQMatMul";
  static constexpr size_t kOutputs = 1;
  static constexpr size_t kInputs = ::kInputs;
  static int input_type(size_t i) { return i == 1 ? MOF_ORT_INT8 : MOF_ORT_FLOAT; }
  static int input_characteristic(size_t i) { return i >= kBias ? MOF_ORT_OPTIONAL : MOF_ORT_REQUIRED; }
  static int output_characteristic(size_t) { return MOF_ORT_REQUIRED; }
  static OrtStatus* create(const OrtKernelInfo* info, void** out) {
    return create_packed<Kernel>(info, 1, pack, kName, "W", out);
  }
  static OrtStatus* compute(void* kernel, OrtKernelContext* ctx) {
    return ::compute(static_cast<Kernel*>(kernel), ctx);
  }
  static void destroy(void* kernel) { delete static_cast<Kernel*>(kernel); }
};

OrtCustomOp g_op = describe<RowwiseOp>();
OrtCustomOp g_gru_op = mof_ops::make_gru_op();

}  // namespace

extern "C" {

// What the product runs on this CPU: "avx512vnni", "avx2" or "scalar" (mof.runtime.native reads it).
__attribute__((visibility("default"))) const char* MofNativeIsa() {
  return mof_native::isa_name(mof_native::best_isa());
}

// Whether the CPU has FMA: onnxruntime's sigmoid and tanh are then its FMA3 kernels, which QGru's
// equal (mof.runtime.native uses graphs with QGru only then).
__attribute__((visibility("default"))) int MofNativeCpuHasFma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("fma") ? 1 : 0;
}

__attribute__((visibility("default"))) OrtStatus* RegisterCustomOps(OrtSessionOptions* options,
                                                                     const OrtApiBase* base) {
  const OrtApi* api = base->GetApi(mof_ort::kApiVersion);
  if (api == nullptr) {                 // an onnxruntime older than 1.17: say so with its oldest API
    mof_ort::Api old;
    mof_ort::bind(old, base->GetApi(1));
    return old.CreateStatus(MOF_ORT_FAIL, "mof native ops need onnxruntime >= 1.17");
  }
  mof_ort::bind(g_api, api);
  g_isa = mof_native::best_isa();
  OrtCustomOpDomain* domain = nullptr;  // lives as long as the process: sessions keep using it
  MOF_TRY(g_api.CreateCustomOpDomain("mof.native", &domain));
  MOF_TRY(g_api.CustomOpDomain_Add(domain, &g_op));
  MOF_TRY(g_api.CustomOpDomain_Add(domain, &g_gru_op));
  return g_api.AddCustomOpDomain(options, domain);
}

}  // extern "C"
