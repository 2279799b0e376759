/* Byte-plane grouping of float tensor data, the hot loop of the PLANES codec.
 *
 *   shuffle(src, elem, dst)      dst[j*n + i] = src[i*elem + j]
 *   unshuffle(planes, dst)       dst[i*elem + j] = planes[j][i]
 *   decode_run(blob, desc, out)  decode a run of stored chunks (codec.py's layout)
 *   can_decode_run() -> bool     whether decode_run has zstd to work with
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

static PyObject *planes_can_decode_run(PyObject *self, PyObject *args) { return PyBool_FromLong(zstd_load()); }

static PyMethodDef methods[] = {
    {"shuffle", planes_shuffle, METH_VARARGS, "shuffle(src, elem, dst): group the bytes of elements by significance"},
    {"unshuffle", planes_unshuffle, METH_VARARGS, "unshuffle(planes, dst): interleave byte planes back into elements"},
    {"decode_run", planes_decode_run, METH_VARARGS,
     "decode_run(blob, desc, out): decode chunks back to back into out; None, or (index, reason) of the first bad one"},
    {"can_decode_run", planes_can_decode_run, METH_NOARGS, "can_decode_run() -> bool: whether libzstd was found"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_planes", NULL, -1, methods};

PyMODINIT_FUNC PyInit__planes(void) { return PyModule_Create(&module); }
