/* Fused local-window attention on the CPU, for a measurement only (scripts/fused_window_probe/probe.py):
 * what a non-portable kernel could reach where the portable ONNX body reaches ~22% of the matmul peak.
 * Per (batch x head, 64-row query block): one sgemm of the block's queries against the window's keys,
 * read in place (they are contiguous rows: no gather), the band softmax while the tile is in cache,
 * one sgemm with the values and a row scaling by 1 / sum. No key mask (the bench's shape).
 * Build flags: SGEMM the BLAS symbol (row-major cblas_sgemm signature, BLASINT integers);
 * GEMMS_ONLY leaves the softmax out (timing only); FAULT_WIDE_WINDOW admits one key too many
 * (the probe's agreement check must refuse it). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef BLASINT blasint;
extern void SGEMM(int order, int trans_a, int trans_b, blasint m, blasint n, blasint k, float alpha,
                  const float *a, blasint lda, const float *b, blasint ldb, float beta, float *c, blasint ldc);
enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112, BLOCK = 64 };

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }

/* q, k, v, out: [bh_count, seq, dim] float32, contiguous. Query i attends keys j with
 * -window_left <= j - i <= window_right. Returns 0, or -1 when scratch memory is short. */
int local_window(const float *q, const float *k, const float *v, float *out, int bh_count, int seq, int dim,
                 int window_left, int window_right, float scale) {
    int blocks = (seq + BLOCK - 1) / BLOCK, failed = 0;
#pragma omp parallel reduction(| : failed)
    {
        float *tile = malloc(sizeof(float) * BLOCK * (BLOCK + window_left + window_right));
        float inv[BLOCK];
        failed = tile == NULL;
#pragma omp for schedule(static) collapse(2)
        for (int bh = 0; bh < bh_count; bh++) {
            for (int n = 0; n < blocks; n++) {
                if (failed) continue;
                int r0 = n * BLOCK, rows = imin(BLOCK, seq - r0);
                int k0 = imax(0, r0 - window_left), cols = imin(seq, r0 + rows + window_right) - k0;
                size_t base = (size_t)bh * seq;
                float *ob = out + (base + r0) * dim;
                SGEMM(ROW_MAJOR, NO_TRANS, TRANS, rows, cols, dim, scale, q + (base + r0) * dim, dim,
                      k + (base + k0) * dim, dim, 0.0f, tile, cols);
                for (int r = 0; r < rows; r++) {
                    int i = r0 + r, lo = imax(i - window_left, k0) - k0, hi = imin(i + window_right, seq - 1) - k0;
#ifdef FAULT_WIDE_WINDOW
                    hi = imin(hi + 1, cols - 1);
#endif
                    float *row = tile + (size_t)r * cols;
                    inv[r] = 1.0f;
#ifndef GEMMS_ONLY
                    float m = row[lo], sum = 0.0f;
                    for (int j = lo + 1; j <= hi; j++) m = row[j] > m ? row[j] : m;
                    for (int j = lo; j <= hi; j++) {
                        row[j] = expf(row[j] - m);
                        sum += row[j];
                    }
                    if (lo > 0) memset(row, 0, sizeof(float) * lo);
                    if (hi + 1 < cols) memset(row + hi + 1, 0, sizeof(float) * (cols - hi - 1));
                    inv[r] = 1.0f / sum;
#endif
                }
                SGEMM(ROW_MAJOR, NO_TRANS, NO_TRANS, rows, dim, cols, 1.0f, tile, cols, v + (base + k0) * dim, dim,
                      0.0f, ob, dim);
                for (int r = 0; r < rows; r++)
                    for (int d = 0; d < dim; d++) ob[(size_t)r * dim + d] *= inv[r];
            }
        }
        free(tile);
    }
    return failed ? -1 : 0;
}
