// mof's rowwise int8 product, the arithmetic of quant/rowwise.py's stock subgraph:
//   x_scale = max|x[m, :]| * float(1/127)
//   x_u8    = sat_u8(rne(max(min(x / x_scale, 127), -128)) + 128)   (QuantizeLinear, scale 1, zp 128;
//             an all-zero row gives 0/0 = NaN, which onnxruntime's kernels turn into 0)
//   y       = (float(sum_k (x_u8 - 128) * W_s8) * w_scale[n]) * x_scale[m]  (+ bias[n]) (+ residual[m, n])
// The int32 sum is exact (|W| <= 64), every float step is one IEEE operation in the stock order,
// compiled with -ffp-contract=off (no FMA).
// A row holding a NaN gets x_scale = NaN, so its whole output is NaN on every kernel path. (The stock
// graph's ReduceMax keeps or drops a NaN depending on where it sits in the row: the one case where
// the two differ; such a row is garbage either way.)
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <vector>

namespace mof_native {

constexpr int kBlock = 16;             // output columns per packed block
constexpr int kTileBlocks = 4;         // blocks per column tile (a thread's unit of work)

enum class Isa { kScalar = 0, kAvx2 = 1, kAvx512Vnni = 2 };

// W [K, N] int8 in blocks of 16 columns: b[((nb * K4 + k4) * 16 + c) * 4 + j] = W[4 k4 + j, 16 nb + c]
// (zero past K or N), so one 64-byte load is 16 columns x 4 consecutive k.
struct Packed {
  int64_t K = 0, N = 0, K4 = 0, NB = 0;
  std::vector<int8_t> b;
  std::vector<int32_t> zp_sum;         // [NB * 16] 128 * column sum: the zero point's share
  int peak = 0;                        // max |W|
};

void pack_weights(const int8_t* w, int64_t K, int64_t N, Packed* out);

// One row: x [K] -> u8 [K4 * 4] (zero-padded), returns x_scale.
float quantize_row(Isa isa, const float* x, int64_t K, uint8_t* u8);

// Rows [m0, m1) x column tile `tile` (kTileBlocks blocks) of y [M, N].
struct Product {
  const Packed* w;
  const uint8_t* u8;                   // [M, K4 * 4]
  const float* x_scale;                // [M]
  const float* w_scale;                // [N]
  const float* bias;                   // [N] or null
  const float* residual;               // [M, N] or null: added last (a residual connection's Add)
  float* y;                            // [M, N]
  int64_t M;
};

void product_tile(Isa isa, const Product& p, int64_t tile);

Isa best_isa();                        // what this CPU runs, lowered by MOF_NATIVE_ISA
const char* isa_name(Isa isa);

}  // namespace mof_native
