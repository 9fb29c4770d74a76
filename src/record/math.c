/* The sampler's maths: the exponential gaps between samples and the
 * unbiasing of each sample (record/sampler.c states the model), with the C
 * library's log and expm1 loaded without linking libm.
 */
#include "record.h"

#include <dlfcn.h>

/* log and expm1 come from the C library's libm, loaded when first needed
 * (profiling on): linking libm would load it into every process that
 * preloads heapprof, profiling or not, which costs a process start about
 * 7% more. */
static double (*log_fn)(double), (*expm1_fn)(double);

static bool load_math(void)
{
    void *h = hp_dl_open("libm.so.6", RTLD_NOW | RTLD_LOCAL);
    double (*l)(double) = h ? (double (*)(double))dlsym(h, "log") : NULL;
    double (*e)(double) = h ? (double (*)(double))dlsym(h, "expm1") : NULL;
    if (!l || !e)
        return false;
    __atomic_store_n(&expm1_fn, e, __ATOMIC_RELEASE);
    __atomic_store_n(&log_fn, l, __ATOMIC_RELEASE);
    return true;
}

bool hp_math_init(void)
{
    if (__atomic_load_n(&log_fn, __ATOMIC_ACQUIRE) || load_math())
        return true;
    hp_log("heapprof: cannot load log and expm1 from libm.so.6; profiling is off");
    return false;
}

/* Only ever called with profiling on, that is after hp_math_init found
 * them, or from the unit tests, which load them here. */
double hp_math_log(double x)
{
    double (*f)(double) = __atomic_load_n(&log_fn, __ATOMIC_ACQUIRE);
    if (HP_UNLIKELY(!f)) {
        if (!load_math())
            return 0;
        f = log_fn;
    }
    return f(x);
}

static double math_expm1(double x)
{
    double (*f)(double) = __atomic_load_n(&expm1_fn, __ATOMIC_ACQUIRE);
    if (HP_UNLIKELY(!f)) {
        if (!load_math())
            return -1;
        f = expm1_fn;
    }
    return f(x);
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
    return 1.0 / -math_expm1(-x);
}
