/* Byte-plane grouping of float tensor data, the hot loop of the PLANES codec.
 *
 *   shuffle(src, elem, dst)      dst[j*n + i] = src[i*elem + j]
 *   unshuffle(planes, dst)       dst[i*elem + j] = planes[j][i]
 *   shuffle_many(items)          shuffle(src, elem, dst) for each (src, elem, dst), in one call
 *   decode_run(blob, desc, out)  decode a run of stored chunks (codec.py's layout)
 *   can_decode_run() -> bool     whether decode_run has zstd to work with
 *   nib4_encode(planes), nib4_decode(src, dst)   the nib4 plane method (below)
 *   gather(dst, offset, parts) -> (end, count)   copy whole parts back to back into dst
 *
 * n is the number of whole elements; elem is 2, 4 or 8. All release the GIL.
 * modelkeep/store/planes.py and codec.py wrap them and fall back to numpy and
 * python-zstandard when this module was not built (no C compiler at install
 * time), or when libzstd is not on the system: same results, slower.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Blocks of elements small enough that src and the planes stay in L1/L2. */
#define TILE 4096

static void shuffle_n(const uint8_t *restrict src, uint8_t *restrict dst, Py_ssize_t n, int e)
{
    for (Py_ssize_t b = 0; b < n; b += TILE) {
        Py_ssize_t m = n - b < TILE ? n - b : TILE;
        const uint8_t *s = src + b * e;
        switch (e) {
        case 2: {
            uint8_t *restrict d0 = dst + b, *restrict d1 = dst + n + b;
            for (Py_ssize_t i = 0; i < m; i++) {
                d0[i] = s[2 * i];
                d1[i] = s[2 * i + 1];
            }
            break;
        }
        case 4: {
            uint8_t *restrict d0 = dst + b, *restrict d1 = dst + n + b;
            uint8_t *restrict d2 = dst + 2 * n + b, *restrict d3 = dst + 3 * n + b;
            for (Py_ssize_t i = 0; i < m; i++) {
                uint32_t v;
                memcpy(&v, s + 4 * i, 4);
                d0[i] = (uint8_t)v;
                d1[i] = (uint8_t)(v >> 8);
                d2[i] = (uint8_t)(v >> 16);
                d3[i] = (uint8_t)(v >> 24);
            }
            break;
        }
        case 8: {
            uint8_t *restrict d[8];
            for (int j = 0; j < 8; j++)
                d[j] = dst + (Py_ssize_t)j * n + b;
            for (Py_ssize_t i = 0; i < m; i++) {
                uint64_t v;
                memcpy(&v, s + 8 * i, 8);
                for (int j = 0; j < 8; j++)
                    d[j][i] = (uint8_t)(v >> (8 * j));
            }
            break;
        }
        default:
            for (int j = 0; j < e; j++) {
                uint8_t *restrict d = dst + (Py_ssize_t)j * n + b;
                for (Py_ssize_t i = 0; i < m; i++)
                    d[i] = s[(Py_ssize_t)e * i + j];
            }
        }
    }
}

static void unshuffle_n(const uint8_t **planes, uint8_t *restrict dst, Py_ssize_t n, int e)
{
    switch (e) {
    case 2: {
        const uint8_t *restrict p0 = planes[0], *restrict p1 = planes[1];
        for (Py_ssize_t i = 0; i < n; i++) {
            dst[2 * i] = p0[i];
            dst[2 * i + 1] = p1[i];
        }
        break;
    }
    case 4: {
        const uint8_t *restrict p0 = planes[0], *restrict p1 = planes[1];
        const uint8_t *restrict p2 = planes[2], *restrict p3 = planes[3];
        for (Py_ssize_t i = 0; i < n; i++) {
            uint32_t v = (uint32_t)p0[i] | (uint32_t)p1[i] << 8 | (uint32_t)p2[i] << 16 | (uint32_t)p3[i] << 24;
            memcpy(dst + 4 * i, &v, 4);
        }
        break;
    }
    case 8:
        for (Py_ssize_t i = 0; i < n; i++) {
            uint64_t v = 0;
            for (int j = 0; j < 8; j++)
                v |= (uint64_t)planes[j][i] << (8 * j);
            memcpy(dst + 8 * i, &v, 8);
        }
        break;
    default:
        for (Py_ssize_t b = 0; b < n; b += TILE) {
            Py_ssize_t m = n - b < TILE ? n - b : TILE;
            for (int j = 0; j < e; j++) {
                const uint8_t *restrict p = planes[j] + b;
                uint8_t *restrict d = dst + b * e + j;
                for (Py_ssize_t i = 0; i < m; i++)
                    d[(Py_ssize_t)e * i] = p[i];
            }
        }
    }
}

static int check_elem(long e)
{
    if (e != 2 && e != 4 && e != 8) {
        PyErr_SetString(PyExc_ValueError, "element size must be 2, 4 or 8");
        return 0;
    }
    return 1;
}

static PyObject *planes_shuffle(PyObject *self, PyObject *args)
{
    Py_buffer src, dst;
    long e;
    if (!PyArg_ParseTuple(args, "y*lw*", &src, &e, &dst))
        return NULL;
    PyObject *res = NULL;
    if (!check_elem(e))
        goto done;
    if (src.len % e) {
        PyErr_SetString(PyExc_ValueError, "source is not a whole number of elements");
        goto done;
    }
    if (dst.len < src.len) {
        PyErr_SetString(PyExc_ValueError, "destination is shorter than the source");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    shuffle_n((const uint8_t *)src.buf, (uint8_t *)dst.buf, src.len / e, (int)e);
    Py_END_ALLOW_THREADS
    res = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return res;
}

static PyObject *planes_shuffle_many(PyObject *self, PyObject *args)
{
    PyObject *seq;
    if (!PyArg_ParseTuple(args, "O", &seq))
        return NULL;
    PyObject *fast = PySequence_Fast(seq, "shuffle_many takes a sequence of (src, elem, dst)"), *res = NULL;
    if (fast == NULL)
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(fast), got = 0;
    Py_buffer *views = PyMem_Calloc(2 * (size_t)count + 2, sizeof *views);
    int *elems = PyMem_Calloc((size_t)count + 1, sizeof *elems);
    if (views == NULL || elems == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; got < count; got++) {
        long e;
        PyObject *src, *dst;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, got), "OlO", &src, &e, &dst) || !check_elem(e))
            goto done;
        if (PyObject_GetBuffer(src, &views[2 * got], PyBUF_SIMPLE) < 0)
            goto done;
        if (PyObject_GetBuffer(dst, &views[2 * got + 1], PyBUF_WRITABLE) < 0) {
            PyBuffer_Release(&views[2 * got]);
            goto done;
        }
        elems[got] = (int)e;
        if (views[2 * got].len % e || views[2 * got + 1].len < views[2 * got].len) {
            got++;
            PyErr_SetString(PyExc_ValueError, "a source is not whole elements, or its destination is shorter");
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++)
        shuffle_n((const uint8_t *)views[2 * i].buf, (uint8_t *)views[2 * i + 1].buf,
                  views[2 * i].len / elems[i], elems[i]);
    Py_END_ALLOW_THREADS
    res = Py_NewRef(Py_None);
done:
    for (Py_ssize_t i = 0; i < got; i++) {
        PyBuffer_Release(&views[2 * i]);
        PyBuffer_Release(&views[2 * i + 1]);
    }
    PyMem_Free(views);
    PyMem_Free(elems);
    Py_DECREF(fast);
    return res;
}

static PyObject *planes_unshuffle(PyObject *self, PyObject *args)
{
    PyObject *seq;
    Py_buffer dst;
    if (!PyArg_ParseTuple(args, "Ow*", &seq, &dst))
        return NULL;
    PyObject *res = NULL;
    Py_buffer views[8];
    const uint8_t *ptrs[8];
    Py_ssize_t got = 0, e = PySequence_Size(seq);
    if (e < 0)
        goto done;
    if (!check_elem((long)e))
        goto done;
    Py_ssize_t n = dst.len / e;
    if (n * e != dst.len) {
        PyErr_SetString(PyExc_ValueError, "destination is not a whole number of elements");
        goto done;
    }
    for (; got < e; got++) {
        PyObject *item = PySequence_GetItem(seq, got);
        if (item == NULL)
            goto done;
        int bad = PyObject_GetBuffer(item, &views[got], PyBUF_SIMPLE);
        Py_DECREF(item);
        if (bad)
            goto done;
        if (views[got].len != n) {
            got++;
            PyErr_SetString(PyExc_ValueError, "a plane has the wrong length");
            goto done;
        }
        ptrs[got] = (const uint8_t *)views[got].buf;
    }
    Py_BEGIN_ALLOW_THREADS
    unshuffle_n(ptrs, (uint8_t *)dst.buf, n, (int)e);
    Py_END_ALLOW_THREADS
    res = Py_NewRef(Py_None);
done:
    for (Py_ssize_t i = 0; i < got; i++)
        PyBuffer_Release(&views[i]);
    PyBuffer_Release(&dst);
    return res;
}

/* -- the nib4 plane method -------------------------------------------------------------
 *
 * The sign/exponent plane of trained float weights takes a handful of values
 * (~3 bits of entropy per byte). nib4 stores the plane as 4-bit codes into a
 * table of its (up to) 15 most frequent values, code 15 meaning "the next
 * escape byte"; zstd's entropy coder gets ~30 % fewer bytes but costs ~5x the
 * time. Layout:
 *
 *     u8 k | k table bytes | u32 escapes | ceil(n/2) code bytes (low nibble first) | escape bytes
 *
 * A plane with more than n/64 escapes is not encoded this way (NIB4_NO).
 */

#define NIB4_NO ((size_t)-1)
#define NIB4_MAX_N (512 * 1024) /* planes up to this long pack without branches */

typedef struct {
    uint8_t k, table[15], code[256];
    size_t escapes;
} nib4_plan;

/* The table of a plane and the size of its encoding, or NIB4_NO. */
static size_t nib4_prepare(const uint8_t *src, size_t n, nib4_plan *p)
{
    /* four histograms: runs of one value would otherwise wait on each increment */
    uint32_t c4[4][256] = {{0}};
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        c4[0][src[i]]++;
        c4[1][src[i + 1]]++;
        c4[2][src[i + 2]]++;
        c4[3][src[i + 3]]++;
    }
    for (; i < n; i++)
        c4[0][src[i]]++;
    /* the values present, then the 15 most frequent (ties: the smaller value) */
    size_t count[256];
    int present[256], m = 0;
    for (int v = 0; v < 256; v++) {
        count[v] = (size_t)c4[0][v] + c4[1][v] + c4[2][v] + c4[3][v];
        if (count[v])
            present[m++] = v;
    }
    size_t covered = 0;
    p->k = 0;
    memset(p->code, 15, sizeof p->code);
    for (int slot = 0; slot < 15 && slot < m; slot++) {
        int best = slot;
        for (int j = slot + 1; j < m; j++)
            if (count[present[j]] > count[present[best]])
                best = j;
        int v = present[best];
        present[best] = present[slot];
        present[slot] = v;
        p->table[p->k] = (uint8_t)v;
        p->code[v] = p->k++;
        covered += count[v];
    }
    p->escapes = n - covered;
    if (p->escapes > n / 64)
        return NIB4_NO;
    return 1 + p->k + 4 + (n + 1) / 2 + p->escapes;
}

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define NIB4_SIMD 1
#define NIB4_TARGET __attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vbmi2,popcnt")))

static int simd_ok = -1;

static int nib4_simd(void)
{
    if (simd_ok < 0) {
        __builtin_cpu_init();
        simd_ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vbmi2");
    }
    return simd_ok;
}

/* Codes of 64 bytes at once: a 256-entry table lookup as two 128-entry ones. */
NIB4_TARGET static size_t nib4_pack64(const uint8_t *src, size_t n, const uint8_t code[256], uint8_t *codes,
                                      uint8_t *esc)
{
    __m512i t0 = _mm512_loadu_si512((const void *)code), t1 = _mm512_loadu_si512((const void *)(code + 64));
    __m512i t2 = _mm512_loadu_si512((const void *)(code + 128)), t3 = _mm512_loadu_si512((const void *)(code + 192));
    __m512i fifteen = _mm512_set1_epi8(15), low = _mm512_set1_epi16(0x000F), high = _mm512_set1_epi16(0x00F0);
    uint8_t *start = esc;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512i v = _mm512_loadu_si512((const void *)(src + i));
        __m512i lo = _mm512_permutex2var_epi8(t0, v, t1), hi = _mm512_permutex2var_epi8(t2, v, t3);
        __m512i c = _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), lo, hi);
        __mmask64 e = _mm512_cmpeq_epi8_mask(c, fifteen);
        if (e) {
            _mm512_mask_compressstoreu_epi8(esc, e, v);
            esc += _mm_popcnt_u64(e);
        }
        /* 16-bit lanes hold an even code (low byte) and an odd one (high byte) */
        __m512i packed = _mm512_or_si512(_mm512_and_si512(c, low), _mm512_and_si512(_mm512_srli_epi16(c, 4), high));
        _mm256_storeu_si256((__m256i *)(codes + i / 2), _mm512_cvtepi16_epi8(packed));
    }
    return (size_t)(esc - start) | i << 32; /* escapes written, bytes done */
}

/* The reverse: 64 bytes at a time while no escape lies among them. */
NIB4_TARGET static size_t nib4_unpack64(const uint8_t *codes, size_t n, const uint8_t lut[16], const uint8_t *esc,
                                        const uint8_t *esc_end, uint8_t k, uint8_t *dst)
{
    __m512i table = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)lut));
    __m512i nib = _mm512_set1_epi16(0x0F), fifteen = _mm512_set1_epi8(15), kk = _mm512_set1_epi8((char)k);
    const uint8_t *e0 = esc;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512i w = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(codes + i / 2)));
        /* byte 2j = low nibble, byte 2j+1 = high nibble of code byte j */
        __m512i c = _mm512_or_si512(_mm512_and_si512(w, nib), _mm512_slli_epi16(_mm512_srli_epi16(w, 4), 8));
        __mmask64 e = _mm512_cmpeq_epi8_mask(c, fifteen);
        __mmask64 bad = _mm512_cmpge_epu8_mask(c, kk) & ~e;
        if (bad || (size_t)_mm_popcnt_u64(e) > (size_t)(esc_end - esc))
            break; /* the scalar loop reports it */
        __m512i out = _mm512_permutexvar_epi8(c, table);
        if (e) {
            out = _mm512_mask_expandloadu_epi8(out, e, esc);
            esc += _mm_popcnt_u64(e);
        }
        _mm512_storeu_si512((void *)(dst + i), out);
    }
    return (size_t)(esc - e0) | i << 32;
}
#endif

static void nib4_pack(const uint8_t *src, size_t n, const nib4_plan *p, uint8_t *out)
{
    *out++ = p->k;
    memcpy(out, p->table, p->k);
    out += p->k;
    uint32_t e = (uint32_t)p->escapes;
    out[0] = (uint8_t)e, out[1] = (uint8_t)(e >> 8), out[2] = (uint8_t)(e >> 16), out[3] = (uint8_t)(e >> 24);
    out += 4;
    uint8_t *codes = out, *esc_out = out + (n + 1) / 2;
    const uint8_t *code = p->code;
    /* Without branches: every byte is written to the escape buffer, which only
     * advances past escapes (at most n/64 of them, checked by nib4_prepare). */
    uint8_t spill[NIB4_MAX_N / 64 + 2];
    size_t i = 0;
#ifdef NIB4_SIMD
    if (nib4_simd()) {
        size_t r = nib4_pack64(src, n, code, codes, esc_out);
        esc_out += r & 0xFFFFFFFFu;
        i = r >> 32;
    }
#endif
    uint8_t *esc = n <= NIB4_MAX_N ? spill : esc_out;
    if (esc == spill) {
        for (; i + 1 < n; i += 2) {
            uint8_t x = src[i], y = src[i + 1], a = code[x], b = code[y];
            codes[i >> 1] = (uint8_t)(a | b << 4);
            *esc = x;
            esc += a == 15;
            *esc = y;
            esc += b == 15;
        }
        if (i < n) {
            uint8_t x = src[i], a = code[x];
            codes[i >> 1] = a;
            *esc = x;
            esc += a == 15;
        }
        memcpy(esc_out, spill, (size_t)(esc - spill));
        return;
    }
    for (; i < n; i++) { /* planes longer than any chunk's: the plain loop */
        uint8_t x = src[i], a = code[x];
        if (i & 1)
            codes[i >> 1] |= (uint8_t)(a << 4);
        else
            codes[i >> 1] = a;
        if (a == 15)
            *esc++ = x;
    }
}

/* Decode exactly n bytes into dst; NULL or why not. */
static const char *nib4_unpack(const uint8_t *src, size_t len, size_t n, uint8_t *dst)
{
    if (len < 1)
        return "truncated nib4 plane";
    size_t k = src[0];
    if (k > 15 || len < 1 + k + 4)
        return "bad nib4 table";
    const uint8_t *table = src + 1;
    const uint8_t *q = src + 1 + k;
    size_t escapes = q[0] | q[1] << 8 | q[2] << 16 | (size_t)q[3] << 24;
    const uint8_t *codes = q + 4;
    if (len != 1 + k + 4 + (n + 1) / 2 + escapes)
        return "nib4 plane has the wrong length";
    const uint8_t *esc = codes + (n + 1) / 2, *esc_end = esc + escapes;
    uint8_t lut[16];
    memcpy(lut, table, k);
    memset(lut + k, 0, 16 - k);
    size_t i = 0;
#ifdef NIB4_SIMD
    if (nib4_simd()) {
        size_t r = nib4_unpack64(codes, n, lut, esc, esc_end, (uint8_t)k, dst);
        esc += r & 0xFFFFFFFFu;
        i = r >> 32;
    }
#endif
    if (escapes == 0) { /* the common case: a table lookup per nibble, no branch */
        for (uint8_t c; i + 1 < n; i += 2) {
            c = codes[i >> 1];
            if ((c & 15) >= k || (c >> 4) >= k)
                return "bad nib4 code";
            dst[i] = lut[c & 15];
            dst[i + 1] = lut[c >> 4];
        }
    }
    for (; i < n; i++) {
        uint8_t c = i & 1 ? codes[i >> 1] >> 4 : codes[i >> 1] & 15;
        if (c < k)
            dst[i] = lut[c];
        else if (c == 15 && esc < esc_end)
            dst[i] = *esc++;
        else
            return "bad nib4 code";
    }
    return esc == esc_end ? NULL : "nib4 escapes left over";
}

static PyObject *planes_nib4_encode(PyObject *self, PyObject *args)
{
    PyObject *seq;
    if (!PyArg_ParseTuple(args, "O", &seq))
        return NULL;
    PyObject *fast = PySequence_Fast(seq, "planes must be a sequence"), *res = NULL;
    if (fast == NULL)
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(fast), got = 0;
    Py_buffer *views = PyMem_Calloc((size_t)count + 1, sizeof *views);
    nib4_plan *plans = PyMem_Calloc((size_t)count + 1, sizeof *plans);
    size_t *sizes = PyMem_Calloc((size_t)count + 1, sizeof *sizes);
    uint8_t **outs = PyMem_Calloc((size_t)count + 1, sizeof *outs);
    if (views == NULL || plans == NULL || sizes == NULL || outs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; got < count; got++)
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(fast, got), &views[got], PyBUF_SIMPLE) < 0)
            goto done;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++)
        sizes[i] = nib4_prepare((const uint8_t *)views[i].buf, (size_t)views[i].len, &plans[i]);
    Py_END_ALLOW_THREADS
    if ((res = PyList_New(count)) == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item;
        if (sizes[i] == NIB4_NO) {
            item = Py_NewRef(Py_None);
        } else {
            item = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)sizes[i]);
            if (item == NULL) {
                Py_CLEAR(res);
                goto done;
            }
            outs[i] = (uint8_t *)PyBytes_AS_STRING(item);
        }
        PyList_SET_ITEM(res, i, item);
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++)
        if (outs[i] != NULL)
            nib4_pack((const uint8_t *)views[i].buf, (size_t)views[i].len, &plans[i], outs[i]);
    Py_END_ALLOW_THREADS
done:
    for (Py_ssize_t i = 0; i < got; i++)
        PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    PyMem_Free(plans);
    PyMem_Free(sizes);
    PyMem_Free(outs);
    Py_DECREF(fast);
    return res;
}

static PyObject *planes_nib4_decode(PyObject *self, PyObject *args)
{
    Py_buffer src, dst;
    if (!PyArg_ParseTuple(args, "y*w*", &src, &dst))
        return NULL;
    const char *why;
    Py_BEGIN_ALLOW_THREADS
    why = nib4_unpack((const uint8_t *)src.buf, (size_t)src.len, (size_t)dst.len, (uint8_t *)dst.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    if (why != NULL) {
        PyErr_SetString(PyExc_ValueError, why);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* -- decoding a run of chunks ---------------------------------------------------------
 *
 * A pull decodes every chunk of a file: one Python call per chunk gives up and
 * retakes the interpreter lock several times per 64 KiB, which stalls when the
 * other pull thread runs Python. decode_run does a whole run of chunks (back to
 * back in a pack) in one call. It checks every length as codec.py does; zstd
 * comes from the system's libzstd (its stable API, loaded at run time, so the
 * build needs no zstd headers).
 */

typedef struct ZSTD_DCtx_s ZSTD_DCtx;
static ZSTD_DCtx *(*zstd_create)(void);
static size_t (*zstd_decompress)(ZSTD_DCtx *, void *, size_t, const void *, size_t);
static unsigned (*zstd_is_error)(size_t);
static int zstd_state = -1; /* -1 not tried, 0 missing, 1 loaded */

static int zstd_load(void) /* with the GIL held */
{
    if (zstd_state < 0) {
        void *lib = dlopen("libzstd.so.1", RTLD_NOW | RTLD_LOCAL);
        if (lib != NULL) {
            *(void **)&zstd_create = dlsym(lib, "ZSTD_createDCtx");
            *(void **)&zstd_decompress = dlsym(lib, "ZSTD_decompressDCtx");
            *(void **)&zstd_is_error = dlsym(lib, "ZSTD_isError");
        }
        zstd_state = lib != NULL && zstd_create && zstd_decompress && zstd_is_error;
    }
    return zstd_state;
}

/* Per thread: a decompression context and room for the planes of one chunk. */
static __thread ZSTD_DCtx *tl_dctx;
static __thread uint8_t *tl_planes;
static __thread size_t tl_planes_len;

enum { RAW = 0, ZSTD = 1, PLANES = 2 };

static uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

/* Decode one chunk of ``stored`` bytes into exactly ``raw`` bytes; NULL or why not. */
static const char *decode_one(const uint8_t *src, size_t stored, int kind, uint8_t *dst, size_t raw)
{
    if (kind == RAW) {
        if (stored != raw)
            return "stored length differs from the chunk length";
        memcpy(dst, src, raw);
        return NULL;
    }
    if (tl_dctx == NULL && (tl_dctx = zstd_create()) == NULL)
        return "out of memory";
    if (kind == ZSTD) {
        size_t r = zstd_decompress(tl_dctx, dst, raw, src, stored);
        return zstd_is_error(r) || r != raw ? "zstd frame does not decode to the chunk" : NULL;
    }
    if (kind != PLANES)
        return "unknown chunk codec";
    if (stored < 3)
        return "truncated plane header";
    size_t e = src[0], head = src[1], tail = src[2];
    if (e != 2 && e != 4 && e != 8)
        return "bad plane header";
    size_t pos = 3 + 5 * e;
    if (head >= e || tail >= e || raw < head + tail || (raw - head - tail) % e)
        return "plane sizes do not add up";
    size_t n = (raw - head - tail) / e;
    if (pos + head > stored)
        return "truncated plane header";
    memcpy(dst, src + pos, head);
    pos += head;
    if (tl_planes_len < raw) {
        uint8_t *p = realloc(tl_planes, raw);
        if (p == NULL)
            return "out of memory";
        tl_planes = p;
        tl_planes_len = raw;
    }
    const uint8_t *planes[8];
    for (size_t j = 0; j < e; j++) {
        int method = src[3 + 5 * j];
        size_t len = le32(src + 4 + 5 * j);
        if (len > stored - pos)
            return "truncated plane";
        if (method == 0) {
            if (len != n)
                return "plane has the wrong length";
            planes[j] = src + pos;
        } else if (method == 1) {
            size_t r = zstd_decompress(tl_dctx, tl_planes + j * n, n, src + pos, len);
            if (zstd_is_error(r) || r != n)
                return "plane does not decode to its length";
            planes[j] = tl_planes + j * n;
        } else if (method == 2) {
            const char *why = nib4_unpack(src + pos, len, n, tl_planes + j * n);
            if (why != NULL)
                return why;
            planes[j] = tl_planes + j * n;
        } else {
            return "bad plane method";
        }
        pos += len;
    }
    if (pos + tail != stored)
        return "trailing bytes after planes";
    unshuffle_n(planes, dst + head, (Py_ssize_t)n, (int)e);
    memcpy(dst + head + n * e, src + pos, tail);
    return NULL;
}

static PyObject *planes_decode_run(PyObject *self, PyObject *args)
{
    Py_buffer blob, desc, out;
    if (!PyArg_ParseTuple(args, "y*y*w*", &blob, &desc, &out))
        return NULL;
    PyObject *res = NULL;
    if (!zstd_load()) {
        PyErr_SetString(PyExc_RuntimeError, "libzstd.so.1 is not available");
        goto done;
    }
    if (desc.len % 16) {
        PyErr_SetString(PyExc_ValueError, "descriptors are 4 uint32 per chunk: offset, stored, codec, raw");
        goto done;
    }
    Py_ssize_t count = desc.len / 16, bad = -1;
    const char *why = NULL;
    Py_BEGIN_ALLOW_THREADS
    const uint8_t *d = (const uint8_t *)desc.buf;
    size_t at_out = 0;
    for (Py_ssize_t i = 0; i < count; i++, d += 16) {
        size_t at = le32(d), stored = le32(d + 4), raw = le32(d + 12);
        int kind = (int)le32(d + 8);
        if (at > (size_t)blob.len || stored > (size_t)blob.len - at)
            why = "chunk lies outside the bytes read";
        else if (raw > (size_t)out.len - at_out)
            why = "chunks are longer than the output";
        else
            why = decode_one((const uint8_t *)blob.buf + at, stored, kind, (uint8_t *)out.buf + at_out, raw);
        if (why != NULL) {
            bad = i;
            break;
        }
        at_out += raw;
    }
    Py_END_ALLOW_THREADS
    res = bad < 0 ? Py_NewRef(Py_None) : Py_BuildValue("(ns)", bad, why);
done:
    PyBuffer_Release(&blob);
    PyBuffer_Release(&desc);
    PyBuffer_Release(&out);
    return res;
}

/* gather(dst, offset, parts) -> (end, count)
 *
 * Copies parts[0], parts[1], ... back to back into dst from offset, as many
 * whole parts as fit; returns the offset after the last one copied and how
 * many were. A pack's bytes are staged this way: slice assignments copy with
 * the interpreter lock held, one Python step per part, while the threads
 * hashing and encoding beside the packer wait for the lock. Here the copies of
 * a whole batch run in one call, without it.
 */
static PyObject *planes_gather(PyObject *self, PyObject *args)
{
    Py_buffer dst;
    Py_ssize_t off;
    PyObject *seq;
    if (!PyArg_ParseTuple(args, "w*nO", &dst, &off, &seq))
        return NULL;
    PyObject *fast = NULL, *res = NULL;
    Py_buffer *views = NULL;
    Py_ssize_t got = 0, end = off;
    if (off < 0 || off > dst.len) {
        PyErr_SetString(PyExc_ValueError, "offset outside the destination");
        goto done;
    }
    fast = PySequence_Fast(seq, "gather takes a sequence of buffers");
    if (fast == NULL)
        goto done;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(fast);
    views = PyMem_Calloc((size_t)count + 1, sizeof *views);
    if (views == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; got < count; got++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(fast, got), &views[got], PyBUF_SIMPLE) < 0)
            goto done;
        if (views[got].len > dst.len - end) { /* does not fit whole: stop before it */
            PyBuffer_Release(&views[got]);
            break;
        }
        end += views[got].len;
    }
    Py_BEGIN_ALLOW_THREADS
    uint8_t *at = (uint8_t *)dst.buf + off;
    for (Py_ssize_t i = 0; i < got; i++) {
        memcpy(at, views[i].buf, (size_t)views[i].len);
        at += views[i].len;
    }
    Py_END_ALLOW_THREADS
    res = Py_BuildValue("nn", end, got);
done:
    for (Py_ssize_t i = 0; i < got; i++)
        PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    Py_XDECREF(fast);
    PyBuffer_Release(&dst);
    return res;
}

static PyObject *planes_can_decode_run(PyObject *self, PyObject *args) { return PyBool_FromLong(zstd_load()); }

static PyMethodDef methods[] = {
    {"shuffle", planes_shuffle, METH_VARARGS, "shuffle(src, elem, dst): group the bytes of elements by significance"},
    {"shuffle_many", planes_shuffle_many, METH_VARARGS,
     "shuffle_many([(src, elem, dst), ...]): shuffle each, in one call"},
    {"unshuffle", planes_unshuffle, METH_VARARGS, "unshuffle(planes, dst): interleave byte planes back into elements"},
    {"decode_run", planes_decode_run, METH_VARARGS,
     "decode_run(blob, desc, out): decode chunks back to back into out; None, or (index, reason) of the first bad one"},
    {"nib4_encode", planes_nib4_encode, METH_VARARGS,
     "nib4_encode(planes) -> list: each plane's nib4 encoding, or None where too many bytes escape the table"},
    {"nib4_decode", planes_nib4_decode, METH_VARARGS, "nib4_decode(src, dst): decode one nib4 plane, filling dst"},
    {"gather", planes_gather, METH_VARARGS,
     "gather(dst, offset, parts) -> (end, count): copy as many whole parts as fit back to back into dst"},
    {"can_decode_run", planes_can_decode_run, METH_NOARGS, "can_decode_run() -> bool: whether libzstd was found"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_planes", NULL, -1, methods};

PyMODINIT_FUNC PyInit__planes(void) { return PyModule_Create(&module); }
