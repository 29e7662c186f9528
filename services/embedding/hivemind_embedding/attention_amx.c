/* Attention for the embedding service's compiled copy on CPUs with AMX (Intel Sapphire Rapids
   and later): one pass of a BERT-style encoder, bfloat16 in and out, float32 scores, sums and
   accumulation (the numerics of torch's flash-attention kernel for bfloat16). Built and checked
   at run time by hivemind_embedding.amx_attention; see its docstring for why and the figures.

   Per (text, head): the valid rows of Q, K and V are copied into tiles' layouts (K and V in
   the pairs AMX multiplies), S = Q K^T in 16x16 tiles, a softmax over each row's valid keys
   (exp in AVX-512), P in bfloat16, O = P V in tiles, O / sum back in bfloat16. Rows past a
   text's length get zeros: right padding is never attended to, and mean pooling skips it. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

typedef struct {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} tilecfg_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Linux gives a process the AMX tile registers only once asked (0 when granted). */
int hm_amx_init(void) {
  return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 ? 0 : -1;
}

static inline __m512 exp512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500E-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
  p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

/* Attention of one pass, bf16 in and out, fp32 scores and sums (as torch's flash kernel).
   q, k, v, out: [B, L, H, D] or any layout given by strides (elements) for b, h, l; the
   last dimension contiguous. lengths[b]: the valid keys (and queries) of row b, padding on
   the right; rows past it get zeros. D: a multiple of 32, at most 128. */
int hm_attention(const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *out,
                 int64_t B, int64_t H, int64_t L, int64_t D,
                 const int64_t *qs, const int64_t *ks, const int64_t *vs, const int64_t *os,
                 const int64_t *lengths, float scale) {
  if (D % 32 != 0 || D > 128 || L <= 0) return -1;
  const int64_t L16 = (L + 15) / 16 * 16, L32 = (L + 31) / 32 * 32;
  const int64_t DC = D / 32;        /* 32-wide chunks of a head (QK's inner dimension) */
  const int64_t DT = D / 16;        /* 16-wide output tiles */
  /* scratch: Q rows [L16][D], K packed [L16/16][DC][16 rows][16 dwords],
     V packed [L32/32][DT][16 rows][16 dwords], S [16][L16] fp32, P [16][L32] bf16 */
  size_t qbytes = (size_t)L16 * D * 2, kbytes = (size_t)L16 * D * 2, vbytes = (size_t)L32 * D * 2;
  size_t sbytes = (size_t)16 * L16 * 4, pbytes = (size_t)16 * L32 * 2, obytes = 16 * 16 * 4;
  uint8_t *mem = (uint8_t *)aligned_alloc(64, (qbytes + kbytes + vbytes + sbytes + pbytes + obytes + 63) / 64 * 64);
  if (!mem) return -2;
  uint16_t *Qs = (uint16_t *)mem;
  uint32_t *Kp = (uint32_t *)(mem + qbytes);
  uint32_t *Vp = (uint32_t *)(mem + qbytes + kbytes);
  float *S = (float *)(mem + qbytes + kbytes + vbytes);
  uint16_t *P = (uint16_t *)(mem + qbytes + kbytes + vbytes + sbytes);
  float *O = (float *)(mem + qbytes + kbytes + vbytes + sbytes + pbytes);

  tilecfg_t cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette_id = 1;
  for (int t = 0; t < 8; t++) { cfg.rows[t] = 16; cfg.colsb[t] = 64; }
  _tile_loadconfig(&cfg);

  for (int64_t b = 0; b < B; b++) {
    int64_t n = lengths[b];
    if (n > L) n = L;
    if (n < 1) n = 1;
    const int64_t n16 = (n + 15) / 16 * 16, n32 = (n + 31) / 32 * 32;
    for (int64_t h = 0; h < H; h++) {
      const uint16_t *qb = q + b * qs[0] + h * qs[1];
      const uint16_t *kb = k + b * ks[0] + h * ks[1];
      const uint16_t *vb = v + b * vs[0] + h * vs[1];
      uint16_t *ob = out + b * os[0] + h * os[1];
      /* Q rows, zero-padded to n16 */
      for (int64_t i = 0; i < n16; i++) {
        if (i < n) memcpy(Qs + i * D, qb + i * qs[2], D * 2);
        else memset(Qs + i * D, 0, D * 2);
      }
      /* K packed: block kb16, chunk c: row r, col j = dword (16c + r) of key 16*kb16 + j */
      for (int64_t j0 = 0; j0 < n16; j0 += 16)
        for (int64_t c = 0; c < DC; c++) {
          uint32_t *dst = Kp + ((j0 / 16) * DC + c) * 256;
          for (int j = 0; j < 16; j++) {
            int64_t key = j0 + j;
            uint32_t row[16] = {0}; /* the key's 32 dims of chunk c as 16 pairs */
            if (key < n) memcpy(row, kb + key * ks[2] + 32 * c, 64);
            for (int r = 0; r < 16; r++) dst[r * 16 + j] = row[r];
          }
        }
      /* V packed: key chunk of 32, dim tile t: row r, col d = (V[2r][16t+d], V[2r+1][16t+d]) */
      for (int64_t j0 = 0; j0 < n32; j0 += 32)
        for (int64_t t = 0; t < DT; t++) {
          uint32_t *dst = Vp + ((j0 / 32) * DT + t) * 256;
          for (int r = 0; r < 16; r++) {
            int64_t k0 = j0 + 2 * r, k1 = k0 + 1;
            const uint16_t *v0 = vb + k0 * vs[2] + 16 * t, *v1 = vb + k1 * vs[2] + 16 * t;
            for (int d = 0; d < 16; d++) {
              uint32_t lo = k0 < n ? v0[d] : 0, hi = k1 < n ? v1[d] : 0;
              dst[r * 16 + d] = lo | (hi << 16);
            }
          }
        }
      for (int64_t i0 = 0; i0 < n16; i0 += 16) {
        /* S = Q K^T for 16 queries */
        for (int64_t j0 = 0; j0 < n16; j0 += 16) {
          _tile_zero(0);
          for (int64_t c = 0; c < DC; c++) {
            _tile_loadd(1, Qs + i0 * D + 32 * c, D * 2);
            _tile_loadd(2, Kp + ((j0 / 16) * DC + c) * 256, 64);
            _tile_dpbf16ps(0, 1, 2);
          }
          _tile_stored(0, S + j0, L16 * 4);
        }
        /* softmax rows: P = exp(scale*s - max) in bf16 (zeros past n), inv = 1/sum */
        float inv[16];
        const __m512 vscale = _mm512_set1_ps(scale);
        for (int r = 0; r < 16; r++) {
          float *srow = S + r * L16;
          uint16_t *prow = P + r * L32;
          __m512 mx = _mm512_set1_ps(-INFINITY);
          int64_t j = 0;
          for (; j + 16 <= n; j += 16) mx = _mm512_max_ps(mx, _mm512_mul_ps(_mm512_loadu_ps(srow + j), vscale));
          __mmask16 tail = (__mmask16)((1u << (n - j)) - 1);
          if (n - j) mx = _mm512_mask_max_ps(mx, tail, mx, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, srow + j), vscale));
          float m = _mm512_reduce_max_ps(mx);
          __m512 vm = _mm512_set1_ps(m), sum = _mm512_setzero_ps();
          for (j = 0; j < n32; j += 16) {
            __mmask16 valid = j + 16 <= n ? 0xFFFF : (j < n ? (__mmask16)((1u << (n - j)) - 1) : 0);
            __m512 e = _mm512_maskz_mov_ps(valid, exp512(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(valid, srow + j), vscale, vm)));
            sum = _mm512_add_ps(sum, e);
            _mm256_storeu_si256((__m256i *)(prow + j), (__m256i)_mm512_cvtneps_pbh(e));
          }
          inv[r] = 1.0f / _mm512_reduce_add_ps(sum);
        }
        /* O = P V, one 16-dim tile at a time */
        for (int64_t t = 0; t < DT; t++) {
          _tile_zero(0);
          for (int64_t j0 = 0; j0 < n32; j0 += 32) {
            _tile_loadd(1, P + j0, L32 * 2);
            _tile_loadd(2, Vp + ((j0 / 32) * DT + t) * 256, 64);
            _tile_dpbf16ps(0, 1, 2);
          }
          _tile_stored(0, O, 64);
          for (int r = 0; r < 16 && i0 + r < n; r++) {
            __m512 o = _mm512_mul_ps(_mm512_loadu_ps(O + r * 16), _mm512_set1_ps(inv[r]));
            _mm256_storeu_si256((__m256i *)(ob + (i0 + r) * os[2] + 16 * t), (__m256i)_mm512_cvtneps_pbh(o));
          }
        }
      }
      for (int64_t i = n; i < L; i++) memset(ob + i * os[2], 0, D * 2);
    }
  }
  _tile_release();
  free(mem);
  return 0;
}

#ifdef __cplusplus
}
#endif
