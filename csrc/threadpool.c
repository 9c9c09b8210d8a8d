/* The persistent thread pool (threadpool.h).
 *
 * State is guarded by `mu`; a job is published by bumping `generation`.
 * Workers that see a new generation run their share, then decrement
 * `pending`; the caller waits for pending == 0. A short spin before sleeping
 * keeps the latency of back-to-back jobs (hundreds of matmuls per generated
 * token) low without burning a core while the pool is idle. */
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>

#include "qinfer.h"
#include "threadpool.h"

#define QI_POOL_MAX 256
#define QI_SPIN 20000

typedef struct {
    pthread_mutex_t run_lock;      /* one job at a time */
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    pthread_t threads[QI_POOL_MAX];
    unsigned start_gen[QI_POOL_MAX];  /* generation before worker i's first job */
    int n_workers;                 /* threads[0..n_workers) exist */
    atomic_uint generation;
    atomic_int pending;
    qi_task_fn fn;
    void *arg;
    int nth;
} qi_pool;

static qi_pool g_pool = {
    .run_lock = PTHREAD_MUTEX_INITIALIZER,
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
};
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

static inline void cpu_relax(void) {
#if defined(QI_X86)
    __builtin_ia32_pause();
#elif defined(QI_ARM64)
    __asm__ volatile("yield");
#endif
}

static void *worker_main(void *p) {
    const int me = (int)(intptr_t)p;      /* worker index; its ith is me + 1 */
    qi_pool *pool = &g_pool;
    unsigned seen = pool->start_gen[me];   /* written before pthread_create */
    for (;;) {
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen &&
               spins < QI_SPIN) {
            cpu_relax();
            spins++;
        }
        if (gen == seen) {
            pthread_mutex_lock(&pool->mu);
            while ((gen = atomic_load(&pool->generation)) == seen) pthread_cond_wait(&pool->wake, &pool->mu);
            pthread_mutex_unlock(&pool->mu);
        }
        seen = gen;
        /* Every worker acknowledges every job, even one it has no share of,
         * so the job fields are never rewritten while a worker may read them. */
        if (me + 1 < pool->nth) pool->fn(pool->arg, me + 1, pool->nth);
        if (atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&pool->mu);
            pthread_cond_signal(&pool->done);
            pthread_mutex_unlock(&pool->mu);
        }
    }
    return NULL;
}

/* A forked child has the pool's memory but none of its threads. */
static void reset_after_fork(void) {
    pthread_mutex_init(&g_pool.run_lock, NULL);
    pthread_mutex_init(&g_pool.mu, NULL);
    pthread_cond_init(&g_pool.wake, NULL);
    pthread_cond_init(&g_pool.done, NULL);
    g_pool.n_workers = 0;
    atomic_store(&g_pool.pending, 0);
}

static void install_atfork(void) { pthread_atfork(NULL, NULL, reset_after_fork); }

/* Called with run_lock held. Returns how many workers exist afterwards. */
static int grow(qi_pool *pool, int want) {
    if (want > QI_POOL_MAX) want = QI_POOL_MAX;
    while (pool->n_workers < want) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pool->start_gen[pool->n_workers] = atomic_load(&pool->generation);
        const int rc = pthread_create(&pool->threads[pool->n_workers], &attr, worker_main,
                                      (void *)(intptr_t)pool->n_workers);
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        pool->n_workers++;
    }
    return pool->n_workers;
}

int qi_pool_run(qi_task_fn fn, void *arg, int n_threads) {
    qi_pool *pool = &g_pool;
    if (n_threads <= 1 || pthread_mutex_trylock(&pool->run_lock) != 0) {
        fn(arg, 0, 1);
        return 1;
    }
    pthread_once(&g_atfork_once, install_atfork);
    const int n_workers = grow(pool, n_threads - 1);
    const int nth = 1 + (n_workers < n_threads - 1 ? n_workers : n_threads - 1);
    if (n_workers == 0) {
        pthread_mutex_unlock(&pool->run_lock);
        fn(arg, 0, 1);
        return 1;
    }
    pool->fn = fn;
    pool->arg = arg;
    pool->nth = nth;
    atomic_store(&pool->pending, n_workers);
    pthread_mutex_lock(&pool->mu);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mu);

    fn(arg, 0, nth);

    int spins = 0;
    while (atomic_load_explicit(&pool->pending, memory_order_acquire) != 0 && spins < QI_SPIN) {
        cpu_relax();
        spins++;
    }
    if (atomic_load(&pool->pending) != 0) {
        pthread_mutex_lock(&pool->mu);
        while (atomic_load(&pool->pending) != 0) pthread_cond_wait(&pool->done, &pool->mu);
        pthread_mutex_unlock(&pool->mu);
    }
    pthread_mutex_unlock(&pool->run_lock);
    return nth;
}

int qi_pool_size(void) { return g_pool.n_workers + 1; }
