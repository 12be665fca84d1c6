// mof's int8 GRU recurrence (gru.h): packing by unit blocks, the u8 x s8 products of one step for
// a range of unit blocks (scalar, AVX2, AVX-512 VNNI) and the gates after them, with onnxruntime's
// sigmoid and tanh (MLAS's FMA3 kernels) lane for lane.
#include "gru.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace mof_native {

namespace {

constexpr int kZp = 128;
constexpr int kGates = 3;              // z, r, h
constexpr int kLanes = kGates * kBlock;  // accumulators of one unit block and row

// MlasLogisticConstants and MlasTanhConstants (onnxruntime/core/mlas/lib/logistic.cpp, tanh.cpp)
struct Logistic {
  static constexpr float lo = -18.0f, hi = 18.0f;
  static constexpr float a9 = 4.37031012579801e-11f, a7 = 1.15627324459942e-07f, a5 = 6.08574864600143e-05f,
                         a3 = 8.51377133304701e-03f, a1 = 2.48287947061529e-01f;
  static constexpr float b10 = 6.10247389755681e-13f, b8 = 5.76102136993427e-09f, b6 = 6.29106785017040e-06f,
                         b4 = 1.70198817374094e-03f, b2 = 1.16817656904453e-01f, b0 = 9.93151921023180e-01f;
};
struct Tanh {
  static constexpr float lo = -9.0f, hi = 9.0f;
  static constexpr float a13 = -2.76076847742355e-16f, a11 = 2.00018790482477e-13f, a9 = -8.60467152213735e-11f,
                         a7 = 5.12229709037114e-08f, a5 = 1.48572235717979e-05f, a3 = 6.37261928875436e-04f,
                         a1 = 4.89352455891786e-03f;
  static constexpr float b6 = 1.19825839466702e-06f, b4 = 1.18534705686654e-04f, b2 = 2.26843463243900e-03f,
                         b0 = 4.89352518554385e-03f;
};

inline uint8_t quantize_unit(float h) {  // Mul(h, 127) -> QuantizeLinear(scale 1, zero point 128)
  float v = h * 127.0f;
  if (!(v >= -128.f)) v = -128.f;
  if (v > 127.f) v = 127.f;
  return static_cast<uint8_t>(static_cast<int>(std::nearbyint(v)) + kZp);   // round half to even
}

// ---------------------------------------------------------------- gates: scalar (std::fma), AVX2+FMA

// vmaxps(a, b) / vminps(a, b): a > b ? a : b / a < b ? a : b (a NaN b passes through)
inline float vmax(float a, float b) { return a > b ? a : b; }
inline float vmin(float a, float b) { return a < b ? a : b; }

float sigmoid1(float x) {
  using L = Logistic;
  const float v = vmin(L::hi, vmax(L::lo, x)), x2 = v * v;
  float p = std::fma(x2, L::a9, L::a7);
  p = std::fma(x2, p, L::a5);
  p = std::fma(x2, p, L::a3);
  p = std::fma(x2, p, L::a1);
  float q = std::fma(x2, L::b10, L::b8);
  q = std::fma(x2, q, L::b6);
  q = std::fma(x2, q, L::b4);
  q = std::fma(x2, q, L::b2);
  q = std::fma(x2, q, L::b0);
  p = v * p;
  return vmax(0.f, p / q + 0.5f);
}

float tanh1(float x) {
  using T = Tanh;
  const float v = vmin(T::hi, vmax(T::lo, x)), x2 = v * v;
  float p = std::fma(x2, T::a13, T::a11);
  p = std::fma(x2, p, T::a9);
  p = std::fma(x2, p, T::a7);
  p = std::fma(x2, p, T::a5);
  p = std::fma(x2, p, T::a3);
  p = std::fma(x2, p, T::a1);
  float q = std::fma(x2, T::b6, T::b4);
  q = std::fma(x2, q, T::b2);
  q = std::fma(x2, q, T::b0);
  return (v * p) / q;
}

// One unit block of one row: f = the products (z, r, h thirds), x = xw's row (the same thirds),
// h = the state before; out = the state after. 16 lanes.
struct Lanes {
  float fz[kBlock], fr[kBlock], fh[kBlock];
  float xz[kBlock], xr[kBlock], xh[kBlock];
  float bh[kBlock], h[kBlock], out[kBlock];
};

void gates_scalar(Lanes* l) {
  for (int c = 0; c < kBlock; ++c) {
    const float z = sigmoid1(l->xz[c] + l->fz[c]), r = sigmoid1(l->xr[c] + l->fr[c]);
    const float hh = tanh1(l->xh[c] + r * (l->fh[c] + l->bh[c]));
    l->out[c] = hh + z * (l->h[c] - hh);
  }
}

#define MOF_FMA __attribute__((target("avx2,fma")))

MOF_FMA inline __m256 sigmoid8(__m256 x) {
  using L = Logistic;
  const __m256 v = _mm256_min_ps(_mm256_set1_ps(L::hi), _mm256_max_ps(_mm256_set1_ps(L::lo), x));
  const __m256 x2 = _mm256_mul_ps(v, v);
  __m256 p = _mm256_fmadd_ps(x2, _mm256_set1_ps(L::a9), _mm256_set1_ps(L::a7));
  p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(L::a5));
  p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(L::a3));
  p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(L::a1));
  __m256 q = _mm256_fmadd_ps(x2, _mm256_set1_ps(L::b10), _mm256_set1_ps(L::b8));
  q = _mm256_fmadd_ps(x2, q, _mm256_set1_ps(L::b6));
  q = _mm256_fmadd_ps(x2, q, _mm256_set1_ps(L::b4));
  q = _mm256_fmadd_ps(x2, q, _mm256_set1_ps(L::b2));
  q = _mm256_fmadd_ps(x2, q, _mm256_set1_ps(L::b0));
  p = _mm256_mul_ps(v, p);
  return _mm256_max_ps(_mm256_setzero_ps(), _mm256_add_ps(_mm256_div_ps(p, q), _mm256_set1_ps(0.5f)));
}

MOF_FMA inline __m256 tanh8(__m256 x) {
  using T = Tanh;
  const __m256 v = _mm256_min_ps(_mm256_set1_ps(T::hi), _mm256_max_ps(_mm256_set1_ps(T::lo), x));
  const __m256 x2 = _mm256_mul_ps(v, v);
  __m256 p = _mm256_fmadd_ps(x2, _mm256_set1_ps(T::a13), _mm256_set1_ps(T::a11));
  p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(T::a9));
  p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(T::a7));
  p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(T::a5));
  p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(T::a3));
  p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(T::a1));
  __m256 q = _mm256_fmadd_ps(x2, _mm256_set1_ps(T::b6), _mm256_set1_ps(T::b4));
  q = _mm256_fmadd_ps(x2, q, _mm256_set1_ps(T::b2));
  q = _mm256_fmadd_ps(x2, q, _mm256_set1_ps(T::b0));
  return _mm256_div_ps(_mm256_mul_ps(v, p), q);
}

MOF_FMA void gates_avx2(Lanes* l) {
  for (int c = 0; c < kBlock; c += 8) {
    const __m256 z = sigmoid8(_mm256_add_ps(_mm256_loadu_ps(l->xz + c), _mm256_loadu_ps(l->fz + c)));
    const __m256 r = sigmoid8(_mm256_add_ps(_mm256_loadu_ps(l->xr + c), _mm256_loadu_ps(l->fr + c)));
    const __m256 a = _mm256_add_ps(_mm256_loadu_ps(l->fh + c), _mm256_loadu_ps(l->bh + c));
    const __m256 hh = tanh8(_mm256_add_ps(_mm256_loadu_ps(l->xh + c), _mm256_mul_ps(r, a)));
    const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(l->h + c), hh);
    _mm256_storeu_ps(l->out + c, _mm256_add_ps(hh, _mm256_mul_ps(z, d)));
  }
}

// ---------------------------------------------------------------- the three products of a unit block

// acc[r * kLanes + g * kBlock + c] = sum_k a[r, k] * W[k, column c of block nb0 + g], rows r < MR
void acc_scalar(const Packed& w, const uint8_t* a, int64_t kp, int64_t nb0, int rows, int32_t* acc) {
  std::fill(acc, acc + rows * kLanes, 0);
  for (int r = 0; r < rows; ++r)
    for (int g = 0; g < kGates; ++g) {
      const int8_t* b = w.b.data() + (nb0 + g) * w.K4 * kBlock * 4;
      int32_t* out = acc + r * kLanes + g * kBlock;
      for (int64_t k4 = 0; k4 < w.K4; ++k4, b += kBlock * 4)
        for (int c = 0; c < kBlock; ++c)
          for (int j = 0; j < 4; ++j) out[c] += int32_t(a[r * kp + k4 * 4 + j]) * int32_t(b[c * 4 + j]);
    }
}

#define MOF_AVX2 __attribute__((target("avx2")))

MOF_AVX2 void acc_avx2(const Packed& w, const uint8_t* a, int64_t kp, int64_t nb0, int rows, int32_t* acc) {
  const int64_t stride = w.K4 * kBlock * 4;
  const __m256i ones = _mm256_set1_epi16(1);
  for (int r = 0; r < rows; ++r) {
    __m256i c[6];
    for (auto& v : c) v = _mm256_setzero_si256();
    const int8_t* b = w.b.data() + nb0 * stride;
    for (int64_t k4 = 0; k4 < w.K4; ++k4, b += kBlock * 4) {
      int32_t a4;
      std::memcpy(&a4, a + r * kp + k4 * 4, 4);
      const __m256i av = _mm256_set1_epi32(a4);
      for (int h = 0; h < 6; ++h) {
        const __m256i bv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + (h / 2) * stride + (h % 2) * 32));
        c[h] = _mm256_add_epi32(c[h], _mm256_madd_epi16(_mm256_maddubs_epi16(av, bv), ones));
      }
    }
    for (int h = 0; h < 6; ++h)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * kLanes + h * 8), c[h]);
  }
}

#define MOF_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

#define MOF_ROW3(r)                                                                     \
  if constexpr (MR > r) {                                                               \
    int32_t a4;                                                                         \
    std::memcpy(&a4, a + r * kp + k4 * 4, 4);                                           \
    const __m512i av = _mm512_set1_epi32(a4);                                           \
    c##r##0 = _mm512_dpbusd_epi32(c##r##0, av, b0);                                     \
    c##r##1 = _mm512_dpbusd_epi32(c##r##1, av, b1);                                     \
    c##r##2 = _mm512_dpbusd_epi32(c##r##2, av, b2);                                     \
  }

template <int MR>
MOF_VNNI void acc_vnni(const Packed& w, const uint8_t* a, int64_t kp, int64_t nb0, int32_t* acc) {
  const int64_t stride = w.K4 * kBlock * 4;
  const __m512i z = _mm512_setzero_si512();
  __m512i c00 = z, c01 = z, c02 = z, c10 = z, c11 = z, c12 = z, c20 = z, c21 = z, c22 = z, c30 = z, c31 = z,
          c32 = z;
  const int8_t* b = w.b.data() + nb0 * stride;
  for (int64_t k4 = 0; k4 < w.K4; ++k4, b += kBlock * 4) {
    const __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + stride),
                  b2 = _mm512_loadu_si512(b + 2 * stride);
    MOF_ROW3(0) MOF_ROW3(1) MOF_ROW3(2) MOF_ROW3(3)
  }
  const __m512i out[4][3] = {{c00, c01, c02}, {c10, c11, c12}, {c20, c21, c22}, {c30, c31, c32}};
  for (int r = 0; r < MR; ++r)
    for (int g = 0; g < kGates; ++g) _mm512_storeu_si512(acc + r * kLanes + g * kBlock, out[r][g]);
}
#undef MOF_ROW3

void acc_rows(Isa isa, const Packed& w, const uint8_t* a, int64_t kp, int64_t nb0, int rows, int32_t* acc) {
  if (isa == Isa::kAvx512Vnni) {
    switch (rows) {
      case 4: return acc_vnni<4>(w, a, kp, nb0, acc);
      case 3: return acc_vnni<3>(w, a, kp, nb0, acc);
      case 2: return acc_vnni<2>(w, a, kp, nb0, acc);
      default: return acc_vnni<1>(w, a, kp, nb0, acc);
    }
  }
  if (isa == Isa::kAvx2) return acc_avx2(w, a, kp, nb0, rows, acc);
  acc_scalar(w, a, kp, nb0, rows, acc);
}

// ---------------------------------------------------------------- one unit block, rows [b0, b0 + rows)

void unit_block(Isa isa, GruRun* r, int64_t ub, int64_t b0, int rows) {
  const GruWeights& w = *r->w;
  const int64_t U = w.U, kp = w.packed.K4 * 4, u0 = ub * kBlock, nb0 = ub * kGates;
  const int n = static_cast<int>(std::min<int64_t>(kBlock, U - u0));       // units of this block
  int32_t acc[4 * kLanes];
  acc_rows(isa, w.packed, r->u8[r->cur].data() + b0 * kp, kp, nb0, rows, acc);
  const int32_t* zs = w.packed.zp_sum.data() + nb0 * kBlock;
  const float* sc = r->scale.data() + nb0 * kBlock;
  for (int i = 0; i < rows; ++i) {
    const int64_t b = b0 + i;
    const float* x = r->xw + (r->t * r->B + b) * kGates * U;
    const float* h = r->h[r->cur].data() + b * U;
    Lanes l{};
    for (int c = 0; c < kBlock; ++c) {
      const int32_t* a = acc + i * kLanes + c;
      l.fz[c] = static_cast<float>(a[0] - zs[c]) * sc[c];
      l.fr[c] = static_cast<float>(a[kBlock] - zs[kBlock + c]) * sc[kBlock + c];
      l.fh[c] = static_cast<float>(a[2 * kBlock] - zs[2 * kBlock + c]) * sc[2 * kBlock + c];
      l.bh[c] = r->b_h[u0 + c];
    }
    for (int c = 0; c < n; ++c) {
      l.xz[c] = x[u0 + c], l.xr[c] = x[U + u0 + c], l.xh[c] = x[2 * U + u0 + c], l.h[c] = h[u0 + c];
    }
    if (isa == Isa::kScalar) gates_scalar(&l); else gates_avx2(&l);
    float* h_next = r->h[1 - r->cur].data() + b * U;
    uint8_t* q_next = r->u8[1 - r->cur].data() + b * kp;
    float* y = r->y ? r->y + (r->t * r->B + b) * U : nullptr;
    for (int c = 0; c < n; ++c) {
      h_next[u0 + c] = l.out[c];
      q_next[u0 + c] = quantize_unit(l.out[c]);
      if (y) y[u0 + c] = l.out[c];
    }
  }
}

}  // namespace

void pack_gru(const int8_t* R, int64_t U, GruWeights* out) {
  out->U = U;
  out->UB = (U + kBlock - 1) / kBlock;
  const int64_t N = kGates * out->UB * kBlock;
  std::vector<int8_t> permuted(static_cast<size_t>(U * N), 0);      // [U, N], gate g of unit u at
  for (int64_t k = 0; k < U; ++k)                                      // (u / 16 * 3 + g) * 16 + u % 16
    for (int g = 0; g < kGates; ++g)
      for (int64_t u = 0; u < U; ++u)
        permuted[k * N + (u / kBlock * kGates + g) * kBlock + u % kBlock] = R[k * kGates * U + g * U + u];
  pack_weights(permuted.data(), U, N, &out->packed);
}

void gru_start(GruRun* r, const float* h0, const float* r_scale, const float* b_h) {
  const GruWeights& w = *r->w;
  const int64_t U = w.U, kp = w.packed.K4 * 4;
  r->scale.assign(static_cast<size_t>(w.packed.N), 0.f);
  r->b_h.assign(static_cast<size_t>(w.UB * kBlock), 0.f);
  for (int g = 0; g < kGates; ++g)
    for (int64_t u = 0; u < U; ++u)
      r->scale[(u / kBlock * kGates + g) * kBlock + u % kBlock] = r_scale[g * U + u];
  std::copy(b_h, b_h + U, r->b_h.begin());
  for (int i = 0; i < 2; ++i) {
    r->h[i].assign(static_cast<size_t>(r->B * U), 0.f);
    r->u8[i].assign(static_cast<size_t>(r->B * kp), 0);
  }
  std::copy(h0, h0 + r->B * U, r->h[0].begin());
  for (int64_t b = 0; b < r->B; ++b)
    for (int64_t u = 0; u < U; ++u) r->u8[0][b * kp + u] = quantize_unit(h0[b * U + u]);
  r->cur = 0;
  r->t = 0;
}

void gru_units(Isa isa, GruRun* r, int64_t ub0, int64_t ub1) {
  for (int64_t ub = ub0; ub < ub1; ++ub)
    for (int64_t b = 0; b < r->B; b += 4)
      unit_block(isa, r, ub, b, static_cast<int>(std::min<int64_t>(4, r->B - b)));
}

}  // namespace mof_native
