/* Optional compiled routines for anyws; anyws/_frames.py has the pure-Python
 * equivalents and uses them when this module was not built. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

PyDoc_STRVAR(apply_mask_doc,
"apply_mask(data, mask, prefix=b'', /)\n--\n\n"
"Return data XORed with the 4-byte mask repeated (RFC 6455 section 5.3),\n"
"after prefix: a frame's header and masking key, say, in one allocation.");

static PyObject *
apply_mask(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, mask, prefix = {NULL};
    PyObject *result = NULL;

    if (nargs != 2 && nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "apply_mask() takes 2 or 3 arguments");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &mask, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (nargs == 3 && PyObject_GetBuffer(args[2], &prefix, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&mask);
        return NULL;
    }
    if (mask.len != 4) {
        PyErr_SetString(PyExc_ValueError, "mask must contain 4 bytes");
        goto exit;
    }
    if (data.len > PY_SSIZE_T_MAX - prefix.len) {
        PyErr_NoMemory();
        goto exit;
    }
    result = PyBytes_FromStringAndSize(NULL, prefix.len + data.len);
    if (result == NULL) {
        goto exit;
    }
    if (prefix.len) {
        memcpy(PyBytes_AS_STRING(result), prefix.buf, prefix.len);
    }

    const unsigned char *in = (const unsigned char *)data.buf;
    const unsigned char *key = (const unsigned char *)mask.buf;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result) + prefix.len;
    Py_ssize_t length = data.len, i = 0;

    /* Eight bytes at a time: the mask repeated twice fills a 64-bit word, and the
     * word loop is simple enough for the compiler to vectorise. */
    unsigned char wide[8];
    uint64_t key64;
    for (int j = 0; j < 8; j++) {
        wide[j] = key[j & 3];
    }
    memcpy(&key64, wide, 8);
    for (; i + 8 <= length; i += 8) {
        uint64_t word;
        memcpy(&word, in + i, 8);
        word ^= key64;
        memcpy(out + i, &word, 8);
    }
    for (; i < length; i++) {
        out[i] = in[i] ^ key[i & 3];
    }

exit:
    PyBuffer_Release(&data);
    PyBuffer_Release(&mask);
    if (prefix.obj != NULL) {
        PyBuffer_Release(&prefix);
    }
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL,
     apply_mask_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    "anyws._speedups",
    "Optional compiled routines for anyws.",
    -1,
    speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&speedups_module);
}
