/* Unit tests of the sampler and of Go's unbiasing.
 *
 * sampler.c (with math.c and thread.c) is compiled into this test directly so that its per-thread
 * state can be driven the way the hooks drive it, without interposing
 * malloc. Statistical checks use fixed seeds and bounds of several standard
 * deviations derived from the distributions involved, so they are
 * deterministic and still fail on a biased sampler.
 */
#include "../../src/record/sampler.c"
#include "../../src/record/math.c"
#include "../../src/record/thread.c"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct hp_config hp_cfg;
volatile int hp_state = HP_STATE_ON;
void hp_threads_seen(void) {}
HP_TLS bool hp_threads_pending;
void hp_log(const char *fmt, ...)
{
    (void)fmt;
}
int64_t hp_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#include "check.h"

/* Go's published values (runtime/pprof's TestHeapProfile scaling). */
static void test_go_values(void)
{
    long rate = 524288;
    double s = hp_unbias_scale(1024, rate);
    int64_t objs = (int64_t)(4.0 * s), bytes = (int64_t)(4096.0 * s);
    CHECK(objs == 2050, "4 x 1024 B: %lld objects, want 2050", (long long)objs);
    CHECK(bytes == 2099200, "4 x 1024 B: %lld bytes, want 2099200", (long long)bytes);
    s = hp_unbias_scale(524288, rate);
    objs = (int64_t)(1.0 * s);
    bytes = (int64_t)(524288.0 * s);
    CHECK(objs == 1, "1 x 512 KiB: %lld objects, want 1", (long long)objs);
    CHECK(bytes == 829411, "1 x 512 KiB: %lld bytes, want 829411", (long long)bytes);
    CHECK(hp_unbias_scale(12345, 1) == 1.0, "exact mode must not scale");
}

/* heapprof's own log and expm1 (record/math.c) against the C library's:
 * within 4 units in the last place over the ranges they are used in (the
 * sampler's u in (0, 1], weights' -size/rate down to -40 and beyond), and at
 * the edges. */
static double ulps(double got, double want)
{
    if (got == want)
        return 0;
    return fabs(got - want) / fabs(nextafter(want, INFINITY) - want);
}

static void test_own_math(void)
{
    uint64_t rng[4];
    hp_rng_seed(rng, 7);
    double worst_log = 0, worst_expm1 = 0;
    for (int i = 0; i < 200000; i++) {
        /* u as the sampler draws it, and values spread over many octaves. */
        double u = (double)((hp_rng_next(rng) >> 11) + 1) * 0x1.0p-53;
        double x = i % 2 ? u : ldexp(u, (int)(hp_rng_next(rng) % 200) - 100);
        double d = ulps(hp_math_log(x), log(x));
        worst_log = d > worst_log ? d : worst_log;
        double y = -u * (i % 3 ? 1.0 : 60.0);
        if (i % 5 == 0)
            y = -y / 64; /* small and positive too */
        d = ulps(hp_math_expm1(y), expm1(y));
        worst_expm1 = d > worst_expm1 ? d : worst_expm1;
    }
    CHECK(worst_log <= 4, "log: %.1f ulps from the C library's", worst_log);
    CHECK(worst_expm1 <= 4, "expm1: %.1f ulps from the C library's", worst_expm1);
    CHECK(hp_math_log(1.0) == 0.0, "log(1) = %g", hp_math_log(1.0));
    CHECK(isinf(hp_math_log(0.0)) && hp_math_log(0.0) < 0, "log(0) = %g", hp_math_log(0.0));
    CHECK(ulps(hp_math_log(0x1p-1074), log(0x1p-1074)) <= 4, "log of a subnormal");
    CHECK(hp_math_expm1(0.0) == 0.0, "expm1(0) = %g", hp_math_expm1(0.0));
    CHECK(hp_math_expm1(-1000.0) == -1.0, "expm1(-1000) = %g", hp_math_expm1(-1000.0));
    printf("own log: %.2f ulps at worst; own expm1: %.2f\n", worst_log, worst_expm1);
}

/* The gaps are exponential with mean R: mean R and standard deviation R, so
 * the mean of N gaps has standard deviation R/sqrt(N). */
static void test_gap_distribution(void)
{
    uint64_t rng[4];
    hp_rng_seed(rng, 42);
    const long rate = 524288;
    const int n = 1000000;
    double sum = 0, sumsq = 0;
    int below_mean = 0;
    for (int i = 0; i < n; i++) {
        double g = (double)hp_sampler_gap(rng, rate);
        sum += g;
        sumsq += g * g;
        below_mean += g < rate;
    }
    double mean = sum / n, var = sumsq / n - mean * mean;
    double sd_mean = rate / sqrt(n);
    CHECK(fabs(mean - rate) < 5 * sd_mean, "gap mean %.0f, want %ld +- %.0f", mean, rate,
          5 * sd_mean);
    /* Var of the sample variance of an exponential: (mu4 - s^4)/n = 8 R^4/n. */
    double sd_var = sqrt(8.0 / n) * (double)rate * rate;
    CHECK(fabs(var - (double)rate * rate) < 5 * sd_var, "gap variance %.3g, want %.3g", var,
          (double)rate * rate);
    /* P(gap < mean) = 1 - 1/e for an exponential, not 1/2 as for a uniform. */
    double frac = (double)below_mean / n, p = 1 - exp(-1);
    CHECK(fabs(frac - p) < 5 * sqrt(p * (1 - p) / n), "P(gap < R) = %.4f, want %.4f", frac, p);
}

/* Drive the per-thread countdown as the hooks do. */
static bool alloc(size_t size)
{
    if ((hp_thread.countdown -= (int64_t)size) < 0)
        return hp_sampler_take(size);
    return false;
}

static void reset_thread(long rate, uint64_t seed)
{
    hp_cfg.rate = rate;
    hp_cfg.seed = seed;
    hp_cfg.seed_set = true;
    memset(&hp_thread, 0, sizeof hp_thread);
    hp_thread.countdown = -1;
}

/* An allocation of s bytes is sampled with probability 1 - exp(-s/R),
 * whatever came before it. */
static void test_sampling_probability(void)
{
    const long rate = 4096;
    const size_t sizes[] = {64, 1024, 4096, 16384};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        reset_thread(rate, 7 + k);
        const int n = 200000;
        int taken = 0;
        for (int i = 0; i < n; i++)
            taken += alloc(sizes[k]);
        double p = 1 - exp(-(double)sizes[k] / rate), frac = (double)taken / n;
        double sd = sqrt(p * (1 - p) / n);
        CHECK(fabs(frac - p) < 5 * sd + 1e-9, "size %zu: sampled %.5f, want %.5f +- %.5f", sizes[k],
              frac, p, 5 * sd);
    }
}

/* The weighted sum of samples estimates the true total without bias, for
 * mixed sizes. Its variance is sum over allocations of s^2 (1 - p(s)) / p(s)
 * (each allocation contributes s/p with probability p, else 0). */
static void test_estimator_unbiased(void)
{
    const long rate = 65536;
    reset_thread(rate, 99);
    uint64_t lcg = 12345;
    double truth = 0, est = 0, var = 0, truth_n = 0, est_n = 0, var_n = 0;
    for (int i = 0; i < 2000000; i++) {
        lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
        size_t s = 1 + (size_t)((lcg >> 33) % 8192);
        double p = 1 - exp(-(double)s / rate);
        truth += (double)s;
        truth_n += 1;
        var += (double)s * s * (1 - p) / p;
        var_n += (1 - p) / p;
        if (alloc(s)) {
            est += (double)s * hp_unbias_scale(s, rate);
            est_n += hp_unbias_scale(s, rate);
        }
    }
    CHECK(fabs(est - truth) < 5 * sqrt(var), "bytes: estimated %.0f, true %.0f, sd %.0f", est,
          truth, sqrt(var));
    CHECK(fabs(est_n - truth_n) < 5 * sqrt(var_n), "objects: estimated %.0f, true %.0f, sd %.0f",
          est_n, truth_n, sqrt(var_n));
}

static void test_exact_mode(void)
{
    reset_thread(1, 1);
    int taken = 0;
    for (int i = 0; i < 1000; i++)
        taken += alloc((size_t)(i % 5)); /* zero-byte allocations included */
    CHECK(taken == 1000, "exact mode sampled %d of 1000", taken);
}

static void test_seed_reproducible(void)
{
    int64_t a[16], b[16];
    reset_thread(524288, 5);
    hp_rng_seed(hp_thread.rng, 5);
    for (int i = 0; i < 16; i++)
        a[i] = hp_sampler_gap(hp_thread.rng, 524288);
    hp_rng_seed(hp_thread.rng, 5);
    for (int i = 0; i < 16; i++)
        b[i] = hp_sampler_gap(hp_thread.rng, 524288);
    CHECK(!memcmp(a, b, sizeof a), "same seed, different gaps");
    hp_rng_seed(hp_thread.rng, 6);
    CHECK(hp_sampler_gap(hp_thread.rng, 524288) != a[0], "seeds 5 and 6 gave the same gap");
}

static void test_busy_records_nothing(void)
{
    reset_thread(1, 1);
    hp_thread.busy = true;
    CHECK(!alloc(100), "an allocation made while busy was sampled");
    hp_thread.busy = false;
    CHECK(alloc(100), "exact mode missed an allocation after busy");
}

int main(void)
{
    test_own_math();
    test_go_values();
    test_gap_distribution();
    test_sampling_probability();
    test_estimator_unbiased();
    test_exact_mode();
    test_seed_reproducible();
    test_busy_records_nothing();
    if (failures) {
        printf("%d check(s) failed\n", failures);
        return 1;
    }
    printf("all sampler checks passed\n");
    return 0;
}
