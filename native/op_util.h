// What mof's custom ops share (mof_ops.cc defines it): the bound onnxruntime API, the kernels this
// CPU runs, reading an input tensor, errors, onnxruntime's thread pool, packing a constant weight
// when the kernel is created, and the OrtCustomOp describing an op.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <exception>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "ort_abi.h"
#include "qgemm.h"

namespace mof_ops {

constexpr int kWeightMax = 64;         // weights in [-64, 64]: what quant/rowwise.py writes (7 bits)

extern mof_ort::Api g_api;
extern mof_native::Isa g_isa;

struct Tensor {
  int type = 0;
  std::vector<int64_t> dims;
  void* data = nullptr;
  int64_t count() const {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    return n;
  }
};

#define MOF_TRY(expr)                       \
  do {                                      \
    OrtStatus* status_ = (expr);            \
    if (status_ != nullptr) return status_; \
  } while (0)

OrtStatus* error(const char* msg);
OrtStatus* read_tensor(const OrtValue* value, Tensor* out);
// fn(data, i) for i < total, on onnxruntime's intra-op threads when total > 1
OrtStatus* parallel(OrtKernelContext* ctx, void (*fn)(void*, size_t), size_t total, void* data);

// Input ``index`` when the session knows it as a constant (an initializer), else nullptr.
const OrtValue* constant_input(const OrtKernelInfo* info, size_t index);

// A new Kernel (members ``constant`` and ``w``) whose weight input ``index`` is packed into ``w``
// by ``pack`` now when it is a constant; else left for every run to pack (``constant`` false).
template <class Kernel, class W>
OrtStatus* create_packed(const OrtKernelInfo* info, size_t index, OrtStatus* (*pack)(const Tensor&, W*),
                         const char* op, const char* weight, void** out) {
  std::unique_ptr<Kernel> k(new (std::nothrow) Kernel);
  if (!k) return g_api.CreateStatus(MOF_ORT_FAIL, (std::string(op) + ": out of memory").c_str());
  if (const OrtValue* value = constant_input(info, index)) {
    Tensor t;
    try {
      MOF_TRY(read_tensor(value, &t));
      MOF_TRY(pack(t, &k->w));
    } catch (const std::exception&) {
      return g_api.CreateStatus(MOF_ORT_FAIL, (std::string(op) + ": out of memory packing " + weight).c_str());
    }
    k->constant = true;
  }
  *out = k.release();
  return nullptr;
}

// The OrtCustomOp of ``Op``, a struct with: kName; kInputs, kOutputs; input_type(i),
// input_characteristic(i), output_characteristic(i); create(info, &kernel) -> OrtStatus*;
// compute(kernel, ctx) -> OrtStatus* (it may throw std::bad_alloc: an "out of memory" status);
// destroy(kernel). Errors come back as an OrtStatus, never as an exception across the library.
template <class Op>
struct Described {
  static OrtStatus* create(const OrtCustomOp*, const OrtApi*, const OrtKernelInfo* info, void** k) {
    return Op::create(info, k);
  }
  static OrtStatus* compute(void* kernel, OrtKernelContext* ctx) {
    try {
      return Op::compute(kernel, ctx);
    } catch (const std::exception&) {
      return g_api.CreateStatus(MOF_ORT_FAIL, (std::string(Op::kName) + ": out of memory").c_str());
    }
  }
  static void* create_v1(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info) {
    void* k = nullptr;
    return create(op, api, info, &k) == nullptr ? k : nullptr;
  }
  static void compute_v1(void* kernel, OrtKernelContext* ctx) { (void)compute(kernel, ctx); }
  static const char* name(const OrtCustomOp*) { return Op::kName; }
  static const char* provider(const OrtCustomOp*) { return "CPUExecutionProvider"; }
  static int input_type(const OrtCustomOp*, size_t i) { return Op::input_type(i); }
  static size_t input_count(const OrtCustomOp*) { return Op::kInputs; }
  static int output_type(const OrtCustomOp*, size_t) { return MOF_ORT_FLOAT; }
  static size_t output_count(const OrtCustomOp*) { return Op::kOutputs; }
  static int input_characteristic(const OrtCustomOp*, size_t i) { return Op::input_characteristic(i); }
  static int output_characteristic(const OrtCustomOp*, size_t i) { return Op::output_characteristic(i); }
  static int memory_type(const OrtCustomOp*, size_t) { return 0; }
  static int one(const OrtCustomOp*) { return 1; }
};

template <class Op>
OrtCustomOp describe() {
  using D = Described<Op>;
  OrtCustomOp op{};
  op.version = mof_ort::kCustomOpVersion;
  op.CreateKernel = D::create_v1;
  op.GetName = D::name;
  op.GetExecutionProviderType = D::provider;
  op.GetInputType = D::input_type;
  op.GetInputTypeCount = D::input_count;
  op.GetOutputType = D::output_type;
  op.GetOutputTypeCount = D::output_count;
  op.KernelCompute = D::compute_v1;
  op.KernelDestroy = Op::destroy;
  op.GetInputCharacteristic = D::input_characteristic;
  op.GetOutputCharacteristic = D::output_characteristic;
  op.GetInputMemoryType = D::memory_type;
  op.GetVariadicInputMinArity = D::one;
  op.GetVariadicInputHomogeneity = D::one;
  op.GetVariadicOutputMinArity = D::one;
  op.GetVariadicOutputHomogeneity = D::one;
  op.CreateKernelV2 = D::create;
  op.KernelComputeV2 = D::compute;
  return op;
}

OrtCustomOp make_gru_op();             // gru_op.cc: mof.native::QGru

}  // namespace mof_ops
