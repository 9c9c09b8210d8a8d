/* Run-time CPU detection: one shared object serves every x86-64 CPU (AVX2
 * code is only entered when the CPU has AVX2+FMA+F16C) and every arm64 CPU
 * (dotprod kernels only when the CPU reports it). */
#include "qinfer.h"

#if defined(QI_ARM64) && defined(__linux__)
#  include <sys/auxv.h>
#  ifndef HWCAP_ASIMDDP
#    define HWCAP_ASIMDDP (1 << 20)
#  endif
#  ifndef HWCAP2_I8MM
#    define HWCAP2_I8MM (1 << 13)
#  endif
#endif
#if defined(QI_ARM64) && defined(__APPLE__)
#  include <sys/sysctl.h>
#endif

static int detect_features(void) {
    int f = 0;
#if defined(QI_X86) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) f |= QI_CPU_AVX2;
    if (__builtin_cpu_supports("fma")) f |= QI_CPU_FMA;
    if (__builtin_cpu_supports("avx512f")) f |= QI_CPU_AVX512F;
    {
        /* F16C: CPUID leaf 1, ECX bit 29 (no __builtin_cpu_supports name on old gcc). */
        unsigned a, b, c, d;
        __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
        if (c & (1u << 29)) f |= QI_CPU_F16C;
    }
#endif
#if defined(QI_ARM64)
    f |= QI_CPU_NEON;
#  if defined(__linux__)
    unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    if (hw & HWCAP_ASIMDDP) f |= QI_CPU_DOTPROD;
    if (hw2 & HWCAP2_I8MM) f |= QI_CPU_I8MM;
#  elif defined(__APPLE__)
    int v = 0; size_t n = sizeof(v);
    if (sysctlbyname("hw.optional.arm.FEAT_DotProd", &v, &n, NULL, 0) == 0 && v) f |= QI_CPU_DOTPROD;
    v = 0; n = sizeof(v);
    if (sysctlbyname("hw.optional.arm.FEAT_I8MM", &v, &n, NULL, 0) == 0 && v) f |= QI_CPU_I8MM;
#  endif
#endif
    return f;
}

static int g_features = -1;
static int g_level = -1;

int qi_cpu_features(void) {
    if (g_features < 0) g_features = detect_features();
    return g_features;
}

int qi_best_simd_level(void) {
    int f = qi_cpu_features();
    const int avx2 = QI_CPU_AVX2 | QI_CPU_FMA | QI_CPU_F16C;
    if ((f & avx2) == avx2) return QI_SIMD_AVX2;
    if (f & QI_CPU_DOTPROD) return QI_SIMD_NEON_DOTPROD;
    if (f & QI_CPU_NEON) return QI_SIMD_NEON;
    return QI_SIMD_SCALAR;
}

int qi_simd_level(void) {
    if (g_level < 0) g_level = qi_best_simd_level();
    return g_level;
}

/* Lower (never raise beyond what the CPU has) the SIMD level, e.g. to test the
 * scalar path on an AVX2 machine. Returns the level in force. */
int qi_set_simd_level(int level) {
    int best = qi_best_simd_level();
    if (level < 0) level = best;
    if (level == QI_SIMD_SCALAR) g_level = QI_SIMD_SCALAR;
    else if (level == best) g_level = best;
    else if (level == QI_SIMD_NEON && best == QI_SIMD_NEON_DOTPROD) g_level = QI_SIMD_NEON;
    else return -1;
    return g_level;
}

const char *qi_build_info(void) {
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown compiler";
#endif
}
