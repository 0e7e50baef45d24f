/* The machine's FMA peak, measured where the program runs, so that a
 * kernel's speed can be stated as a fraction of what the cores can do:
 * every thread runs independent chains of vector FMAs on registers only (no
 * memory traffic) for the kernels' instruction set (kernels/isa.h: AVX-512,
 * AVX2+FMA, or plain C for generic), and the rate counts an FMA as 2 FLOPs
 * per lane. The same method as bench/fma_peak.c, inside the library so that
 * `sparsetrain bench` measures the peak of the machine it times. */
#ifndef ST_KERNELS_FMA_PEAK_H
#define ST_KERNELS_FMA_PEAK_H

#include "kernels/isa.h"

typedef struct st_fma_peak {
    double gflops;     /* all threads together */
    double per_thread; /* gflops / threads */
    int threads;
    st_isa isa;        /* the instruction set the loop ran with */
} st_fma_peak;

/* Runs `trials` bursts of about `burst_s` seconds each on `threads` threads
 * and keeps the fastest (a busy machine only ever slows a burst down). */
void st_fma_peak_measure(int threads, int trials, double burst_s, st_fma_peak *out);

#endif
