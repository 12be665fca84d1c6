// mof's int8 GRU recurrence: the arithmetic of quant/gru_rewrite.py's cell after quant/rowwise.py,
// step after step, bit for bit (the stock graph runs it as a first step at top level and a Loop):
//   h_u8 = sat_u8(rne(h * 127) + 128)                          (Mul(h, 127), QuantizeLinear(1, 128))
//   rec  = float(sum_k (h_u8 - 128) * R[k, :]) * r_scale          (MatMulIntegerToFloat, [3U])
//   z, r = sigmoid(x[:2U] + rec[:2U])                          (Add, Sigmoid, split in halves)
//   hh   = tanh(x[2U:] + r * (rec[2U:] + b_h))                 (Add, Mul, Add, Tanh)
//   h'   = hh + z * (h - hh)                                   (Sub, Mul, Add)
// x = x W + b, computed before (one row of xw per step). Sigmoid and tanh are onnxruntime's MLAS
// kernels for x86-64 with FMA (MlasLogisticKernelFma3, MlasTanhKernelFma3: rational polynomials
// evaluated with fused multiply-adds): the same polynomials, constants and operation order, one
// IEEE operation each, so every lane equals theirs (tests/native compare them on 4 M inputs).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <vector>

#include "qgemm.h"

namespace mof_native {

// R [U, 3U] int8 with its columns in unit blocks: packed block 3 ub + g holds gate g (z, r, h) of
// units [16 ub, 16 ub + 16) (zero past U), so one task computes all three gates of its units.
struct GruWeights {
  int64_t U = 0;                       // units
  int64_t UB = 0;                      // unit blocks of kBlock
  Packed packed;                       // K = U, N = 3 * UB * kBlock
};

void pack_gru(const int8_t* R, int64_t U, GruWeights* out);

// One call of the recurrence: T steps over B rows.
struct GruRun {
  const GruWeights* w = nullptr;
  const float* xw = nullptr;           // [T, B, 3U]
  std::vector<float> scale;            // [3 * UB * kBlock] r_scale in packed column order (0 past U)
  std::vector<float> b_h;              // [UB * kBlock] (0 past U)
  int64_t T = 0, B = 0;
  float* y = nullptr;                  // [T, B, U] or null
  std::vector<float> h[2];             // [B, U]: the state before / after the step
  std::vector<uint8_t> u8[2];          // [B, K4 * 4]: h quantized, before / after
  int cur = 0;                         // which of h / u8 is the state before the step
  int64_t t = 0;                       // the step being computed
};

void gru_start(GruRun* r, const float* h0, const float* r_scale, const float* b_h);
// Step r->t for unit blocks [ub0, ub1): writes h[1 - cur], u8[1 - cur] and y[t] for those units.
void gru_units(Isa isa, GruRun* r, int64_t ub0, int64_t ub1);

}  // namespace mof_native
