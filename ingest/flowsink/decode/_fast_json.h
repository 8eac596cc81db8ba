/* A growable byte buffer and the JSON pieces the C decoders write bulk lines with (flowsink/bulk.py is the
 * reference: every byte here must equal what orjson writes for the same document, key order included).
 *
 * Hand-written because no library writes JSON straight from C values into a buffer a Python bytes object is cut
 * from: building a dict per flow for orjson to walk cost more than decoding the flow (bench/bench_decode.py).
 *
 * Conventions: writers return 0 on success, -1 with a Python exception set (out of memory), and the value
 * writers for Python objects return 1 (no exception) for a value they do not write the way orjson would
 * (floats, odd types, surrogates, integers beyond 64 bits): the caller then hands that one document to the
 * pure-Python path, which is the reference for it.
 */
#ifndef FLOWSINK_FAST_JSON_H
#define FLOWSINK_FAST_JSON_H

#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "_fast_common.h"

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
    int n = 0;
    out[n++] = '"';
    for (int i = 0; i < 4; i++) {
        if (i) out[n++] = '.';
        n += decimal(out + n, p[i]);
    }
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

static int jb_pyvalue(JsonBuf *b, PyObject *value, int depth);

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
static int jb_pyvalue(JsonBuf *b, PyObject *value, int depth) {
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

/* ---- times and the action line ---------------------------------------------------------------------------- */

/* The text of the last seconds formatted, 16 slots by the second's low bits: the seconds of one export (its own
 * time, flow starts and ends) are a few, mostly adjacent. Per translation unit; the GIL serialises callers. */
#define JB_SECONDS 16
static long long jb_second_key[JB_SECONDS] = {
    LLONG_MIN, LLONG_MIN, LLONG_MIN, LLONG_MIN, LLONG_MIN, LLONG_MIN, LLONG_MIN, LLONG_MIN,
    LLONG_MIN, LLONG_MIN, LLONG_MIN, LLONG_MIN, LLONG_MIN, LLONG_MIN, LLONG_MIN, LLONG_MIN};
static char jb_second_text[JB_SECONDS][40];
static int jb_second_len[JB_SECONDS];

/* epoch seconds + milliseconds (0..999) -> "YYYY-MM-DDTHH:MM:SS.mmmZ" (unquoted) into out[48]; returns its
 * length, 0 when gmtime cannot (a year beyond an int) */
static inline int jb_iso_parts_text(long long seconds, int millis, char out[48]) {
    int slot = (int)((unsigned long long)seconds % JB_SECONDS);
    if (jb_second_key[slot] != seconds) {
        time_t t = (time_t)seconds;
        struct tm tm;
        jb_second_key[slot] = LLONG_MIN;
        if ((long long)t != seconds || gmtime_r(&t, &tm) == NULL ||
            (jb_second_len[slot] = (int)strftime(jb_second_text[slot], 40, "%Y-%m-%dT%H:%M:%S", &tm)) == 0)
            return 0;
        jb_second_key[slot] = seconds;
    }
    int n = jb_second_len[slot];
    memcpy(out, jb_second_text[slot], (size_t)n);
    out[n] = '.';
    out[n + 1] = (char)('0' + millis / 100);
    out[n + 2] = (char)('0' + millis / 10 % 10);
    out[n + 3] = (char)('0' + millis % 10);
    out[n + 4] = 'Z';
    return n + 5;
}

/* epoch ms -> "YYYY-MM-DDTHH:MM:SS.mmmZ" (unquoted) into out[48]; returns its length, 0 when gmtime cannot
 * (the caller then declines the document). Same text as flowsink.normalize.netflow.iso_ms. */
static inline int jb_iso_ms_text(long long epoch_ms, char out[48]) {
    long long seconds = epoch_ms / 1000, millis = epoch_ms % 1000;
    if (millis < 0) { millis += 1000; seconds -= 1; }
    return jb_iso_parts_text(seconds, (int)millis, out);
}

/* what normalize.netflow.iso_ms gives for a second gmtime cannot take */
#define ISO_FALLBACK "1970-01-01T00:00:00.000Z"

/* epoch ms as a quoted ISO-8601 string, the fallback text where jb_iso_ms_text cannot (as iso_ms does) */
static inline int jb_iso_ms(JsonBuf *b, long long epoch_ms) {
    char text[48];
    int n = jb_iso_ms_text(epoch_ms, text);
    if (n == 0) return JB_LIT(b, "\"" ISO_FALLBACK "\"");
    if (jb_reserve(b, n + 2) < 0) return -1;
    b->data[b->len++] = '"';
    memcpy(b->data + b->len, text, (size_t)n);
    b->len += n;
    b->data[b->len++] = '"';
    return 0;
}

/* lowercase hex of n bytes into out[2n] */
static inline void hex_chars(char *out, const unsigned char *p, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) { out[2 * i] = HEX[p[i] >> 4]; out[2 * i + 1] = HEX[p[i] & 15]; }
}

/* lowercase hex of n bytes, unquoted */
static inline int jb_hex(JsonBuf *b, const unsigned char *p, Py_ssize_t n) {
    if (jb_reserve(b, 2 * n) < 0) return -1;
    hex_chars(b->data + b->len, p, n);
    b->len += 2 * n;
    return 0;
}

/* "1:" + base64 of a Community ID digest, quoted (the text community_text makes) */
static inline int jb_community(JsonBuf *b, const unsigned char d[20]) {
    if (jb_reserve(b, 32) < 0) return -1;
    char *out = b->data + b->len;
    int o = 0;
    out[o++] = '"'; out[o++] = '1'; out[o++] = ':';
    for (int i = 0; i < 21; i += 3) {   /* 20 bytes: the last group has two, one '=' of padding */
        uint32_t v = ((uint32_t)d[i] << 16) | ((uint32_t)d[i + 1] << 8) | (i + 2 < 20 ? d[i + 2] : 0);
        out[o++] = B64[(v >> 18) & 63]; out[o++] = B64[(v >> 12) & 63]; out[o++] = B64[(v >> 6) & 63];
        out[o++] = i + 2 < 20 ? B64[v & 63] : '=';
    }
    out[o++] = '"';
    b->len += o;
    return 0;
}

/* The action line and its newline: head is BulkFormat.action_head (`{"create":{"_index":"<prefix>-`), kind
 * "flows" or "meta", timestamp the document's @timestamp text (unquoted). The day comes from its first ten
 * characters, as flowsink.bulk.index_name takes it; 1 when they are not YYYY-MM-DD (a year past 9999, before
 * 0): the Python path decides those. doc_id NULL, or keep_ids 0, writes no _id. */
static inline int jb_action(JsonBuf *b, const char *head, Py_ssize_t head_len, const char *kind,
                            const char *timestamp, int timestamp_len, const char *doc_id, Py_ssize_t id_len,
                            int keep_ids) {
    const char *t = timestamp;
    if (timestamp_len < 11 || t[4] != '-' || t[7] != '-' || t[timestamp_len - 1] != 'Z') return 1;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (t[i] < '0' || t[i] > '9')) return 1;
    char day[10] = {t[0], t[1], t[2], t[3], '.', t[5], t[6], '.', t[8], t[9]};
    if (jb_put(b, head, head_len) < 0 || jb_put(b, kind, (Py_ssize_t)strlen(kind)) < 0 || jb_char(b, '-') < 0 ||
        jb_put(b, day, 10) < 0 || jb_char(b, '"') < 0)
        return -1;
    if (keep_ids && doc_id != NULL) {
        if (JB_LIT(b, ",\"_id\":") < 0 || jb_text(b, doc_id, id_len) < 0) return -1;
    }
    return JB_LIT(b, "}}\n");
}

/* flowsink.bulk.encode_document for a document a Python path built: the action line (the index kind from
 * event.action, the _id unless keep_ids is 0) and the source line, every key but _id and _index. The dict is
 * left as it is. 1, with b as it was, when a value is not written as orjson would or the document lacks what
 * the action line needs here (a @timestamp text with a day, an event dict holding a str action, an _id that is
 * a str or absent): flowsink.bulk then encodes it. */
static inline int jb_document(JsonBuf *b, PyObject *doc, const char *head, Py_ssize_t head_len, int keep_ids) {
    if (!PyDict_CheckExact(doc)) return 1;
    PyObject *timestamp = PyDict_GetItemString(doc, "@timestamp"), *id = PyDict_GetItemString(doc, "_id");
    PyObject *event = PyDict_GetItemString(doc, "event");
    PyObject *action = event != NULL && PyDict_CheckExact(event) ? PyDict_GetItemString(event, "action") : NULL;
    if (timestamp == NULL || !PyUnicode_CheckExact(timestamp) || action == NULL || !PyUnicode_CheckExact(action) ||
        (id != NULL && !PyUnicode_CheckExact(id)))
        return 1;
    Py_ssize_t start = b->len, timestamp_len, id_len = 0;
    const char *timestamp_text = PyUnicode_AsUTF8AndSize(timestamp, &timestamp_len);
    const char *id_text = id != NULL && timestamp_text != NULL ? PyUnicode_AsUTF8AndSize(id, &id_len) : NULL;
    if (timestamp_text == NULL || (id != NULL && id_text == NULL)) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) return -1;
        PyErr_Clear();
        return 1;
    }
    /* flowsink.bulk.META_ACTIONS */
    int meta = PyUnicode_CompareWithASCIIString(action, "netflow_options") == 0 ||
               PyUnicode_CompareWithASCIIString(action, "sflow_counter_sample") == 0;
    int rc = timestamp_len > INT_MAX ? 1 : jb_action(b, head, head_len, meta ? "meta" : "flows", timestamp_text,
                                                     (int)timestamp_len, id_text, id_len, keep_ids);
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    int first = 1;
    if (rc == 0) rc = jb_char(b, '{');
    while (rc == 0 && PyDict_Next(doc, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key)) { rc = 1; break; }
        if (PyUnicode_CompareWithASCIIString(key, "_id") == 0 || PyUnicode_CompareWithASCIIString(key, "_index") == 0)
            continue;
        if ((rc = first ? 0 : jb_char(b, ',')) != 0 || (rc = jb_pystr(b, key)) != 0 || (rc = jb_char(b, ':')) != 0)
            break;
        first = 0;
        rc = jb_pyvalue(b, value, 1);
    }
    if (rc == 0) rc = JB_LIT(b, "}\n");
    if (rc == 1) b->len = start;
    return rc;
}

/* b->data[start:] as a bytes object, and the buffer rewound to start for the next document */
static inline PyObject *jb_take(JsonBuf *b, Py_ssize_t start) {
    PyObject *out = PyBytes_FromStringAndSize(b->data + start, b->len - start);
    b->len = start;
    return out;
}

#endif
