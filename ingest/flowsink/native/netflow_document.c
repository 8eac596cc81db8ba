/* What the NetFlow writers share (netflow_document.h). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "bulk_line.h"
#include "bytes_text.h"
#include "ecs_documents.h"
#include "json_writer.h"
#include "netflow_document.h"

const char *const KEY_TEXT[K_COUNT] = {
    "_id", "@timestamp", "event", "network", "observer", "source", "destination", "flow", "netflow",
    "kind", "category", "type", "action", "start", "end", "duration",
    "iana_number", "transport", "bytes", "packets", "direction", "community_id", "ip", "port", "ingress", "egress",
    "interface", "sampling_rate", "exporter", "id", "name",
    "source_ipv4_address", "destination_ipv4_address", "ip_next_hop_ipv4_address", "ingress_interface",
    "egress_interface", "packet_delta_count", "octet_delta_count", "flow_start_sys_up_time",
    "flow_end_sys_up_time", "source_transport_port", "destination_transport_port", "tcp_control_bits",
    "protocol_identifier", "ip_class_of_service", "bgp_source_as_number", "bgp_destination_as_number",
    "source_ipv4_prefix_length", "destination_ipv4_prefix_length", "engine_type", "engine_id",
    "sampling_interval", "sampling_algorithm", "flow_sequence",
    "event", "netflow_flow", "ipv4", "unknown", "truncated_record",
};

PyObject *KEYS[K_COUNT];
PyObject *SMALL_TEXT[256];
PyObject *TRANSPORT[256];

int netflow_document_init(void) {
    for (int i = 0; i < K_COUNT; i++)
        if ((KEYS[i] = PyUnicode_InternFromString(KEY_TEXT[i])) == NULL) return -1;
    for (int i = 0; i < 256; i++) {
        if ((SMALL_TEXT[i] = PyUnicode_FromFormat("%d", i)) == NULL) return -1;
        const char *name = transport_name((unsigned)i);
        TRANSPORT[i] = name == NULL ? NULL : PyUnicode_InternFromString(name);
        if (name != NULL && TRANSPORT[i] == NULL) return -1;
    }
    return 0;
}

/* prefix + decimal index: the document _id */
PyObject *indexed_id(PyObject *prefix, Py_ssize_t index) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(prefix);
    char digits[24];
    int d = decimal(digits, (unsigned long long)index);
    if (!PyUnicode_IS_ASCII(prefix)) return PyUnicode_FromFormat("%U%zd", prefix, index);
    PyObject *out = PyUnicode_New(n + d, 127);
    if (out == NULL) return NULL;
    memcpy(PyUnicode_1BYTE_DATA(out), PyUnicode_1BYTE_DATA(prefix), (size_t)n);
    memcpy(PyUnicode_1BYTE_DATA(out) + n, digits, (size_t)d);
    return out;
}

PyObject *interface_named(PyObject *index, PyObject *names, const Enrich *en) {
    PyObject *outer = PyDict_New(), *inner = PyDict_New();
    if (outer == NULL || inner == NULL) goto fail;
    if (set_steal(inner, K_PLAIN_ID, PyObject_Str(index)) < 0) goto fail;
    if (names != Py_None && PyDict_Check(names) && PyDict_GET_SIZE(names)) {
        PyObject *name = PyDict_GetItemWithError(names, index);
        if (name == NULL && PyErr_Occurred()) goto fail;
        if (name != NULL && name != Py_None && PyDict_SetItem(inner, KEYS[K_NAME], name) < 0) goto fail;
    }
    InterfaceHit hit;
    int configured = enrich_interface_key(en, index, &hit);
    if (configured < 0 || (configured && enrich_dict_interface(inner, &hit) < 0)) goto fail;
    if (PyDict_SetItem(outer, KEYS[K_INTERFACE], inner) < 0) goto fail;
    untrack(inner);
    untrack(outer);
    Py_DECREF(inner);
    return outer;
fail:
    Py_XDECREF(outer); Py_XDECREF(inner);
    return NULL;
}

/* ---- bulk lines ------------------------------------------------------------------------------------------ */

int bulk_shared_begin(BulkShared *s, PyObject *head, int keep_ids, PyObject *timestamp, PyObject *prefix,
                      PyObject *category, PyObject *connection, PyObject *action, PyObject *exporter, PyObject *tag,
                      PyObject *exporter_fields, const Enrich *en) {
    memset(s, 0, sizeof(*s));
    s->en = en;
    if (jb_init(&s->pieces, 512) < 0) return -1;
    s->head = PyBytes_AS_STRING(head);
    s->head_len = PyBytes_GET_SIZE(head);
    s->keep_ids = keep_ids;
    s->kind = "flows";
    s->timestamp = PyUnicode_Check(timestamp) ? PyUnicode_AsUTF8AndSize(timestamp, &s->timestamp_len) : NULL;
    s->prefix = s->timestamp && PyUnicode_Check(prefix) ? PyUnicode_AsUTF8AndSize(prefix, &s->prefix_len) : NULL;
    if (s->prefix == NULL) {   /* not text, or surrogates: the Python path decides */
        if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) return -1;
        PyErr_Clear();
        return 1;
    }
    JsonBuf *b = &s->pieces;
    s->cut[SEG_HEAD] = b->len;
    TRY(JB_LIT(b, "{\"@timestamp\":"));
    TRY(jb_text(b, s->timestamp, s->timestamp_len));
    TRY(JB_LIT(b, ",\"event\":{\"kind\":\"event\",\"category\":"));
    TRY(jb_pyvalue(b, category, 0));
    TRY(JB_LIT(b, ",\"type\":"));
    TRY(jb_pyvalue(b, connection, 0));
    TRY(JB_LIT(b, ",\"action\":"));
    TRY(jb_pyvalue(b, action, 0));
    s->cut[SEG_OBSERVER] = b->len;
    TRY(JB_LIT(b, "\"observer\":{\"ip\":"));
    TRY(jb_pyvalue(b, exporter, 0));
    s->cut[SEG_FLOW] = b->len;
    TRY(JB_LIT(b, ",\"id\":"));
    if (!PyUnicode_Check(tag)) return 1;
    TRY(jb_pystr(b, tag));
    b->len--;   /* the closing quote comes after the digest's hex */
    s->cut[SEG_TAIL] = b->len;
    TRY(JB_LIT(b, "\"exporter\":"));
    TRY(jb_pyvalue(b, exporter_fields, 0));
    TRY(jb_char(b, '}'));
    s->cut[SEG_EXTRA] = s->cut[SEG_COUNT] = b->len;
    return 0;
}

void bulk_shared_free(BulkShared *s) { jb_free(&s->pieces); }

int bulk_action(JsonBuf *b, const BulkShared *s, Py_ssize_t index) {
    char id[128];
    if (s->prefix_len > 100) return 1;   /* ids are a 16-character digest and a set index: never this long */
    memcpy(id, s->prefix, (size_t)s->prefix_len);
    int n = (int)s->prefix_len + decimal(id + s->prefix_len, (unsigned long long)index);
    return jb_action(b, s->head, s->head_len, s->kind, s->timestamp, (int)s->timestamp_len, id, n, s->keep_ids);
}

/* Append a document's lines (bytes), or on decline its dict document, to out; the buffer is rewound. */
int bulk_append(PyObject *out, JsonBuf *b, int rc, PyObject *(*document)(void *), void *arg) {
    PyObject *item = rc == 0 ? jb_take(b, 0) : (b->len = 0, document(arg));
    if (item == NULL) return -1;
    int added = PyList_Append(out, item);
    Py_DECREF(item);
    return added;
}
