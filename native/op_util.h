// What mof's custom ops share (mof_ops.cc defines it): the bound onnxruntime API, the kernels this
// CPU runs, reading an input tensor, errors, and onnxruntime's thread pool.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <vector>

#include "ort_abi.h"
#include "qgemm.h"

namespace mof_ops {

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

OrtCustomOp make_gru_op();             // gru_op.cc: mof.native::QGru

}  // namespace mof_ops
