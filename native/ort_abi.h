// The few onnxruntime C ABI entries mof's native ops use, declared by mof itself (no onnxruntime
// header in the repository). onnxruntime's OrtApi is a struct of function pointers whose order
// is fixed and append-only, so an entry's index never changes from the version that added it on;
// the indices below were read from onnxruntime's include/onnxruntime/core/session/
// onnxruntime_c_api.h (ORT_API_VERSION 29, which holds every earlier one) and are valid for every
// onnxruntime mof supports (1.20.1 .. 1.32.0; the newest entry used, KernelContext_ParallelFor,
// is from API version 17). OrtCustomOp is the struct a library fills in: its first field says
// which of the later fields onnxruntime may read (16: CreateKernelV2 / KernelComputeV2, which
// return an OrtStatus instead of throwing across the library boundary).
#pragma once

#include <stddef.h>
#include <stdint.h>

extern "C" {

struct OrtStatus;
struct OrtSessionOptions;
struct OrtCustomOpDomain;
struct OrtKernelInfo;
struct OrtKernelContext;
struct OrtValue;
struct OrtTensorTypeAndShapeInfo;
struct OrtApi;                         // opaque here: read through mof_ort::Api below

struct OrtApiBase {
  const OrtApi* (*GetApi)(uint32_t version);
  const char* (*GetVersionString)();
};

// ONNXTensorElementDataType values (TensorProto.DataType)
enum { MOF_ORT_FLOAT = 1, MOF_ORT_UINT8 = 2, MOF_ORT_INT8 = 3 };
// OrtErrorCode values
enum { MOF_ORT_FAIL = 1, MOF_ORT_INVALID_ARGUMENT = 2 };
// OrtCustomOpInputOutputCharacteristic values
enum { MOF_ORT_REQUIRED = 0, MOF_ORT_OPTIONAL = 1 };

struct OrtCustomOp {
  uint32_t version;
  void* (*CreateKernel)(const OrtCustomOp*, const OrtApi*, const OrtKernelInfo*);
  const char* (*GetName)(const OrtCustomOp*);
  const char* (*GetExecutionProviderType)(const OrtCustomOp*);
  int (*GetInputType)(const OrtCustomOp*, size_t index);
  size_t (*GetInputTypeCount)(const OrtCustomOp*);
  int (*GetOutputType)(const OrtCustomOp*, size_t index);
  size_t (*GetOutputTypeCount)(const OrtCustomOp*);
  void (*KernelCompute)(void* kernel, OrtKernelContext*);
  void (*KernelDestroy)(void* kernel);
  int (*GetInputCharacteristic)(const OrtCustomOp*, size_t index);
  int (*GetOutputCharacteristic)(const OrtCustomOp*, size_t index);
  int (*GetInputMemoryType)(const OrtCustomOp*, size_t index);     // OrtMemType; 0 = default
  int (*GetVariadicInputMinArity)(const OrtCustomOp*);
  int (*GetVariadicInputHomogeneity)(const OrtCustomOp*);
  int (*GetVariadicOutputMinArity)(const OrtCustomOp*);
  int (*GetVariadicOutputHomogeneity)(const OrtCustomOp*);
  OrtStatus* (*CreateKernelV2)(const OrtCustomOp*, const OrtApi*, const OrtKernelInfo*, void** kernel);
  OrtStatus* (*KernelComputeV2)(void* kernel, OrtKernelContext*);
  // read only when version >= 17 .. 20; left null (version is 16)
  void* InferOutputShapeFn;
  void* GetStartVersion;
  void* GetEndVersion;
  void* GetMayInplace;
  void* ReleaseMayInplace;
  void* GetAliasMap;
  void* ReleaseAliasMap;
};

}  // extern "C"

namespace mof_ort {

constexpr uint32_t kApiVersion = 17;       // the oldest OrtApi holding every entry below
constexpr uint32_t kCustomOpVersion = 16;  // OrtCustomOp fields up to KernelComputeV2

// index of each entry in OrtApi (0-based, in pointers)
enum Index : size_t {
  kCreateStatus = 0,
  kCreateCustomOpDomain = 26,
  kCustomOpDomain_Add = 27,
  kAddCustomOpDomain = 28,
  kGetTensorMutableData = 51,
  kGetTensorElementType = 60,
  kGetDimensionsCount = 61,
  kGetDimensions = 62,
  kGetTensorTypeAndShape = 65,
  kKernelContext_GetInputCount = 88,
  kKernelContext_GetOutputCount = 89,
  kKernelContext_GetInput = 90,
  kKernelContext_GetOutput = 91,
  kReleaseStatus = 93,
  kReleaseTensorTypeAndShapeInfo = 99,
  kKernelInfoGetConstantInput_tensor = 249,
  kKernelContext_ParallelFor = 274,
};

// The entries, typed.
struct Api {
  OrtStatus* (*CreateStatus)(int code, const char* msg);
  OrtStatus* (*CreateCustomOpDomain)(const char* domain, OrtCustomOpDomain** out);
  OrtStatus* (*CustomOpDomain_Add)(OrtCustomOpDomain*, const OrtCustomOp*);
  OrtStatus* (*AddCustomOpDomain)(OrtSessionOptions*, OrtCustomOpDomain*);
  OrtStatus* (*GetTensorMutableData)(OrtValue*, void** out);
  OrtStatus* (*GetTensorElementType)(const OrtTensorTypeAndShapeInfo*, int* out);
  OrtStatus* (*GetDimensionsCount)(const OrtTensorTypeAndShapeInfo*, size_t* out);
  OrtStatus* (*GetDimensions)(const OrtTensorTypeAndShapeInfo*, int64_t* dims, size_t count);
  OrtStatus* (*GetTensorTypeAndShape)(const OrtValue*, OrtTensorTypeAndShapeInfo** out);
  OrtStatus* (*KernelContext_GetInputCount)(const OrtKernelContext*, size_t* out);
  OrtStatus* (*KernelContext_GetOutputCount)(const OrtKernelContext*, size_t* out);
  OrtStatus* (*KernelContext_GetInput)(const OrtKernelContext*, size_t index, const OrtValue** out);
  OrtStatus* (*KernelContext_GetOutput)(OrtKernelContext*, size_t index, const int64_t* dims, size_t count,
                                        OrtValue** out);
  void (*ReleaseStatus)(OrtStatus*);
  void (*ReleaseTensorTypeAndShapeInfo)(OrtTensorTypeAndShapeInfo*);
  OrtStatus* (*KernelInfoGetConstantInput_tensor)(const OrtKernelInfo*, size_t index, int* is_constant,
                                                  const OrtValue** out);
  OrtStatus* (*KernelContext_ParallelFor)(const OrtKernelContext*, void (*fn)(void*, size_t), size_t total,
                                          size_t num_batch, void* usr_data);
};

template <class F>
inline void take(F& field, const OrtApi* api, Index i) {
  field = reinterpret_cast<F>(reinterpret_cast<void* const*>(api)[i]);
}

inline void bind(Api& a, const OrtApi* api) {
  take(a.CreateStatus, api, kCreateStatus);
  take(a.CreateCustomOpDomain, api, kCreateCustomOpDomain);
  take(a.CustomOpDomain_Add, api, kCustomOpDomain_Add);
  take(a.AddCustomOpDomain, api, kAddCustomOpDomain);
  take(a.GetTensorMutableData, api, kGetTensorMutableData);
  take(a.GetTensorElementType, api, kGetTensorElementType);
  take(a.GetDimensionsCount, api, kGetDimensionsCount);
  take(a.GetDimensions, api, kGetDimensions);
  take(a.GetTensorTypeAndShape, api, kGetTensorTypeAndShape);
  take(a.KernelContext_GetInputCount, api, kKernelContext_GetInputCount);
  take(a.KernelContext_GetOutputCount, api, kKernelContext_GetOutputCount);
  take(a.KernelContext_GetInput, api, kKernelContext_GetInput);
  take(a.KernelContext_GetOutput, api, kKernelContext_GetOutput);
  take(a.ReleaseStatus, api, kReleaseStatus);
  take(a.ReleaseTensorTypeAndShapeInfo, api, kReleaseTensorTypeAndShapeInfo);
  take(a.KernelInfoGetConstantInput_tensor, api, kKernelInfoGetConstantInput_tensor);
  take(a.KernelContext_ParallelFor, api, kKernelContext_ParallelFor);
}

}  // namespace mof_ort
