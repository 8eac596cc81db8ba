/* What the NetFlow writers share, v5's (netflow_v5.c) and v9/IPFIX's (template_documents.c, template_records.c):
 * the document's keys as interned str, the values they use most, document ids, interface objects, and the JSON
 * every bulk line of one call shares (BulkShared), written once per call.
 */
#ifndef FLOWSINK_NATIVE_NETFLOW_DOCUMENT_H
#define FLOWSINK_NATIVE_NETFLOW_DOCUMENT_H

#include <Python.h>

#include "enrichment.h"
#include "json_writer.h"

/* keys and values of NetFlow documents: ECS keys, v5's record under its IPFIX names, then values */
enum {
    K_ID, K_TIMESTAMP, K_EVENT, K_NETWORK, K_OBSERVER, K_SOURCE, K_DESTINATION, K_FLOW, K_NETFLOW,
    K_KIND, K_CATEGORY, K_TYPE, K_ACTION, K_START, K_END, K_DURATION,
    K_IANA, K_TRANSPORT, K_BYTES, K_PACKETS, K_DIRECTION, K_COMMUNITY, K_IP, K_PORT, K_INGRESS, K_EGRESS,
    K_INTERFACE, K_SAMPLING_RATE, K_EXPORTER, K_PLAIN_ID, K_NAME,
    K_SRCADDR, K_DSTADDR, K_NEXTHOP, K_INPUT, K_OUTPUT, K_DPKTS, K_DOCTETS, K_FIRST, K_LAST, K_SRCPORT,
    K_DSTPORT, K_TCPFLAGS, K_PROT, K_TOS, K_SRCAS, K_DSTAS, K_SRCMASK, K_DSTMASK, K_ENGINE_TYPE, K_ENGINE_ID,
    K_SAMPLING_INTERVAL, K_SAMPLING_ALGORITHM, K_FLOW_SEQUENCE,
    V_EVENT, V_NETFLOW_FLOW, V_IPV4, V_UNKNOWN, V_TRUNCATED_RECORD, K_COUNT
};

extern const char *const KEY_TEXT[K_COUNT];
extern PyObject *KEYS[K_COUNT];          /* KEY_TEXT interned */
extern PyObject *SMALL_TEXT[256];        /* "0".."255": network.iana_number */
extern PyObject *TRANSPORT[256];         /* protocol -> ECS network.transport, NULL when unnamed */

/* the objects above; 0, or -1 with an exception set */
int netflow_document_init(void);

/* set d[key] = value, stealing the reference to value; -1 on error */
static inline int set_steal(PyObject *d, int key, PyObject *value) {
    if (value == NULL) return -1;
    int rc = PyDict_SetItem(d, KEYS[key], value);
    Py_DECREF(value);
    return rc;
}

/* prefix + decimal index: the document _id */
PyObject *indexed_id(PyObject *prefix, Py_ssize_t index);

/* {"interface": {"id": "<index>"[, "name": <its name in names>]}}; names a dict (options data) or None; with
 * what the exporter's enrichment configures for the ifIndex (its name wins, then alias and speed) */
PyObject *interface_named(PyObject *index, PyObject *names, const Enrich *en);

/* ---- bulk lines (flowsink.bulk.encode_document, written without the document dicts) ---------------------- */

/* a writer's 1 (the Python path decides) or -1 (error) goes straight back to the caller */
#define TRY(expr) do { int rc_ = (expr); if (rc_) return rc_ < 0 ? -1 : rc_; } while (0)

/* What every document of one call shares, JSON-encoded once: pieces cut from one buffer. */
enum { SEG_HEAD, SEG_OBSERVER, SEG_FLOW, SEG_TAIL, SEG_EXTRA, SEG_COUNT };
typedef struct {
    JsonBuf pieces;
    Py_ssize_t cut[SEG_COUNT + 1];
    const char *head, *timestamp, *prefix;   /* action head; @timestamp and the id prefix as UTF-8 */
    Py_ssize_t head_len, timestamp_len, prefix_len;
    int keep_ids;
    const char *kind;   /* index kind: "flows" or "meta" */
    const Enrich *en;   /* what the exporter's documents get */
} BulkShared;

static inline int jb_piece(JsonBuf *b, const BulkShared *s, int piece) {
    return jb_put(b, s->pieces.data + s->cut[piece], s->cut[piece + 1] - s->cut[piece]);
}

/* The pieces every document of a call shares: SEG_HEAD `{"@timestamp":..,"event":{..,"action":..`, SEG_OBSERVER
 * `"observer":{"ip":..`, SEG_FLOW `,"id":"<exporter tag` (the digest's hex follows), SEG_TAIL `"exporter":{..}}`
 * (the netflow object's end; bulk_document_end follows) (SEG_EXTRA is the caller's). 0; 1 when a value cannot be
 * written as orjson would (the caller makes documents instead); -1 on error. bulk_shared_free(s) in every case. */
int bulk_shared_begin(BulkShared *s, PyObject *head, int keep_ids, PyObject *timestamp, PyObject *prefix,
                      PyObject *category, PyObject *connection, PyObject *action, PyObject *exporter, PyObject *tag,
                      PyObject *exporter_fields, const Enrich *en);

void bulk_shared_free(BulkShared *s);

/* the action line of document `index` (its _id: prefix + index); 1 when the Python path must write it */
int bulk_action(JsonBuf *b, const BulkShared *s, Py_ssize_t index);

/* "<tag><first 10 bytes of the digest in hex>": SEG_FLOW ends inside the quotes, this closes them (the flow
 * object's enrichment and its brace follow) */
static inline int jb_flow_id_tail(JsonBuf *b, const unsigned char digest[20]) {
    if (jb_hex(b, digest, 10) < 0) return -1;
    return jb_char(b, '"');
}

/* SEG_TAIL, then the enrichment at the document's end (fa NULL: an options record's, the exporter's only) */
static inline int bulk_document_end(JsonBuf *b, const BulkShared *s, const FlowAdditions *fa) {
    if (jb_piece(b, s, SEG_TAIL) < 0) return -1;
    int rc = jb_enrich_document(b, s->en, fa);
    return rc ? rc : JB_LIT(b, "}\n");
}

/* Append a document's lines (bytes), or on decline its dict document, to out; the buffer is rewound. */
int bulk_append(PyObject *out, JsonBuf *b, int rc, PyObject *(*document)(void *), void *arg);

#endif
