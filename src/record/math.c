/* The sampler's maths: the exponential gaps between samples and the
 * unbiasing of each sample (record/sampler.c states the model), with log
 * and expm1 of its own.
 */
#include "record.h"

#include <string.h>

/* log and expm1 are heapprof's own, below: libm linked would be loaded into
 * every process that preloads heapprof, profiling or not (7% of a process
 * start), and loaded with dlopen when profiling is on it cost each profiled
 * process about 0.08 ms, for two functions. Both are to within a few units
 * in the last place of the C library's (tests/unit/test_sampler.c checks
 * them against it), far below what a sampler's gaps or a sample's weight
 * could show. */

static const double ln2_hi = 6.93147180369123816490e-01; /* ln 2, its top 32 bits... */
static const double ln2_lo = 1.90821492927058770002e-10; /* ...and the rest (fdlibm's split) */

static double with_bits(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

/* x = m 2^e with m in [sqrt(1/2), sqrt(2)), so that f = m - 1 is small and
 * exact; then ln m = 2 atanh(s) with s = f / (2 + f), |s| <= 0.1716:
 * 2 (s + s^3/3 + s^5/5 + ...), whose terms past s^21/21 are below 1e-18 of
 * the sum. */
double hp_math_log(double x)
{
    if (!(x > 0))
        return x == 0 ? -__builtin_inf() : __builtin_nan("");
    if (x == __builtin_inf())
        return x;
    uint64_t b;
    memcpy(&b, &x, sizeof b);
    int e = (int)(b >> 52);
    if (e == 0) { /* subnormal: scaled into the normal range first */
        x *= 0x1p54;
        memcpy(&b, &x, sizeof b);
        e = (int)(b >> 52) - 54;
    }
    e -= 1023;
    double m = with_bits((b & 0xfffffffffffffull) | 0x3ff0000000000000ull); /* [1, 2) */
    if (m > 1.4142135623730951) {
        m *= 0.5;
        e++;
    }
    double f = m - 1.0, s = f / (2.0 + f), z = s * s, z2 = z * z, z4 = z2 * z2;
    /* 1/3 + z/5 + ... + z^9/21 in pairs (Estrin's scheme): five products
     * in a row where Horner's rule had ten, each waiting for the last. The
     * sampler draws a logarithm at every sample (33 ns before, chained). */
    double p0 = 1.0 / 3 + z * (1.0 / 5), p1 = 1.0 / 7 + z * (1.0 / 9);
    double p2 = 1.0 / 11 + z * (1.0 / 13), p3 = 1.0 / 15 + z * (1.0 / 17);
    double p4 = 1.0 / 19 + z * (1.0 / 21);
    double t = z * ((p0 + z2 * p1) + z4 * (p2 + z2 * p3) + (z4 * z4) * p4);
    return e * ln2_hi + (e * ln2_lo + (2 * s + 2 * s * t));
}

/* exp(x) - 1 = 2^k (1 + expm1(r)) - 1 with k the nearest integer to
 * x / ln 2 and r = x - k ln 2, |r| <= 0.347, where the series
 * r + r^2/2! + ... + r^14/14! is exact to 1e-17 of its sum. */
double hp_math_expm1(double x)
{
    if (x != x)
        return x;
    if (x < -40)
        return -1.0; /* exp(-40) is below half a unit in the last place of 1 */
    if (x > 709)
        return __builtin_inf();
    int k = (int)(x * 1.4426950408889634 + (x < 0 ? -0.5 : 0.5));
    double r = (x - k * ln2_hi) - k * ln2_lo;
    double p = 1 + r / 14;
    for (int i = 13; i >= 2; i--)
        p = 1 + r / i * p;
    p *= r;
    if (k == 0)
        return p;
    double two_k = with_bits((uint64_t)(k + 1023) << 52);
    return two_k * p + (two_k - 1.0);
}

double hp_unbias_scale(uint64_t size, long rate)
{
    if (rate <= 1 || size == 0)
        return 1.0;
    double x = (double)size / (double)rate;
    if (x < 0.05) {
        /* 1 / (1 - exp(-x)) = 1/x + 1/2 + x/12 - x^3/720 + x^5/30240 - ...
         * (Bernoulli numbers); the next term, x^7/1209600, is below 1e-16
         * of the sum here. Most samples are of objects far smaller than the
         * rate, and this is several times cheaper than expm1. */
        double x2 = x * x;
        return 1.0 / x + 0.5 + x * (1.0 / 12 - x2 * (1.0 / 720 - x2 * (1.0 / 30240)));
    }
    /* 1 / (1 - exp(-s/R)), with expm1 for precision. */
    return 1.0 / -hp_math_expm1(-x);
}
