/* CPU detection and SIMD level selection (cpu.c). */
int qi_cpu_features(void);
int qi_simd_level(void);
int qi_best_simd_level(void);
int qi_set_simd_level(int level);
const char *qi_build_info(void);
