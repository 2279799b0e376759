/* Byte-plane grouping of float tensor data, the hot loop of the PLANES codec.
 *
 *   shuffle(src, elem, dst)      dst[j*n + i] = src[i*elem + j]
 *   unshuffle(planes, dst)       dst[i*elem + j] = planes[j][i]
 *
 * n is the number of whole elements; elem is 2, 4 or 8. Both release the GIL.
 * modelkeep/store/planes.py wraps them and falls back to numpy when this module
 * was not built (no C compiler at install time): same results, slower.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
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

static PyMethodDef methods[] = {
    {"shuffle", planes_shuffle, METH_VARARGS, "shuffle(src, elem, dst): group the bytes of elements by significance"},
    {"unshuffle", planes_unshuffle, METH_VARARGS, "unshuffle(planes, dst): interleave byte planes back into elements"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_planes", NULL, -1, methods};

PyMODINIT_FUNC PyInit__planes(void) { return PyModule_Create(&module); }
