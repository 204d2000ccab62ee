/* jain.h - Jain's fairness index, shared by the fair-queue unit tests (test_drr.c,
 * test_drr_tenants.c, test_cluster_queue.c) and the bench simulations that report it (fairsim.c,
 * cfairsim.c), so the number a test asserts and the one a bench prints are the same formula.
 * Header-only: the unit rule in the Makefile builds one .c per test binary. */
#ifndef LV_JAIN_H
#define LV_JAIN_H

#include <stddef.h>

/** Jain's index (sum x)^2 / (n * sum x^2) over x[0..n), normally shares normalised by what each
 * party is entitled to (got_i / weight_i): 1 when all are equal, 1/n when one party has it all.
 * 1 when every x is 0 (nobody was served, so nobody was served unfairly). */
static inline double lv_jain(const double *x, size_t n)
{
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) {
        s += x[i];
        s2 += x[i] * x[i];
    }
    return s2 > 0 ? s * s / ((double)n * s2) : 1.0;
}

#endif
