/* A persistent pthread pool for the native core (not OpenMP: Apple's clang
 * has none). Workers are created on first use and grown on demand; between
 * jobs they spin briefly, then sleep on a condition variable. */
#ifndef QI_THREADPOOL_H
#define QI_THREADPOOL_H

/* One job: fn(arg, ith, nth) is called once for every ith in [0, nth). */
typedef void (*qi_task_fn)(void *arg, int ith, int nth);

/* Run a job on n_threads threads, the caller being thread 0, and return when
 * all are done. If another thread is already using the pool the job runs on
 * the caller alone (nth = 1), so jobs must split work by (ith, nth) or by a
 * shared counter, never assume a thread count. Returns the nth used. */
int qi_pool_run(qi_task_fn fn, void *arg, int n_threads);

#endif
