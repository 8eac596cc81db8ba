/* A growable byte buffer and the JSON values the C writers put in bulk lines (flowsink/bulk.py is the reference:
 * every byte here must equal what orjson writes for the same document, key order included).
 *
 * Hand-written because no library writes JSON straight from C values into a buffer a Python bytes object is cut
 * from: building a dict per flow for orjson to walk cost more than decoding the flow (bench/bench_decode.py).
 *
 * Conventions: writers return 0 on success, -1 with a Python exception set (out of memory), and the value
 * writers for Python objects return 1 (no exception) for a value they do not write the way orjson would
 * (floats, odd types, surrogates, integers beyond 64 bits): the caller then hands that one document to the
 * pure-Python path, which is the reference for it.
 */
#ifndef FLOWSINK_NATIVE_JSON_WRITER_H
#define FLOWSINK_NATIVE_JSON_WRITER_H

#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "bytes_text.h"

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} JsonBuf;

static inline int jb_init(JsonBuf *b, Py_ssize_t cap) {
    b->data = PyMem_Malloc((size_t)cap);
    b->len = 0;
    b->cap = cap;
    if (b->data == NULL) { PyErr_NoMemory(); return -1; }
    return 0;
}

static inline void jb_free(JsonBuf *b) {
    PyMem_Free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* room for extra more bytes */
static inline int jb_reserve(JsonBuf *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap) return 0;
    Py_ssize_t cap = b->cap * 2;
    if (cap < b->len + extra) cap = b->len + extra + 256;
    char *data = PyMem_Realloc(b->data, (size_t)cap);
    if (data == NULL) { PyErr_NoMemory(); return -1; }
    b->data = data;
    b->cap = cap;
    return 0;
}

static inline int jb_put(JsonBuf *b, const char *text, Py_ssize_t n) {
    if (jb_reserve(b, n) < 0) return -1;
    memcpy(b->data + b->len, text, (size_t)n);
    b->len += n;
    return 0;
}

/* a string literal, its length known at compile time: JB_LIT(b, "\"network\":{") */
#define JB_LIT(b, literal) jb_put((b), (literal), (Py_ssize_t)(sizeof(literal) - 1))

static inline int jb_char(JsonBuf *b, char c) {
    if (jb_reserve(b, 1) < 0) return -1;
    b->data[b->len++] = c;
    return 0;
}

static inline int jb_u64(JsonBuf *b, unsigned long long value) {
    if (jb_reserve(b, 24) < 0) return -1;
    b->len += decimal(b->data + b->len, value);
    return 0;
}

static inline int jb_i64(JsonBuf *b, long long value) {
    if (value >= 0) return jb_u64(b, (unsigned long long)value);
    if (jb_reserve(b, 24) < 0) return -1;
    b->data[b->len++] = '-';
    b->len += decimal(b->data + b->len, 0ULL - (unsigned long long)value);
    return 0;
}

/* "a.b.c.d" (quoted) from 4 bytes, as inet_ntop writes it */
static inline int jb_ipv4(JsonBuf *b, const unsigned char *p) {
    if (jb_reserve(b, 18) < 0) return -1;
    char *out = b->data + b->len;
    out[0] = '"';
    int n = 1 + ipv4_chars(out + 1, p);
    out[n++] = '"';
    b->len += n;
    return 0;
}

/* whether any of eight bytes is below 0x20, '"' or '\\' (bit tricks: a byte's high bit set where one is) */
static inline int jb_needs_escape(uint64_t w) {
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t quote = w ^ (ones * '"'), backslash = w ^ (ones * '\\');
    uint64_t found = ((w - ones * 0x20) & ~w) | ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash);
    return (found & highs) != 0;
}

/* UTF-8 text as a quoted JSON string, escaped exactly as orjson does: ", \ and control characters only
 * (\b \t \n \f \r by name, the rest as \u00xx in lowercase hex); everything else, DEL and non-ASCII too, as is */
static inline int jb_text(JsonBuf *b, const char *text, Py_ssize_t n) {
    if (jb_reserve(b, n * 6 + 2) < 0) return -1;
    char *out = b->data + b->len;
    Py_ssize_t o = 0;
    out[o++] = '"';
    Py_ssize_t i = 0;
    /* eight bytes at a time while none needs escaping (keys, addresses, names: nearly all text) */
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, text + i, 8);
        if (jb_needs_escape(w)) break;
        memcpy(out + o, &w, 8);
        o += 8;
    }
    for (; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x20 && c != '"' && c != '\\') { out[o++] = (char)c; continue; }
        out[o++] = '\\';
        switch (c) {
        case '"': out[o++] = '"'; break;
        case '\\': out[o++] = '\\'; break;
        case '\b': out[o++] = 'b'; break;
        case '\t': out[o++] = 't'; break;
        case '\n': out[o++] = 'n'; break;
        case '\f': out[o++] = 'f'; break;
        case '\r': out[o++] = 'r'; break;
        default:
            out[o++] = 'u'; out[o++] = '0'; out[o++] = '0';
            out[o++] = HEX[c >> 4]; out[o++] = HEX[c & 15];
        }
    }
    out[o++] = '"';
    b->len += o;
    return 0;
}

/* a str object as a quoted JSON string; 1 when it holds lone surrogates (orjson refuses those) */
static inline int jb_pystr(JsonBuf *b, PyObject *text) {
    if (PyUnicode_IS_COMPACT_ASCII(text))
        return jb_text(b, (const char *)PyUnicode_1BYTE_DATA(text), PyUnicode_GET_LENGTH(text));
    Py_ssize_t n;
    const char *utf8 = PyUnicode_AsUTF8AndSize(text, &n);
    if (utf8 == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) return -1;
        PyErr_Clear();
        return 1;
    }
    return jb_text(b, utf8, n);
}

/* an int object; 1 when it is beyond 64 bits (orjson refuses those) */
static inline int jb_pyint(JsonBuf *b, PyObject *value) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow == 0) {
        if (v == -1 && PyErr_Occurred()) return -1;
        return jb_i64(b, v);
    }
    if (overflow < 0) return 1;
    unsigned long long u = PyLong_AsUnsignedLongLong(value);
    if (u == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
        PyErr_Clear();
        return 1;
    }
    return jb_u64(b, u);
}

static inline int jb_pyvalue(JsonBuf *b, PyObject *value, int depth);

/* "key":value pairs of a dict with str keys, in its order, without the braces */
static inline int jb_pydict_items(JsonBuf *b, PyObject *dict, int depth) {
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    int first = 1, rc;
    while (PyDict_Next(dict, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key)) return 1;
        if (!first && jb_char(b, ',') < 0) return -1;
        first = 0;
        if ((rc = jb_pystr(b, key)) != 0) return rc;
        if (jb_char(b, ':') < 0) return -1;
        if ((rc = jb_pyvalue(b, value, depth + 1)) != 0) return rc;
    }
    return 0;
}

/* any value a document holds: str, int, bool, None, list/tuple and dict of those; 1 for anything else */
static inline int jb_pyvalue(JsonBuf *b, PyObject *value, int depth) {
    if (depth > 32) return 1;
    if (PyUnicode_CheckExact(value)) return jb_pystr(b, value);
    if (PyLong_CheckExact(value)) return jb_pyint(b, value);
    if (value == Py_True) return JB_LIT(b, "true");
    if (value == Py_False) return JB_LIT(b, "false");
    if (value == Py_None) return JB_LIT(b, "null");
    if (PyList_CheckExact(value) || PyTuple_CheckExact(value)) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(value);
        PyObject **items = PySequence_Fast_ITEMS(value);
        if (jb_char(b, '[') < 0) return -1;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (i && jb_char(b, ',') < 0) return -1;
            int rc = jb_pyvalue(b, items[i], depth + 1);
            if (rc) return rc;
        }
        return jb_char(b, ']');
    }
    if (PyDict_CheckExact(value)) {
        if (jb_char(b, '{') < 0) return -1;
        int rc = jb_pydict_items(b, value, depth);
        if (rc) return rc;
        return jb_char(b, '}');
    }
    return 1;
}

/* lowercase hex of n bytes, unquoted */
static inline int jb_hex(JsonBuf *b, const unsigned char *p, Py_ssize_t n) {
    if (jb_reserve(b, 2 * n) < 0) return -1;
    hex_chars(b->data + b->len, p, n);
    b->len += 2 * n;
    return 0;
}

/* b->data[start:] as a bytes object, and the buffer rewound to start for the next document */
static inline PyObject *jb_take(JsonBuf *b, Py_ssize_t start) {
    PyObject *out = PyBytes_FromStringAndSize(b->data + start, b->len - start);
    b->len = start;
    return out;
}

#endif
