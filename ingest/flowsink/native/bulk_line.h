/* Elasticsearch bulk lines as flowsink.bulk.encode_document writes them: the action line every writer puts before a
 * document's source line, and both lines of a document some Python path built as a dict.
 */
#ifndef FLOWSINK_NATIVE_BULK_LINE_H
#define FLOWSINK_NATIVE_BULK_LINE_H

#include <Python.h>
#include <limits.h>
#include <string.h>

#include "json_writer.h"

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

#endif
