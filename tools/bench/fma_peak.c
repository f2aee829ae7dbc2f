/* f32 FMA peak of one core with AVX-512: 12 independent 16-lane FMA chains (enough to hide the
 * FMA latency on two FMA pipes), 32 flops per FMA.
 *
 *   gcc -O3 -mavx512f -mfma tools/bench/fma_peak.c -o /tmp/fma_peak
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
    return 0;
}
