// mof's rowwise int8 product: packing, per-row quantization and the u8 x s8 product, scalar, AVX2
// and AVX-512 VNNI (chosen at run time: the library is built for plain x86-64 and carries all three).
#include "qgemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace mof_native {

namespace {

const float kInv127 = static_cast<float>(1.0 / 127.0);   // np.float32(1 / 127), rowwise.py's inv127
constexpr int kZp = 128;

inline int64_t padded_k(const Packed& w) { return w.K4 * 4; }

}  // namespace

void pack_weights(const int8_t* w, int64_t K, int64_t N, Packed* out) {
  Packed& p = *out;
  p.K = K;
  p.N = N;
  p.K4 = (K + 3) / 4;
  p.NB = (N + kBlock - 1) / kBlock;
  p.b.assign(static_cast<size_t>(p.NB * p.K4 * kBlock * 4), 0);
  p.zp_sum.assign(static_cast<size_t>(p.NB * kBlock), 0);
  int peak = 0;
  for (int64_t k = 0; k < K; ++k) {
    const int8_t* row = w + k * N;
    const int64_t k4 = k / 4, j = k % 4;
    for (int64_t n = 0; n < N; ++n) {
      const int v = row[n];
      peak = std::max(peak, v < 0 ? -v : v);
      p.b[static_cast<size_t>((((n / kBlock) * p.K4 + k4) * kBlock + n % kBlock) * 4 + j)] = row[n];
      p.zp_sum[static_cast<size_t>(n)] += kZp * v;
    }
  }
  p.peak = peak;
}

// ---------------------------------------------------------------- scalar (any x86-64, the reference)

namespace {

inline uint8_t quantize_one(float x, float scale) {
  float v = x / scale;
  if (!(v >= -128.f)) v = -128.f;      // NaN (0 / 0) -> -128, as onnxruntime's max(v, -128)
  if (v > 127.f) v = 127.f;
  return static_cast<uint8_t>(static_cast<int>(std::nearbyint(v)) + kZp);   // round half to even
}

float quantize_row_scalar(const float* x, int64_t K, uint8_t* u8, int64_t kp) {
  float amax = 0.f;
  bool nan = false;
  for (int64_t k = 0; k < K; ++k) {
    amax = std::max(amax, std::fabs(x[k]));
    nan = nan || std::isnan(x[k]);
  }
  const float scale = (nan ? NAN : amax) * kInv127;
  for (int64_t k = 0; k < K; ++k) u8[k] = quantize_one(x[k], scale);
  std::memset(u8 + K, 0, static_cast<size_t>(kp - K));
  return scale;
}

inline float epilogue(int32_t acc, const Product& p, int64_t m, int64_t n) {
  float f = static_cast<float>(acc) * p.w_scale[n];
  f = f * p.x_scale[m];
  if (p.bias) f = f + p.bias[n];
  if (p.residual) f = f + p.residual[m * p.w->N + n];
  return f;
}

void product_tile_scalar(const Product& p, int64_t tile) {
  const Packed& w = *p.w;
  const int64_t kp = padded_k(w);
  const int64_t nb1 = std::min(w.NB, (tile + 1) * kTileBlocks);
  for (int64_t m = 0; m < p.M; ++m) {
    const uint8_t* a = p.u8 + m * kp;
    for (int64_t nb = tile * kTileBlocks; nb < nb1; ++nb) {
      int32_t acc[kBlock] = {0};
      const int8_t* b = w.b.data() + nb * w.K4 * kBlock * 4;
      for (int64_t k4 = 0; k4 < w.K4; ++k4, b += kBlock * 4)
        for (int c = 0; c < kBlock; ++c)
          for (int j = 0; j < 4; ++j) acc[c] += int32_t(a[k4 * 4 + j]) * int32_t(b[c * 4 + j]);
      for (int c = 0; c < kBlock && nb * kBlock + c < w.N; ++c) {
        const int64_t n = nb * kBlock + c;
        p.y[m * w.N + n] = epilogue(acc[c] - w.zp_sum[n], p, m, n);
      }
    }
  }
}

// ---------------------------------------------------------------- AVX2 (vpmaddubsw: exact for |W| <= 64)

#define MOF_AVX2 __attribute__((target("avx2")))

MOF_AVX2 float quantize_row_avx2(const float* x, int64_t K, uint8_t* u8, int64_t kp) {
  const __m256 sign = _mm256_set1_ps(-0.f);
  __m256 mx = _mm256_setzero_ps(), nans = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    const __m256 v = _mm256_loadu_ps(x + k);
    mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, v));
    nans = _mm256_or_ps(nans, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  float lanes[8];
  _mm256_storeu_ps(lanes, mx);
  float amax = 0.f;
  for (float v : lanes) amax = std::max(amax, v);
  bool nan = _mm256_movemask_ps(nans) != 0;
  for (; k < K; ++k) {
    amax = std::max(amax, std::fabs(x[k]));
    nan = nan || std::isnan(x[k]);
  }
  const float scale = (nan ? NAN : amax) * kInv127;
  const __m256 s = _mm256_set1_ps(scale), lo = _mm256_set1_ps(-128.f), hi = _mm256_set1_ps(127.f);
  const __m256i zp = _mm256_set1_epi32(kZp);
  for (k = 0; k + 8 <= K; k += 8) {
    __m256 v = _mm256_div_ps(_mm256_loadu_ps(x + k), s);
    v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);            // max(NaN, lo) = lo, as onnxruntime
    const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(v), zp);
    const __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(u8 + k), _mm_packus_epi16(w16, w16));
  }
  for (; k < K; ++k) u8[k] = quantize_one(x[k], scale);
  std::memset(u8 + K, 0, static_cast<size_t>(kp - K));
  return scale;
}

#define MOF_ROW2(r)                                                                              \
  if constexpr (MR > r) {                                                                        \
    int32_t a4;                                                                                  \
    std::memcpy(&a4, a + r * kp + k4 * 4, 4);                                                    \
    const __m256i av = _mm256_set1_epi32(a4);                                                    \
    c##r##0 = _mm256_add_epi32(c##r##0, _mm256_madd_epi16(_mm256_maddubs_epi16(av, b0), ones));   \
    c##r##1 = _mm256_add_epi32(c##r##1, _mm256_madd_epi16(_mm256_maddubs_epi16(av, b1), ones));   \
  }

template <int MR>
MOF_AVX2 void block_avx2(const Product& p, int64_t m0, int64_t nb) {
  const Packed& w = *p.w;
  const int64_t kp = padded_k(w);
  const __m256i ones = _mm256_set1_epi16(1), z = _mm256_setzero_si256();
  __m256i c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z;
  const int8_t* b = w.b.data() + nb * w.K4 * kBlock * 4;
  const uint8_t* a = p.u8 + m0 * kp;
  for (int64_t k4 = 0; k4 < w.K4; ++k4, b += kBlock * 4) {
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 32));
    MOF_ROW2(0) MOF_ROW2(1) MOF_ROW2(2) MOF_ROW2(3)
  }
  const __m256i acc[4][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}};
  const int64_t n0 = nb * kBlock;
  for (int r = 0; r < MR; ++r) {
    const int64_t m = m0 + r;
    for (int h = 0; h < 2; ++h) {
      const int64_t n = n0 + h * 8;
      const __m256i s = _mm256_sub_epi32(acc[r][h], _mm256_loadu_si256(
                                                        reinterpret_cast<const __m256i*>(w.zp_sum.data() + n)));
      if (n + 8 <= w.N) {
        __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_loadu_ps(p.w_scale + n));
        f = _mm256_mul_ps(f, _mm256_set1_ps(p.x_scale[m]));
        if (p.bias) f = _mm256_add_ps(f, _mm256_loadu_ps(p.bias + n));
        if (p.residual) f = _mm256_add_ps(f, _mm256_loadu_ps(p.residual + m * w.N + n));
        _mm256_storeu_ps(p.y + m * w.N + n, f);
      } else {
        int32_t t[8];
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(t), s);
        for (int c = 0; c < 8 && n + c < w.N; ++c) p.y[m * w.N + n + c] = epilogue(t[c], p, m, n + c);
      }
    }
  }
}
#undef MOF_ROW2

void product_tile_avx2(const Product& p, int64_t tile) {
  const int64_t nb1 = std::min(p.w->NB, (tile + 1) * kTileBlocks);
  for (int64_t m = 0; m < p.M; m += 4) {
    const int64_t mr = std::min<int64_t>(4, p.M - m);
    for (int64_t nb = tile * kTileBlocks; nb < nb1; ++nb) {
      switch (mr) {
        case 4: block_avx2<4>(p, m, nb); break;
        case 3: block_avx2<3>(p, m, nb); break;
        case 2: block_avx2<2>(p, m, nb); break;
        default: block_avx2<1>(p, m, nb); break;
      }
    }
  }
}

// ---------------------------------------------------------------- AVX-512 VNNI (vpdpbusd: exact)

#define MOF_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

MOF_VNNI float quantize_row_vnni(const float* x, int64_t K, uint8_t* u8, int64_t kp) {
  __m512 mx = _mm512_setzero_ps();
  __mmask16 nans = 0;
  int64_t k = 0;
  for (; k < K; k += 16) {
    const __mmask16 m = K - k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (K - k)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + k);
    mx = _mm512_max_ps(mx, _mm512_abs_ps(v));
    nans = __mmask16(nans | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q));
  }
  const float scale = (nans ? NAN : _mm512_reduce_max_ps(mx)) * kInv127;
  const __m512 s = _mm512_set1_ps(scale), lo = _mm512_set1_ps(-128.f), hi = _mm512_set1_ps(127.f);
  const __m512i zp = _mm512_set1_epi32(kZp);
  for (k = 0; k < K; k += 16) {
    const __mmask16 m = K - k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (K - k)) - 1);
    __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(m, x + k), s);
    v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);            // max(NaN, lo) = lo, as onnxruntime
    _mm512_mask_cvtepi32_storeu_epi8(u8 + k, m, _mm512_add_epi32(_mm512_cvtps_epi32(v), zp));
  }
  std::memset(u8 + K, 0, static_cast<size_t>(kp - K));
  return scale;
}

// Accumulators as named variables (GCC keeps an array of them in memory around vpdpbusd): rows
// r < MR, blocks j < NR of a [MR x 64]-column tile; the unused ones are never touched.
#define MOF_ROW(r)                                                                               \
  if constexpr (MR > r) {                                                                        \
    int32_t a4;                                                                                  \
    std::memcpy(&a4, a + r * kp + k4 * 4, 4);                                                    \
    const __m512i av = _mm512_set1_epi32(a4);                                                    \
    c##r##0 = _mm512_dpbusd_epi32(c##r##0, av, b0);                                              \
    if constexpr (NR > 1) c##r##1 = _mm512_dpbusd_epi32(c##r##1, av, b1);                        \
    if constexpr (NR > 2) c##r##2 = _mm512_dpbusd_epi32(c##r##2, av, b2);                        \
    if constexpr (NR > 3) c##r##3 = _mm512_dpbusd_epi32(c##r##3, av, b3);                        \
  }

template <int MR, int NR>
MOF_VNNI void tile_vnni(const Product& p, int64_t m0, int64_t nb0) {
  const Packed& w = *p.w;
  const int64_t kp = padded_k(w);
  const int64_t stride = w.K4 * kBlock * 4;                 // bytes per packed block
  const __m512i z = _mm512_setzero_si512();
  __m512i c00 = z, c01 = z, c02 = z, c03 = z, c10 = z, c11 = z, c12 = z, c13 = z;
  __m512i c20 = z, c21 = z, c22 = z, c23 = z, c30 = z, c31 = z, c32 = z, c33 = z;
  const int8_t* b = w.b.data() + nb0 * stride;
  const uint8_t* a = p.u8 + m0 * kp;
  for (int64_t k4 = 0; k4 < w.K4; ++k4, b += kBlock * 4) {
    const __m512i b0 = _mm512_loadu_si512(b);
    const __m512i b1 = NR > 1 ? _mm512_loadu_si512(b + stride) : z;
    const __m512i b2 = NR > 2 ? _mm512_loadu_si512(b + 2 * stride) : z;
    const __m512i b3 = NR > 3 ? _mm512_loadu_si512(b + 3 * stride) : z;
    MOF_ROW(0) MOF_ROW(1) MOF_ROW(2) MOF_ROW(3)
  }
  const __m512i acc[4][4] = {{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23},
                             {c30, c31, c32, c33}};
  for (int j = 0; j < NR; ++j) {
    const int64_t n = (nb0 + j) * kBlock;
    const __mmask16 mask = w.N - n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (w.N - n)) - 1);
    const __m512i zs = _mm512_loadu_si512(w.zp_sum.data() + n);
    const __m512 ws = _mm512_maskz_loadu_ps(mask, p.w_scale + n);
    const __m512 bias = p.bias ? _mm512_maskz_loadu_ps(mask, p.bias + n) : _mm512_setzero_ps();
    for (int r = 0; r < MR; ++r) {
      __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][j], zs)), ws);
      f = _mm512_mul_ps(f, _mm512_set1_ps(p.x_scale[m0 + r]));
      if (p.bias) f = _mm512_add_ps(f, bias);
      if (p.residual) f = _mm512_add_ps(f, _mm512_maskz_loadu_ps(mask, p.residual + (m0 + r) * w.N + n));
      _mm512_mask_storeu_ps(p.y + (m0 + r) * w.N + n, mask, f);
    }
  }
}
#undef MOF_ROW

template <int NR>
void rows_vnni(const Product& p, int64_t nb0) {
  int64_t m = 0;
  for (; m + 4 <= p.M; m += 4) tile_vnni<4, NR>(p, m, nb0);
  switch (p.M - m) {
    case 3: tile_vnni<3, NR>(p, m, nb0); break;
    case 2: tile_vnni<2, NR>(p, m, nb0); break;
    case 1: tile_vnni<1, NR>(p, m, nb0); break;
    default: break;
  }
}

void product_tile_vnni(const Product& p, int64_t tile) {
  const int64_t nb0 = tile * kTileBlocks;
  switch (std::min<int64_t>(kTileBlocks, p.w->NB - nb0)) {
    case 4: rows_vnni<4>(p, nb0); break;
    case 3: rows_vnni<3>(p, nb0); break;
    case 2: rows_vnni<2>(p, nb0); break;
    default: rows_vnni<1>(p, nb0); break;
  }
}

}  // namespace

// ---------------------------------------------------------------- dispatch

float quantize_row(Isa isa, const float* x, int64_t K, uint8_t* u8) {
  const int64_t kp = (K + 3) / 4 * 4;
  switch (isa) {
    case Isa::kAvx512Vnni: return quantize_row_vnni(x, K, u8, kp);
    case Isa::kAvx2: return quantize_row_avx2(x, K, u8, kp);
    default: return quantize_row_scalar(x, K, u8, kp);
  }
}

void product_tile(Isa isa, const Product& p, int64_t tile) {
  switch (isa) {
    case Isa::kAvx512Vnni: product_tile_vnni(p, tile); break;
    case Isa::kAvx2: product_tile_avx2(p, tile); break;
    default: product_tile_scalar(p, tile); break;
  }
}

Isa best_isa() {
  __builtin_cpu_init();
  Isa isa = Isa::kScalar;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) isa = Isa::kAvx2;   // QGru's gates use FMA
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
    isa = Isa::kAvx512Vnni;
  const char* want = std::getenv("MOF_NATIVE_ISA");          // lowers only, for tests
  if (want && std::strcmp(want, "scalar") == 0) isa = Isa::kScalar;
  if (want && std::strcmp(want, "avx2") == 0 && isa != Isa::kScalar) isa = Isa::kAvx2;
  return isa;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512Vnni: return "avx512vnni";
    case Isa::kAvx2: return "avx2";
    default: return "scalar";
  }
}

}  // namespace mof_native
