/*
 * ladle.online.redis._cluster_plan: the CPU part of a Redis Cluster read, in C.
 *
 * A cluster read of N random entities (ladle/online/redis/cluster_read.py) routes every row key to
 * the master serving its slot, frames one GET pipeline per master and, once the replies are in,
 * puts them back in request order. In Python that is ~20 us per 100-key read on a 2-vCPU VM, a
 * fifth of what the cluster's read costs beyond one server's (docs/redis.md). This module does the
 * same work in ~1-2 us. It is optional: cluster_read.py falls back to its own Python (the reference
 * the tests compare this against) when the module is not built, and whenever a request is outside
 * the fast path's contract (plan() returns None).
 *
 *   plan(prefix, suffixes, entity_lists, by_crc, masters)
 *       -> (used, payloads, counts, positions, total) | None
 *   place(total, positions, replies) -> (values, plain)
 *
 * Row keys are <prefix><entity><suffix> with prefix "{<project>:" and suffix "}:<view id>"
 * (ladle/online/redis/keys.py); the hash tag is "<project>:<entity>", so a key's slot is
 * CRC16(project ":" entity) % 16384, with CRC-16/XMODEM (binascii.crc_hqx). by_crc maps each raw
 * CRC (65,536 entries, one byte each) to a master's index.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static uint16_t crc_table[256];

static void
build_crc_table(void)
{
    for (int i = 0; i < 256; i++) {
        uint16_t crc = (uint16_t)(i << 8);
        for (int bit = 0; bit < 8; bit++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
        crc_table[i] = crc;
    }
}

static inline uint16_t
crc16(uint16_t crc, const unsigned char *data, Py_ssize_t size)
{
    for (Py_ssize_t i = 0; i < size; i++)
        crc = (uint16_t)((crc << 8) ^ crc_table[((crc >> 8) ^ data[i]) & 0xFF]);
    return crc;
}

/* Digits of a non-negative length, as RESP writes it. */
static inline Py_ssize_t
digits(Py_ssize_t n)
{
    Py_ssize_t d = 1;
    while (n >= 10) {
        n /= 10;
        d++;
    }
    return d;
}

static inline char *
write_len(char *at, Py_ssize_t n, Py_ssize_t width)
{
    for (Py_ssize_t i = width - 1; i >= 0; i--) {
        at[i] = (char)('0' + n % 10);
        n /= 10;
    }
    return at + width;
}

static const char GET_HEAD[] = "*2\r\n$3\r\nGET\r\n$";
#define GET_HEAD_LEN ((Py_ssize_t)(sizeof(GET_HEAD) - 1))

PyDoc_STRVAR(plan_doc,
"plan(prefix, suffixes, entity_lists, by_crc, masters)\n"
"--\n\n"
"Route and frame a cluster read of ``(suffix, entities)`` groups.\n\n"
"Returns ``(used, payloads, counts, positions, total)``: the masters written (ascending index),\n"
"each one's GET pipeline (all groups, in order) and how many replies it owes, the request\n"
"position of every reply master by master (native-endian uint32 in a bytes), and the number of\n"
"keys. Returns None when the request is outside the fast path: an entity that is not bytes, or a\n"
"'}' in the project or an entity (the hash tag would end early). Raises ValueError for a routing\n"
"table that is not 65,536 bytes or that names a master >= masters.");

static PyObject *
plan(PyObject *module, PyObject *args)
{
    Py_buffer prefix;
    PyObject *suffixes, *lists;
    Py_buffer table;
    Py_ssize_t masters;
    if (!PyArg_ParseTuple(args, "y*OOy*n", &prefix, &suffixes, &lists, &table, &masters))
        return NULL;

    PyObject *result = NULL;
    PyObject *sfast = NULL, *lfast = NULL;
    PyObject **fasts = NULL;   /* each group's entities as a fast sequence */
    uint8_t *route = NULL;     /* each key's master */
    Py_ssize_t *sizes = NULL;  /* per master: its pipeline's bytes */
    Py_ssize_t *keys = NULL;   /* per master: its keys */
    Py_ssize_t groups = 0;
    PyObject *used_list = NULL, *payloads = NULL, *counts = NULL, *positions = NULL, *total_obj = NULL;

    const unsigned char *pre = (const unsigned char *)prefix.buf;
    const uint8_t *by_crc = (const uint8_t *)table.buf;
    if (table.len != 65536) {
        PyErr_SetString(PyExc_ValueError, "by_crc must hold 65,536 entries");
        goto done;
    }
    if (masters < 1 || masters > 255) {
        PyErr_SetString(PyExc_ValueError, "masters must be 1..255");
        goto done;
    }
    if (prefix.len < 1 || pre[0] != '{') {
        PyErr_SetString(PyExc_ValueError, "prefix must start with '{'");
        goto done;
    }
    if (memchr(pre + 1, '}', (size_t)(prefix.len - 1)) != NULL) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    sfast = PySequence_Fast(suffixes, "suffixes must be a sequence");
    lfast = PySequence_Fast(lists, "entity_lists must be a sequence");
    if (sfast == NULL || lfast == NULL)
        goto done;
    groups = PySequence_Fast_GET_SIZE(lfast);
    if (PySequence_Fast_GET_SIZE(sfast) != groups) {
        PyErr_SetString(PyExc_ValueError, "one suffix per entity list");
        goto done;
    }
    fasts = PyMem_Calloc((size_t)(groups ? groups : 1), sizeof(PyObject *));
    if (fasts == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t total = 0;
    for (Py_ssize_t g = 0; g < groups; g++) {
        PyObject *suffix = PySequence_Fast_GET_ITEM(sfast, g);
        if (!PyBytes_Check(suffix)) {
            PyErr_SetString(PyExc_TypeError, "suffixes must be bytes");
            goto done;
        }
        fasts[g] = PySequence_Fast(PySequence_Fast_GET_ITEM(lfast, g), "each entity list must be a sequence");
        if (fasts[g] == NULL)
            goto done;
        total += PySequence_Fast_GET_SIZE(fasts[g]);
    }
    if (total > (Py_ssize_t)UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "too many keys for one read");
        goto done;
    }
    route = PyMem_Malloc((size_t)(total ? total : 1));
    sizes = PyMem_Calloc((size_t)masters, sizeof(Py_ssize_t));
    keys = PyMem_Calloc((size_t)masters, sizeof(Py_ssize_t));
    if (route == NULL || sizes == NULL || keys == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    uint16_t seed = crc16(0, pre + 1, prefix.len - 1);
    Py_ssize_t fixed = prefix.len + GET_HEAD_LEN + 4; /* + two CRLFs */

    /* Pass 1: each key's master, and each master's payload size and key count. */
    Py_ssize_t at = 0;
    for (Py_ssize_t g = 0; g < groups; g++) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(fasts[g]);
        PyObject **items = PySequence_Fast_ITEMS(fasts[g]);
        Py_ssize_t suf = PyBytes_GET_SIZE(PySequence_Fast_GET_ITEM(sfast, g));
        /* views of one request usually share one entity list: route it once (checked already) */
        int shared = g > 0 && fasts[g] == fasts[g - 1];
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *item = items[i];
            uint8_t k;
            if (shared) {
                k = route[at - n + i];
            } else {
                if (!PyBytes_Check(item) || memchr(PyBytes_AS_STRING(item), '}', (size_t)PyBytes_GET_SIZE(item))) {
                    result = Py_NewRef(Py_None);
                    goto done;
                }
                k = by_crc[crc16(seed, (const unsigned char *)PyBytes_AS_STRING(item), PyBytes_GET_SIZE(item))];
                if (k >= masters) {
                    PyErr_SetString(PyExc_ValueError, "by_crc names a master beyond masters");
                    goto done;
                }
            }
            Py_ssize_t size = PyBytes_GET_SIZE(item);
            Py_ssize_t len = prefix.len + size + suf;
            route[at + i] = k;
            sizes[k] += fixed + size + suf + digits(len);
            keys[k]++;
        }
        at += n;
    }

    /* Pass 2: fill each used master's pipeline and positions. */
    Py_ssize_t used = 0;
    for (Py_ssize_t k = 0; k < masters; k++)
        used += keys[k] > 0;
    used_list = PyList_New(used);
    payloads = PyList_New(used);
    counts = PyList_New(used);
    positions = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(total * 4));
    total_obj = PyLong_FromSsize_t(total);
    if (used_list == NULL || payloads == NULL || counts == NULL || positions == NULL || total_obj == NULL)
        goto fail;
    char **cursor = PyMem_Calloc((size_t)masters, sizeof(char *));
    uint32_t **slots = PyMem_Calloc((size_t)masters, sizeof(uint32_t *));
    if (cursor == NULL || slots == NULL) {
        PyMem_Free(cursor);
        PyMem_Free(slots);
        PyErr_NoMemory();
        goto fail;
    }
    uint32_t *pos = (uint32_t *)PyBytes_AS_STRING(positions);
    Py_ssize_t u = 0;
    for (Py_ssize_t k = 0; k < masters; k++) {
        if (!keys[k])
            continue;
        PyObject *payload = PyBytes_FromStringAndSize(NULL, sizes[k]);
        PyObject *index = PyLong_FromSsize_t(k);
        PyObject *count = PyLong_FromSsize_t(keys[k]);
        if (payload == NULL || index == NULL || count == NULL) {
            Py_XDECREF(payload);
            Py_XDECREF(index);
            Py_XDECREF(count);
            PyMem_Free(cursor);
            PyMem_Free(slots);
            goto fail;
        }
        PyList_SET_ITEM(used_list, u, index);
        PyList_SET_ITEM(payloads, u, payload);
        PyList_SET_ITEM(counts, u, count);
        cursor[k] = PyBytes_AS_STRING(payload);
        slots[k] = pos;
        pos += keys[k];
        u++;
    }
    at = 0;
    for (Py_ssize_t g = 0; g < groups; g++) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(fasts[g]);
        PyObject **items = PySequence_Fast_ITEMS(fasts[g]);
        PyObject *suffix = PySequence_Fast_GET_ITEM(sfast, g);
        const char *sbuf = PyBytes_AS_STRING(suffix);
        Py_ssize_t suf = PyBytes_GET_SIZE(suffix);
        for (Py_ssize_t i = 0; i < n; i++, at++) {
            uint8_t k = route[at];
            Py_ssize_t size = PyBytes_GET_SIZE(items[i]);
            Py_ssize_t len = prefix.len + size + suf;
            char *c = cursor[k];
            memcpy(c, GET_HEAD, (size_t)GET_HEAD_LEN);
            c = write_len(c + GET_HEAD_LEN, len, digits(len));
            *c++ = '\r';
            *c++ = '\n';
            memcpy(c, pre, (size_t)prefix.len);
            c += prefix.len;
            memcpy(c, PyBytes_AS_STRING(items[i]), (size_t)size);
            c += size;
            memcpy(c, sbuf, (size_t)suf);
            c += suf;
            *c++ = '\r';
            *c++ = '\n';
            cursor[k] = c;
            *slots[k]++ = (uint32_t)at;
        }
    }
    PyMem_Free(cursor);
    PyMem_Free(slots);
    result = PyTuple_Pack(5, used_list, payloads, counts, positions, total_obj);
fail:
    Py_XDECREF(used_list);
    Py_XDECREF(payloads);
    Py_XDECREF(counts);
    Py_XDECREF(positions);
    Py_XDECREF(total_obj);
done:
    if (fasts != NULL) {
        for (Py_ssize_t g = 0; g < groups; g++)
            Py_XDECREF(fasts[g]);
        PyMem_Free(fasts);
    }
    PyMem_Free(route);
    PyMem_Free(sizes);
    PyMem_Free(keys);
    Py_XDECREF(sfast);
    Py_XDECREF(lfast);
    PyBuffer_Release(&prefix);
    PyBuffer_Release(&table);
    return result;
}

PyDoc_STRVAR(place_doc,
"place(total, positions, replies)\n"
"--\n\n"
"Put the replies of a planned read back in request order.\n\n"
"``replies`` holds each used master's replies (lists, in plan order), ``positions`` is plan()'s.\n"
"Returns ``(values, plain)``: a list of ``total`` values (None where nothing was placed) and\n"
"whether every reply was bytes or None (an error reply is neither). Raises ValueError when the\n"
"replies do not match the positions.");

static PyObject *
place(PyObject *module, PyObject *args)
{
    Py_ssize_t total;
    Py_buffer positions;
    PyObject *replies;
    if (!PyArg_ParseTuple(args, "ny*O!", &total, &positions, &PyList_Type, &replies))
        return NULL;
    PyObject *out = NULL;
    Py_ssize_t count = positions.len / 4;
    if (positions.len % 4 != 0 || total < 0) {
        PyErr_SetString(PyExc_ValueError, "positions must be uint32 values");
        goto done;
    }
    out = PyList_New(total);
    if (out == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < total; i++)
        PyList_SET_ITEM(out, i, Py_NewRef(Py_None));
    const uint32_t *pos = (const uint32_t *)positions.buf;
    Py_ssize_t j = 0;
    int plain = 1;
    Py_ssize_t masters = PyList_GET_SIZE(replies);
    for (Py_ssize_t m = 0; m < masters; m++) {
        PyObject *mine = PyList_GET_ITEM(replies, m);
        if (!PyList_Check(mine)) {
            PyErr_SetString(PyExc_TypeError, "each master's replies must be a list");
            goto fail;
        }
        Py_ssize_t n = PyList_GET_SIZE(mine);
        if (j + n > count) {
            PyErr_SetString(PyExc_ValueError, "more replies than positions");
            goto fail;
        }
        for (Py_ssize_t i = 0; i < n; i++, j++) {
            uint32_t at = pos[j];
            if ((Py_ssize_t)at >= total) {
                PyErr_SetString(PyExc_ValueError, "a position beyond total");
                goto fail;
            }
            PyObject *value = PyList_GET_ITEM(mine, i);
            if (value != Py_None && !PyBytes_CheckExact(value))
                plain = 0;
            PyObject *old = PyList_GET_ITEM(out, at);
            PyList_SET_ITEM(out, at, Py_NewRef(value));
            Py_DECREF(old);
        }
    }
    if (j != count) {
        PyErr_SetString(PyExc_ValueError, "fewer replies than positions");
        goto fail;
    }
    PyObject *result = Py_BuildValue("(NO)", out, plain ? Py_True : Py_False);
    PyBuffer_Release(&positions);
    return result;
fail:
    Py_CLEAR(out);
done:
    PyBuffer_Release(&positions);
    return out;
}

static PyMethodDef methods[] = {
    {"plan", plan, METH_VARARGS, plan_doc},
    {"place", place, METH_VARARGS, place_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "ladle.online.redis._cluster_plan",
    "The CPU part of a Redis Cluster read (routing, framing, reordering), in C. See cluster_read.py.",
    -1,
    methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__cluster_plan(void)
{
    build_crc_table();
    return PyModule_Create(&module_def);
}
