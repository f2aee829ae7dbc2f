/* f32 FMA peak of one core with AVX-512: 12 independent 16-lane FMA chains (enough to hide the
 * FMA latency on two FMA pipes), 32 flops per FMA. Built with AVX-512-BF16, also the bf16 peak:
 * 12 chains of `vdpbf16ps` (32 bf16 products summed pairwise into 16 f32 lanes), 64 flops each.
 *
 *   gcc -O3 -mavx512f -mfma tools/bench/fma_peak.c -o /tmp/fma_peak
 *   gcc -O3 -mavx512f -mfma -mavx512bf16 tools/bench/fma_peak.c -o /tmp/fma_peak   # + bf16
 *   /tmp/fma_peak & /tmp/fma_peak & wait      # one copy per core, all cores at once
 *
 * The README's "fraction of peak" figures divide measured model throughput by the sum of these. */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

int main(void) {
    __m512 acc[12];
    const __m512 b = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) acc[i] = _mm512_set1_ps((float)i);
    const long steps = 400000000L / 12;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long k = 0; k < steps; k++)
        for (int i = 0; i < 12; i++) acc[i] = _mm512_fmadd_ps(acc[i], b, c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    float sum = 0.0f; /* keeps the loop from being optimised away */
    for (int i = 0; i < 12; i++) sum += _mm512_reduce_add_ps(acc[i]);
    printf("%.1f GFLOP/s f32 FMA on one core (checksum %g)\n", (double)steps * 12 * 32 / s / 1e9, sum);
#ifdef __AVX512BF16__
    __m512 dot[12];
    /* Pairs of bf16 1.0 (0x3f80) and 2^-20: the sums grow slowly and stay finite. */
    const __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80), y = (__m512bh)_mm512_set1_epi32(0x35803580);
    for (int i = 0; i < 12; i++) dot[i] = _mm512_setzero_ps();
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long k = 0; k < steps; k++)
        for (int i = 0; i < 12; i++) dot[i] = _mm512_dpbf16_ps(dot[i], x, y);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    sum = 0.0f;
    for (int i = 0; i < 12; i++) sum += _mm512_reduce_add_ps(dot[i]);
    printf("%.1f GFLOP/s bf16 vdpbf16ps on one core (checksum %g)\n", (double)steps * 12 * 64 / s / 1e9, sum);
#endif
    return 0;
}
