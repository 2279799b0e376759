/* BLAKE3 of many equal-length chunks at once, sixteen side by side.
 *
 *   hash_equal(src, length, count, out)
 *       out[32*i : 32*i+32] = BLAKE3(src[length*i : length*(i+1)]) for i < count
 *   hash_list(buffers, out)
 *       out[32*i : 32*i+32] = BLAKE3(buffers[i]); every buffer has the same length
 *   available() -> bool      whether this CPU runs it (AVX-512F)
 *   hash_mapped(src, length, count, out) -> bool
 *       hash_equal of a file's mapping; False if the file shrank under it
 *   copy_mapped(dst, src) -> bool
 *       dst[:len(src)] = src, from a file's mapping; False if the file shrank under it
 *
 * A push hashes every 64 KiB chunk of a tensor, and a pull verifies every one.
 * One call per chunk into the blake3 module costs more than the hashing when
 * other threads run Python: each call gives up the interpreter lock and then
 * waits up to a switch interval to get it back. Here a whole block of chunks is
 * hashed in one call, without the lock.
 *
 * The chunks all have the same length, so sixteen of them go through exactly
 * the same steps of the BLAKE3 tree (same 1 KiB chunk counters, same merges);
 * each 32-bit word of the state holds one message's word in each of the sixteen
 * lanes of a 512-bit register. The result is plain BLAKE3 (the tests compare it
 * with the blake3 module on many lengths); modelkeep/store/digest.py falls back
 * to that module where this one was not built or the CPU lacks AVX-512.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__unix__) || defined(__APPLE__)
#define MK_GUARD 1
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#endif

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define MK_X86 1
#include <immintrin.h>
#endif

enum {
    CHUNK_START = 1,
    CHUNK_END = 2,
    PARENT = 4,
    ROOT = 8,
    CHUNK_LEN = 1024,
    BLOCK_LEN = 64,
    LANES = 16,
    MAX_DEPTH = 54, /* 2^54 chunks of 1 KiB: more than any buffer */
};

static const uint32_t IV[8] = {
    0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19,
};

/* The message word each G step takes, round by round (the BLAKE3 permutation applied r times). */
static const uint8_t SCHEDULE[7][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8},
    {3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1},
    {10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6},
    {12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4},
    {9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7},
    {11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13},
};

static int cpu_ok = -1;

static int lanes_available(void)
{
#if MK_X86
    if (cpu_ok < 0) {
        __builtin_cpu_init();
        cpu_ok = __builtin_cpu_supports("avx512f") ? 1 : 0;
    }
    return cpu_ok;
#else
    return 0;
#endif
}

#if MK_X86
#define TARGET __attribute__((target("avx512f")))
#define INLINE TARGET __attribute__((always_inline)) static inline

typedef __m512i V;

#define G(a, b, c, d, x, y)                                  \
    do {                                                     \
        a = _mm512_add_epi32(_mm512_add_epi32(a, b), x);     \
        d = _mm512_ror_epi32(_mm512_xor_si512(d, a), 16);    \
        c = _mm512_add_epi32(c, d);                          \
        b = _mm512_ror_epi32(_mm512_xor_si512(b, c), 12);    \
        a = _mm512_add_epi32(_mm512_add_epi32(a, b), y);     \
        d = _mm512_ror_epi32(_mm512_xor_si512(d, a), 8);     \
        c = _mm512_add_epi32(c, d);                          \
        b = _mm512_ror_epi32(_mm512_xor_si512(b, c), 7);     \
    } while (0)

/* cv = compress(cv, m, counter, block_len, flags)[0:8], the same counter and flags in every lane. */
INLINE void compress16(V cv[8], const V m[16], uint64_t counter, uint32_t block_len, uint32_t flags)
{
    V s0 = cv[0], s1 = cv[1], s2 = cv[2], s3 = cv[3], s4 = cv[4], s5 = cv[5], s6 = cv[6], s7 = cv[7];
    V s8 = _mm512_set1_epi32((int)IV[0]), s9 = _mm512_set1_epi32((int)IV[1]);
    V s10 = _mm512_set1_epi32((int)IV[2]), s11 = _mm512_set1_epi32((int)IV[3]);
    V s12 = _mm512_set1_epi32((int)(uint32_t)counter), s13 = _mm512_set1_epi32((int)(uint32_t)(counter >> 32));
    V s14 = _mm512_set1_epi32((int)block_len), s15 = _mm512_set1_epi32((int)flags);
#pragma GCC unroll 7
    for (int r = 0; r < 7; r++) {
        const uint8_t *w = SCHEDULE[r];
        G(s0, s4, s8, s12, m[w[0]], m[w[1]]);
        G(s1, s5, s9, s13, m[w[2]], m[w[3]]);
        G(s2, s6, s10, s14, m[w[4]], m[w[5]]);
        G(s3, s7, s11, s15, m[w[6]], m[w[7]]);
        G(s0, s5, s10, s15, m[w[8]], m[w[9]]);
        G(s1, s6, s11, s12, m[w[10]], m[w[11]]);
        G(s2, s7, s8, s13, m[w[12]], m[w[13]]);
        G(s3, s4, s9, s14, m[w[14]], m[w[15]]);
    }
    cv[0] = _mm512_xor_si512(s0, s8);
    cv[1] = _mm512_xor_si512(s1, s9);
    cv[2] = _mm512_xor_si512(s2, s10);
    cv[3] = _mm512_xor_si512(s3, s11);
    cv[4] = _mm512_xor_si512(s4, s12);
    cv[5] = _mm512_xor_si512(s5, s13);
    cv[6] = _mm512_xor_si512(s6, s14);
    cv[7] = _mm512_xor_si512(s7, s15);
}

/* Rows a[i] (lane i's 16 words) to columns m[w] (word w of every lane). */
INLINE void transpose16(const V a[16], V m[16])
{
    V b[16], c[16];
    for (int i = 0; i < 8; i++) {
        b[2 * i] = _mm512_unpacklo_epi32(a[2 * i], a[2 * i + 1]);
        b[2 * i + 1] = _mm512_unpackhi_epi32(a[2 * i], a[2 * i + 1]);
    }
    /* c[4i+j], 128-bit lane k: word 4k+j of rows 4i..4i+3 */
    for (int i = 0; i < 4; i++) {
        c[4 * i + 0] = _mm512_unpacklo_epi64(b[4 * i], b[4 * i + 2]);
        c[4 * i + 1] = _mm512_unpackhi_epi64(b[4 * i], b[4 * i + 2]);
        c[4 * i + 2] = _mm512_unpacklo_epi64(b[4 * i + 1], b[4 * i + 3]);
        c[4 * i + 3] = _mm512_unpackhi_epi64(b[4 * i + 1], b[4 * i + 3]);
    }
    for (int j = 0; j < 4; j++) {
        V lo0 = _mm512_shuffle_i32x4(c[j], c[4 + j], 0x44);
        V lo1 = _mm512_shuffle_i32x4(c[8 + j], c[12 + j], 0x44);
        V hi0 = _mm512_shuffle_i32x4(c[j], c[4 + j], 0xEE);
        V hi1 = _mm512_shuffle_i32x4(c[8 + j], c[12 + j], 0xEE);
        m[j] = _mm512_shuffle_i32x4(lo0, lo1, 0x88);
        m[4 + j] = _mm512_shuffle_i32x4(lo0, lo1, 0xDD);
        m[8 + j] = _mm512_shuffle_i32x4(hi0, hi1, 0x88);
        m[12 + j] = _mm512_shuffle_i32x4(hi0, hi1, 0xDD);
    }
}

/* The 64-byte block at ``off`` of every lane's message, as columns; a short block is zero-padded. */
INLINE void load_block(const uint8_t *const ptr[LANES], size_t off, size_t n, V m[16])
{
    V rows[16];
    if (n == BLOCK_LEN) {
        for (int i = 0; i < LANES; i++)
            rows[i] = _mm512_loadu_si512((const void *)(ptr[i] + off));
    } else {
        uint8_t tmp[BLOCK_LEN];
        for (int i = 0; i < LANES; i++) {
            memset(tmp, 0, sizeof tmp);
            memcpy(tmp, ptr[i] + off, n);
            rows[i] = _mm512_loadu_si512((const void *)tmp);
        }
    }
    transpose16(rows, m);
}

TARGET static void parent16(V cv[8], const V left[8], const V right[8], uint32_t flags)
{
    V m[16];
    for (int i = 0; i < 8; i++) {
        m[i] = left[i];
        m[8 + i] = right[i];
    }
    for (int i = 0; i < 8; i++)
        cv[i] = _mm512_set1_epi32((int)IV[i]);
    compress16(cv, m, 0, BLOCK_LEN, PARENT | flags);
}

/* One chunk of 1 KiB (or less: the last) of every lane: its chaining value, or the root when ``root``. */
TARGET static void chunk16(const uint8_t *const ptr[LANES], size_t start, size_t len, uint64_t counter,
                           uint32_t root, V cv[8])
{
    size_t blocks = len ? (len + BLOCK_LEN - 1) / BLOCK_LEN : 1;
    for (int i = 0; i < 8; i++)
        cv[i] = _mm512_set1_epi32((int)IV[i]);
    for (size_t b = 0; b < blocks; b++) {
        size_t n = len - b * BLOCK_LEN < BLOCK_LEN ? len - b * BLOCK_LEN : BLOCK_LEN;
        V m[16];
        load_block(ptr, start + b * BLOCK_LEN, n, m);
        uint32_t flags = (b == 0 ? CHUNK_START : 0) | (b == blocks - 1 ? CHUNK_END | root : 0);
        compress16(cv, m, counter, (uint32_t)n, flags);
    }
}

/* BLAKE3 of sixteen messages of ``len`` bytes each; digests to out[lane*32]. */
TARGET static void hash16(const uint8_t *const ptr[LANES], size_t len, uint8_t *out[LANES])
{
    size_t chunks = len ? (len + CHUNK_LEN - 1) / CHUNK_LEN : 1;
    V stack[MAX_DEPTH][8];
    int depth = 0;
    V cv[8];
    if (chunks == 1) {
        chunk16(ptr, 0, len, 0, ROOT, cv);
    } else {
        for (size_t t = 0; t + 1 < chunks; t++) {
            chunk16(ptr, t * CHUNK_LEN, CHUNK_LEN, t, 0, cv);
            /* merge completed subtrees: one per trailing zero bit of the chunk count */
            for (uint64_t total = t + 1; (total & 1) == 0; total >>= 1) {
                depth--;
                parent16(cv, stack[depth], cv, 0);
            }
            memcpy(stack[depth++], cv, sizeof cv);
        }
        size_t last = (chunks - 1) * CHUNK_LEN;
        chunk16(ptr, last, len - last, chunks - 1, 0, cv);
        while (depth > 1) {
            depth--;
            parent16(cv, stack[depth], cv, 0);
        }
        parent16(cv, stack[0], cv, ROOT);
    }
    uint32_t words[8][LANES];
    for (int i = 0; i < 8; i++)
        _mm512_storeu_si512((void *)words[i], cv[i]);
    for (int lane = 0; lane < LANES; lane++) {
        if (out[lane] == NULL)
            continue;
        for (int i = 0; i < 8; i++) {
            uint32_t w = words[i][lane];
            uint8_t *o = out[lane] + 4 * i;
            o[0] = (uint8_t)w;
            o[1] = (uint8_t)(w >> 8);
            o[2] = (uint8_t)(w >> 16);
            o[3] = (uint8_t)(w >> 24);
        }
    }
}

static void hash_equal_n(const uint8_t *src, size_t len, size_t count, uint8_t *out)
{
    for (size_t g = 0; g < count; g += LANES) {
        const uint8_t *ptr[LANES];
        uint8_t *dst[LANES];
        for (int lane = 0; lane < LANES; lane++) {
            size_t i = g + (size_t)lane;
            /* lanes past the end repeat the first message; their digests are dropped */
            ptr[lane] = src + (i < count ? i : g) * len;
            dst[lane] = i < count ? out + 32 * i : NULL;
        }
        hash16(ptr, len, dst);
    }
}
#endif

/* The arguments of hash_equal and hash_mapped, checked: 0, or -1 with an exception set and no buffer held. */
static int equal_args(PyObject *args, Py_buffer *src, Py_ssize_t *len, Py_ssize_t *count, Py_buffer *out)
{
    if (!PyArg_ParseTuple(args, "y*nnw*", src, len, count, out))
        return -1;
    if (!lanes_available())
        PyErr_SetString(PyExc_RuntimeError, "this CPU lacks AVX-512F");
    else if (*len < 0 || *count < 0 || (*len > 0 && *count > src->len / *len))
        PyErr_SetString(PyExc_ValueError, "source is shorter than count chunks of length bytes");
    else if (*count > out->len / 32)
        PyErr_SetString(PyExc_ValueError, "output is shorter than 32 bytes per chunk");
    else
        return 0;
    PyBuffer_Release(src);
    PyBuffer_Release(out);
    return -1;
}

static PyObject *lanes_hash_equal(PyObject *self, PyObject *args)
{
    Py_buffer src, out;
    Py_ssize_t len, count;
    if (equal_args(args, &src, &len, &count, &out) < 0)
        return NULL;
#if MK_X86
    Py_BEGIN_ALLOW_THREADS
    hash_equal_n((const uint8_t *)src.buf, (size_t)len, (size_t)count, (uint8_t *)out.buf);
    Py_END_ALLOW_THREADS
#endif
    PyBuffer_Release(&src);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

#if MK_X86
static void hash_ptrs_n(const uint8_t *const *src, size_t len, size_t count, uint8_t *out)
{
    for (size_t g = 0; g < count; g += LANES) {
        const uint8_t *ptr[LANES];
        uint8_t *dst[LANES];
        for (int lane = 0; lane < LANES; lane++) {
            size_t i = g + (size_t)lane;
            ptr[lane] = src[i < count ? i : g];
            dst[lane] = i < count ? out + 32 * i : NULL;
        }
        hash16(ptr, len, dst);
    }
}
#endif

static PyObject *lanes_hash_list(PyObject *self, PyObject *args)
{
    PyObject *seq;
    Py_buffer out;
    if (!PyArg_ParseTuple(args, "Ow*", &seq, &out))
        return NULL;
    PyObject *ret = NULL, *fast = NULL;
    Py_buffer *views = NULL;
    const uint8_t **ptrs = NULL;
    Py_ssize_t got = 0, count = 0, len = -1;
    if (!lanes_available()) {
        PyErr_SetString(PyExc_RuntimeError, "this CPU lacks AVX-512F");
        goto done;
    }
    if ((fast = PySequence_Fast(seq, "buffers must be a sequence")) == NULL)
        goto done;
    count = PySequence_Fast_GET_SIZE(fast);
    if (count > out.len / 32) {
        PyErr_SetString(PyExc_ValueError, "output is shorter than 32 bytes per buffer");
        goto done;
    }
    views = PyMem_Calloc((size_t)count + 1, sizeof *views);
    ptrs = PyMem_Calloc((size_t)count + 1, sizeof *ptrs);
    if (views == NULL || ptrs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; got < count; got++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(fast, got), &views[got], PyBUF_SIMPLE) < 0)
            goto done;
        if (len < 0)
            len = views[got].len;
        if (views[got].len != len) {
            got++;
            PyErr_SetString(PyExc_ValueError, "buffers differ in length");
            goto done;
        }
        ptrs[got] = (const uint8_t *)views[got].buf;
    }
#if MK_X86
    Py_BEGIN_ALLOW_THREADS
    hash_ptrs_n(ptrs, (size_t)(len < 0 ? 0 : len), (size_t)count, (uint8_t *)out.buf);
    Py_END_ALLOW_THREADS
#endif
    ret = Py_NewRef(Py_None);
done:
    for (Py_ssize_t i = 0; i < got; i++)
        PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    PyMem_Free(ptrs);
    Py_XDECREF(fast);
    PyBuffer_Release(&out);
    return ret;
}

/* -- reading a file through a mapping ------------------------------------------
 *
 * A push reads every byte of a file to hash it, and copying 1 GiB out of the
 * page cache costs ~0.12 s of CPU here: a third of a fine-tune's push. Hashing
 * the file's pages where they lie, through a read-only mapping, avoids the copy.
 * A mapping has one hazard: when the file shrinks meanwhile (another program
 * truncates or rewrites it), touching a page past its new end raises SIGBUS,
 * which would end the process. hash_mapped and copy_mapped read under a guard:
 * a SIGBUS raised in the calling thread while it is inside them makes them
 * return False ("the file changed while being read"). Any other SIGBUS goes on
 * to the handler that was installed before ours (the default one ends the
 * process as it always did; faulthandler prints its traceback first).
 *
 * The handler is (re)installed by each guarded call when another one replaced
 * it, so a faulthandler enabled later does not disarm the guard.
 */
#if MK_GUARD
static __thread sigjmp_buf *guard __attribute__((tls_model("initial-exec")));
static struct sigaction chained; /* the SIGBUS action before ours */
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_sigbus(int sig, siginfo_t *info, void *ctx)
{
    sigjmp_buf *g = guard;
    if (g != NULL) {
        guard = NULL;
        siglongjmp(*g, 1); /* restores the signal mask saved by sigsetjmp */
    }
    /* Not a guarded read: give the signal to the action before ours. A fault
     * repeats when this returns and goes there; a sent signal is sent again. */
    sigaction(SIGBUS, &chained, NULL);
    if (info == NULL || info->si_code <= 0)
        raise(sig);
    (void)ctx;
}

static int install_guard(void)
{
    struct sigaction cur;
    int rc;
    pthread_mutex_lock(&install_lock);
    rc = sigaction(SIGBUS, NULL, &cur);
    if (rc == 0 && !((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_sigbus)) {
        struct sigaction mine;
        memset(&mine, 0, sizeof mine);
        mine.sa_sigaction = on_sigbus;
        mine.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&mine.sa_mask);
        rc = sigaction(SIGBUS, &mine, &chained);
    }
    pthread_mutex_unlock(&install_lock);
    return rc;
}

/* fn(arg) with SIGBUS in this thread caught: 0, or -1 when the mapping faulted. */
static int guarded(void (*fn)(void *), void *arg)
{
    sigjmp_buf env;
    if (sigsetjmp(env, 1))
        return -1;
    guard = &env;
    fn(arg);
    guard = NULL;
    return 0;
}

struct copy_args {
    void *dst;
    const void *src;
    size_t n;
};

static void do_copy(void *p)
{
    struct copy_args *a = p;
    memcpy(a->dst, a->src, a->n);
}

#if MK_X86
struct hash_args {
    const uint8_t *src;
    size_t len, count;
    uint8_t *out;
};

static void do_hash(void *p)
{
    struct hash_args *a = p;
    hash_equal_n(a->src, a->len, a->count, a->out);
}
#endif

static PyObject *lanes_hash_mapped(PyObject *self, PyObject *args)
{
    Py_buffer src, out;
    Py_ssize_t len, count;
    if (equal_args(args, &src, &len, &count, &out) < 0)
        return NULL;
    PyObject *ret = NULL;
    if (install_guard() != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
    } else {
        int rc = 0;
#if MK_X86
        struct hash_args a = {(const uint8_t *)src.buf, (size_t)len, (size_t)count, (uint8_t *)out.buf};
        Py_BEGIN_ALLOW_THREADS
        rc = guarded(do_hash, &a);
        Py_END_ALLOW_THREADS
#endif
        ret = PyBool_FromLong(rc == 0);
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&out);
    return ret;
}

#define COPY_WITHOUT_LOCK (1 << 20)

static PyObject *lanes_copy_mapped(PyObject *self, PyObject *args)
{
    Py_buffer dst, src;
    if (!PyArg_ParseTuple(args, "w*y*", &dst, &src))
        return NULL;
    PyObject *ret = NULL;
    if (dst.len < src.len) {
        PyErr_SetString(PyExc_ValueError, "destination is shorter than the source");
    } else if (install_guard() != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
    } else {
        struct copy_args a = {dst.buf, src.buf, (size_t)src.len};
        int rc;
        if (src.len < COPY_WITHOUT_LOCK) {
            rc = guarded(do_copy, &a); /* a chunk: quicker than giving the lock up and waiting for it */
        } else {
            Py_BEGIN_ALLOW_THREADS
            rc = guarded(do_copy, &a);
            Py_END_ALLOW_THREADS
        }
        ret = PyBool_FromLong(rc == 0);
    }
    PyBuffer_Release(&dst);
    PyBuffer_Release(&src);
    return ret;
}
#endif

static PyObject *lanes_available_py(PyObject *self, PyObject *args)
{
    return PyBool_FromLong(lanes_available());
}

static PyMethodDef methods[] = {
    {"hash_equal", lanes_hash_equal, METH_VARARGS,
     "hash_equal(src, length, count, out): BLAKE3 of count consecutive chunks of length bytes, 32 bytes each into out"},
    {"hash_list", lanes_hash_list, METH_VARARGS,
     "hash_list(buffers, out): BLAKE3 of each of equally long buffers, 32 bytes each into out"},
#if MK_GUARD
    {"hash_mapped", lanes_hash_mapped, METH_VARARGS,
     "hash_mapped(src, length, count, out) -> bool: hash_equal of a file's mapping; False if the file shrank under it"},
    {"copy_mapped", lanes_copy_mapped, METH_VARARGS,
     "copy_mapped(dst, src) -> bool: dst[:len(src)] = src from a file's mapping; False if the file shrank under it"},
#endif
    {"available", lanes_available_py, METH_NOARGS, "available() -> bool: whether this CPU can run hash_equal"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_lanes", NULL, -1, methods};

PyMODINIT_FUNC PyInit__lanes(void) { return PyModule_Create(&module); }
