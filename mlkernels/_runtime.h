/* The thread runtime of mlkernels: one OpenMP team for our kernels and for the BLAS they call.
 *
 * Why: on a machine with few cores, two thread pools that each spin while they wait steal each
 * other's cores. Our kernels run on libgomp's team; SciPy's OpenBLAS (which `linear` calls)
 * keeps a pthreads pool of its own. A training step alternates the two, and each pool's idle
 * spinning slowed the other's next call (a whole MLP step ran several times slower than its
 * kernels). So OpenBLAS is handed our team: since 0.3.27 it accepts a "threads callback" that
 * runs its parallel jobs wherever the caller likes (openblas_set_threads_callback_function).
 * We run them as one OpenMP parallel region, thread t doing job t. OpenBLAS's own pool is then
 * never woken, and one pool (ours) serves both.
 *
 * The jobs of one OpenBLAS call wait for each other (a threaded gemm shares packed panels), so
 * all of them must run at the same time: if our team cannot give one thread per job (called
 * from inside a parallel region, an OMP_THREAD_LIMIT, a forked child) the jobs run on
 * short-lived pthreads instead. One lock keeps two callers from running OpenBLAS jobs at once
 * (they share OpenBLAS's per-thread buffers), as OpenBLAS's own server serializes its workers.
 *
 * Also here: the thread count every kernel asks for (mlk_threads), and a fork handler. libgomp
 * cannot run a parallel region in a child forked after the parent used a team (the child waits
 * for threads that were not copied): a forked child runs kernels on one thread and gives
 * OpenBLAS its own (fork-safe) pool back.
 */
#ifndef MLK_RUNTIME_H
#define MLK_RUNTIME_H

#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* OpenBLAS's callback types (cblas.h of OpenBLAS >= 0.3.27) */
typedef void (*mlk_dojob_fn)(int thread_num, void *jobdata, int dojob_data);
typedef void (*mlk_threads_callback_fn)(int sync, mlk_dojob_fn dojob, int numjobs,
                                        size_t jobdata_elsize, void *jobdata, int dojob_data);
typedef void (*mlk_set_callback_fn)(mlk_threads_callback_fn);
typedef void (*mlk_set_int_fn)(int);
typedef int (*mlk_get_int_fn)(void);

static pthread_mutex_t mlk_blas_lock = PTHREAD_MUTEX_INITIALIZER;
static mlk_set_callback_fn mlk_blas_set_callback = NULL;   /* NULL: not found */
static mlk_set_int_fn mlk_blas_set_threads = NULL;
static mlk_get_int_fn mlk_blas_get_threads = NULL;
static int mlk_blas_shared = 0;            /* 1 while OpenBLAS runs its jobs on our team */
static long mlk_blas_jobs_on_team = 0;     /* counters, for info() and the tests */
static long mlk_blas_jobs_on_pthreads = 0;

static volatile int mlk_forked_child = 0;
static int mlk_default_threads = 1;        /* cores this process may use (affinity, quota) */
static int mlk_process_threads = 0;        /* set_num_threads(); 0: not set */
static int mlk_generation = 0;             /* bumped by set_num_threads() */
static __thread int mlk_local_threads = 0; /* threads(n) in this thread; 0: not set */
static __thread int mlk_local_generation = 0;

static inline int mlk_omp_max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* The number of threads a kernel called from this thread may use:
 *   threads(n) in effect here -> n;  a forked child -> 1;
 *   else OpenMP's own count for this thread (omp_get_max_threads: OMP_NUM_THREADS, the CPU
 *   affinity, and whatever threadpoolctl or omp_set_num_threads set), which set_num_threads()
 *   sets in every thread (each thread adopts a new setting on its next call). */
static inline int mlk_threads(void) {
    if (mlk_local_threads > 0)
        return mlk_forked_child ? 1 : mlk_local_threads;
    if (mlk_forked_child)
        return 1;
#ifdef _OPENMP
    if (mlk_local_generation != mlk_generation) {
        omp_set_num_threads(mlk_process_threads > 0 ? mlk_process_threads : mlk_default_threads);
        mlk_local_generation = mlk_generation;
    }
#endif
    return mlk_omp_max_threads();
}

static void mlk_set_process_threads(int n) {   /* n = 0: back to the default */
    mlk_process_threads = n;
    __atomic_add_fetch(&mlk_generation, 1, __ATOMIC_SEQ_CST);
}

/* ------------------------------------------------------------------ OpenBLAS on our team */

typedef struct { mlk_dojob_fn dojob; int thread_num; void *job; int data; } mlk_pthread_job;

static void *mlk_pthread_job_main(void *arg) {
    mlk_pthread_job *j = (mlk_pthread_job *)arg;
    j->dojob(j->thread_num, j->job, j->data);
    return NULL;
}

/* Jobs 1.. on fresh pthreads, job 0 on the caller: all at the same time, as OpenBLAS needs. */
static void mlk_run_jobs_on_pthreads(mlk_dojob_fn dojob, int numjobs, size_t elsize,
                                     char *jobs, int dojob_data) {
    pthread_t threads[64];
    mlk_pthread_job args[64];
    int started = 0, i;
    for (i = 1; i < numjobs && i < 64; i++) {
        args[i].dojob = dojob; args[i].thread_num = i;
        args[i].job = jobs + (size_t)i * elsize; args[i].data = dojob_data;
        if (pthread_create(&threads[i], NULL, mlk_pthread_job_main, &args[i]) != 0)
            break;
        started = i;
    }
    if (started + 1 < numjobs)   /* cannot happen for numjobs <= 64 unless out of threads */
        abort();                 /* (OpenBLAS would deadlock: fail loudly instead) */
    dojob(0, jobs, dojob_data);
    for (i = 1; i <= started; i++)
        pthread_join(threads[i], NULL);
    mlk_blas_jobs_on_pthreads++;
}

static void mlk_blas_run_jobs(int sync, mlk_dojob_fn dojob, int numjobs, size_t elsize,
                              void *jobdata, int dojob_data) {
    char *jobs = (char *)jobdata;
    int team = 0;
    (void)sync;                  /* OpenBLAS always waits for its jobs (sync = 1) */
    if (numjobs <= 0)
        return;
    pthread_mutex_lock(&mlk_blas_lock);
#ifdef _OPENMP
    if (numjobs > 1 && !mlk_forked_child && !omp_in_parallel()) {
        #pragma omp parallel num_threads(numjobs)
        {
            #pragma omp single
            team = omp_get_num_threads();
            /* (the barrier after `single` lets every thread see the team size) */
            if (team == numjobs) {
                int t = omp_get_thread_num();
                dojob(t, jobs + (size_t)t * elsize, dojob_data);
            }
        }
    }
#endif
    if (team == numjobs)
        mlk_blas_jobs_on_team++;
    else if (numjobs == 1)
        dojob(0, jobs, dojob_data);
    else
        mlk_run_jobs_on_pthreads(dojob, numjobs, elsize, jobs, dojob_data);
    pthread_mutex_unlock(&mlk_blas_lock);
}

/* Find OpenBLAS's entry points in the library that holds `blas_function` (scipy's sgemm):
 * dlsym on that library's handle also searches the libraries it depends on. */
static void *mlk_find(void *handle, const char *const *names) {
    for (; *names; names++) {
        void *p = dlsym(handle, *names);
        if (p)
            return p;
    }
    return NULL;
}

static int mlk_blas_locate(void *blas_function) {
    static const char *const set_cb[] = {"openblas_set_threads_callback_function",
        "scipy_openblas_set_threads_callback_function", NULL};
    static const char *const set_n[] = {"openblas_set_num_threads",
        "scipy_openblas_set_num_threads", NULL};
    static const char *const get_n[] = {"openblas_get_num_threads",
        "scipy_openblas_get_num_threads", NULL};
    Dl_info info;
    void *handle;
    if (!blas_function || !dladdr(blas_function, &info) || !info.dli_fname)
        return 0;
    handle = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
    if (!handle)
        return 0;
    mlk_blas_set_callback = (mlk_set_callback_fn)mlk_find(handle, set_cb);
    mlk_blas_set_threads = (mlk_set_int_fn)mlk_find(handle, set_n);
    mlk_blas_get_threads = (mlk_get_int_fn)mlk_find(handle, get_n);
    dlclose(handle);             /* (RTLD_NOLOAD: the library stays loaded, by scipy) */
    return mlk_blas_set_callback != NULL && mlk_blas_set_threads && mlk_blas_get_threads;
}

static int mlk_blas_share(int on) {
    if (!mlk_blas_set_callback)
        return 0;
    pthread_mutex_lock(&mlk_blas_lock);
    mlk_blas_set_callback(on ? mlk_blas_run_jobs : NULL);
    mlk_blas_shared = on;
    pthread_mutex_unlock(&mlk_blas_lock);
    return 1;
}

/* Before our own gemm calls (mlkernels/_blas.pxd): OpenBLAS runs single-threaded inside the
 * blocks our team computes. If someone raised its count since (threadpoolctl, a user's
 * openblas_set_num_threads), set it back; multi-threaded calls of others in between still run
 * on our team, through the callback. (Changed under the lock: OpenBLAS frees per-thread
 * buffers when the count drops.) */
static int mlk_blas_threads_before = 0;    /* OpenBLAS's count when we first set it to 1 */

static inline void mlk_blas_single_thread(void) {
    if (!mlk_blas_get_threads || mlk_blas_get_threads() == 1)
        return;
    pthread_mutex_lock(&mlk_blas_lock);
    if (!mlk_blas_threads_before)
        mlk_blas_threads_before = mlk_blas_get_threads();
    mlk_blas_set_threads(1);
    pthread_mutex_unlock(&mlk_blas_lock);
}

/* The path of the OpenMP runtime library these kernels use ("" without OpenMP). */
static const char *mlk_openmp_library(void) {
#ifdef _OPENMP
    Dl_info info;
    if (dladdr((void *)omp_get_max_threads, &info) && info.dli_fname)
        return info.dli_fname;
#endif
    return "";
}

/* ------------------------------------------------------------------ fork */

static void mlk_after_fork_in_child(void) {
    mlk_forked_child = 1;
    pthread_mutex_init(&mlk_blas_lock, NULL);   /* another thread may have held it */
    if (mlk_blas_shared && mlk_blas_set_callback) {
        mlk_blas_set_callback(NULL);            /* OpenBLAS's own pool is fork-safe */
        mlk_blas_shared = 0;
    }
}

static int mlk_install_fork_handler(void) {
    return pthread_atfork(NULL, NULL, mlk_after_fork_in_child) == 0;
}

#endif /* MLK_RUNTIME_H */
