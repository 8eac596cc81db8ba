/* NetFlow v5 in C: a whole datagram's records -> ECS documents (dicts) or their bulk lines, exactly as
 * flowsink.normalize.netflow.flow_document builds them (same keys, same order, same shared sub-objects) and
 * flowsink.bulk encodes them, so the pure-Python path and this one are interchangeable (tests/test_decode_fast.py,
 * tests/test_decode_bulk*.py).
 *
 * Why C: profiles of bench/bench_decode.py showed the cost is building each ECS document, not decoding: a
 * NetFlow v5 record becomes ~25 raw fields, five nested objects, two ISO-8601 times and a Community ID
 * (SHA-1 over the packed 5-tuple, base64, hex). In Python that is ~60 bytecode-level steps per record even
 * after removing every repeated lookup (generated builders, cached plans, cached time text): about 12 us per
 * flow on the loaded development machine, 4x short of the 300k flows/s target.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "bytes_text.h"
#include "community_id.h"
#include "ecs_documents.h"
#include "enrichment.h"
#include "json_writer.h"
#include "module.h"
#include "netflow_document.h"
#include "times.h"

/* uptime-relative time -> epoch ms across one 32-bit wrap either way (normalize.netflow.flow_document) */
static long long uptime_to_ms(long long export_ms, uint32_t uptime, uint32_t value) {
    uint32_t behind = uptime - value;
    long long offset = behind < 0x80000000u ? (long long)behind : (long long)behind - 4294967296LL;
    return export_ms - offset;
}

/* {"interface": {"id": "<index>"}} (v5 has no interface names) with what the enrichment configures for it */
static PyObject *interface_object(uint32_t index, const Enrich *en) {
    PyObject *number = PyLong_FromUnsignedLong(index);
    if (number == NULL) return NULL;
    PyObject *object = interface_named(number, Py_None, en);
    Py_DECREF(number);
    return object;
}

/* The raw record, under the IPFIX names netflow_v5.py uses, in the same order. */
static PyObject *v5_record(const unsigned char *r, PyObject *const header[6], PyObject *exporter_fields) {
    PyObject *rec = _PyDict_NewPresized(24);   /* no resizing on the way to 24 keys */
    if (rec == NULL) return NULL;
    if (set_steal(rec, K_SRCADDR, ipv4_text(r)) < 0 || set_steal(rec, K_DSTADDR, ipv4_text(r + 4)) < 0 ||
        set_steal(rec, K_NEXTHOP, ipv4_text(r + 8)) < 0 ||
        set_steal(rec, K_INPUT, PyLong_FromLong(be16(r + 12))) < 0 ||
        set_steal(rec, K_OUTPUT, PyLong_FromLong(be16(r + 14))) < 0 ||
        set_steal(rec, K_DPKTS, PyLong_FromUnsignedLong(be32(r + 16))) < 0 ||
        set_steal(rec, K_DOCTETS, PyLong_FromUnsignedLong(be32(r + 20))) < 0 ||
        set_steal(rec, K_FIRST, PyLong_FromUnsignedLong(be32(r + 24))) < 0 ||
        set_steal(rec, K_LAST, PyLong_FromUnsignedLong(be32(r + 28))) < 0 ||
        set_steal(rec, K_SRCPORT, PyLong_FromLong(be16(r + 32))) < 0 ||
        set_steal(rec, K_DSTPORT, PyLong_FromLong(be16(r + 34))) < 0 ||
        set_steal(rec, K_TCPFLAGS, PyLong_FromLong(r[37])) < 0 ||
        set_steal(rec, K_PROT, PyLong_FromLong(r[38])) < 0 ||
        set_steal(rec, K_TOS, PyLong_FromLong(r[39])) < 0 ||
        set_steal(rec, K_SRCAS, PyLong_FromLong(be16(r + 40))) < 0 ||
        set_steal(rec, K_DSTAS, PyLong_FromLong(be16(r + 42))) < 0 ||
        set_steal(rec, K_SRCMASK, PyLong_FromLong(r[44])) < 0 ||
        set_steal(rec, K_DSTMASK, PyLong_FromLong(r[45])) < 0)
        goto fail;
    static const int header_keys[6] = {K_ENGINE_TYPE, K_ENGINE_ID, K_SAMPLING_INTERVAL, K_SAMPLING_ALGORITHM,
                                       K_FLOW_SEQUENCE, K_EXPORTER};
    for (int i = 0; i < 5; i++)
        if (PyDict_SetItem(rec, KEYS[header_keys[i]], header[i]) < 0) goto fail;
    if (PyDict_SetItem(rec, KEYS[K_EXPORTER], exporter_fields) < 0) goto fail;
    return rec;
fail:
    Py_DECREF(rec);
    return NULL;
}

typedef struct {
    PyObject *exporter, *timestamp, *exporter_fields, *tag, *id_prefix, *category, *connection;
    PyObject *header[6];
    PyObject *rate;
    unsigned long long rate_value;
    long long export_ms;
    uint32_t uptime;
    unsigned long long scale;
    PyObject *enrichment;   /* the exporter's ExporterEnrichment or None */
    Enrich en;
} V5Context;

/* what a v5 record's ECS fields are computed from, shared by the document and the bulk-line writers */
typedef struct {
    long long start, end;
    int protocol;
    unsigned src_port, dst_port;
    unsigned char digest[20];   /* Community ID */
} V5Flow;

static void v5_flow(const unsigned char *r, const V5Context *c, V5Flow *f) {
    f->protocol = r[38];
    f->src_port = be16(r + 32);
    f->dst_port = be16(r + 34);
    f->start = uptime_to_ms(c->export_ms, c->uptime, be32(r + 24));
    f->end = uptime_to_ms(c->export_ms, c->uptime, be32(r + 28));
    /* ICMP type/code come from the destination port, as Cisco sends them */
    unsigned long long a = f->src_port, b = f->dst_port;
    if (f->protocol == 1 || f->protocol == 58) { a = (f->dst_port >> 8) & 0xFF; b = f->dst_port & 0xFF; }
    community_id_digest(r, r + 4, 4, f->protocol, a, b, 0, f->digest);
}

static PyObject *v5_document(const unsigned char *r, Py_ssize_t index, const V5Context *c) {
    PyObject *doc = NULL, *event = NULL, *network = NULL, *source = NULL, *destination = NULL;
    PyObject *observer = NULL, *flow = NULL, *record = NULL;
    FlowAdditions fa;
    if (enrich_flow(&c->en, &fa, r, 4, r + 4, 4) < 0) {
        enrich_flow_clear(&fa);
        return NULL;
    }
    const FlowHit *direction = enrich_direction(&fa);
    doc = _PyDict_NewPresized(9); event = _PyDict_NewPresized(7); network = _PyDict_NewPresized(7);
    source = PyDict_New();
    destination = PyDict_New(); observer = PyDict_New(); flow = PyDict_New();
    if (!doc || !event || !network || !source || !destination || !observer || !flow) goto fail;
    V5Flow f;
    v5_flow(r, c, &f);

    /* event */
    if (PyDict_SetItem(event, KEYS[K_KIND], KEYS[V_EVENT]) < 0 ||
        PyDict_SetItem(event, KEYS[K_CATEGORY], c->category) < 0 ||
        PyDict_SetItem(event, KEYS[K_TYPE], c->connection) < 0 ||
        PyDict_SetItem(event, KEYS[K_ACTION], KEYS[V_NETFLOW_FLOW]) < 0) goto fail;
    if (set_steal(event, K_START, iso_ms(f.start)) < 0 || set_steal(event, K_END, iso_ms(f.end)) < 0) goto fail;
    if (f.end >= f.start && set_steal(event, K_DURATION, PyLong_FromLongLong((f.end - f.start) * 1000000LL)) < 0)
        goto fail;

    /* the document's first keys, in flow_document's order */
    if (set_steal(doc, K_ID, indexed_id(c->id_prefix, index)) < 0 ||
        PyDict_SetItem(doc, KEYS[K_TIMESTAMP], c->timestamp) < 0 ||
        PyDict_SetItem(doc, KEYS[K_EVENT], event) < 0 || PyDict_SetItem(doc, KEYS[K_NETWORK], network) < 0)
        goto fail;

    /* the raw record first: the ECS fields share its values (the same objects, as in the Python path) */
    record = v5_record(r, c->header, c->exporter_fields);
    if (record == NULL) goto fail;
    if (PyDict_SetItem(source, KEYS[K_IP], PyDict_GetItem(record, KEYS[K_SRCADDR])) < 0 ||
        PyDict_SetItem(network, KEYS[K_TYPE], KEYS[V_IPV4]) < 0 ||
        PyDict_SetItem(destination, KEYS[K_IP], PyDict_GetItem(record, KEYS[K_DSTADDR])) < 0 ||
        PyDict_SetItem(source, KEYS[K_PORT], PyDict_GetItem(record, KEYS[K_SRCPORT])) < 0 ||
        PyDict_SetItem(destination, KEYS[K_PORT], PyDict_GetItem(record, KEYS[K_DSTPORT])) < 0) goto fail;
    if (PyDict_SetItem(network, KEYS[K_IANA], SMALL_TEXT[f.protocol]) < 0) goto fail;
    if (TRANSPORT[f.protocol] != NULL && PyDict_SetItem(network, KEYS[K_TRANSPORT], TRANSPORT[f.protocol]) < 0)
        goto fail;
    unsigned long long bytes = be32(r + 20), packets = be32(r + 16);
    if ((c->scale == 1 ? PyDict_SetItem(network, KEYS[K_BYTES], PyDict_GetItem(record, KEYS[K_DOCTETS]))
                       : set_steal(network, K_BYTES, PyLong_FromUnsignedLongLong(bytes * c->scale))) < 0 ||
        (c->scale == 1 ? PyDict_SetItem(network, KEYS[K_PACKETS], PyDict_GetItem(record, KEYS[K_DPKTS]))
                       : set_steal(network, K_PACKETS, PyLong_FromUnsignedLongLong(packets * c->scale))) < 0 ||
        PyDict_SetItem(network, KEYS[K_DIRECTION], direction ? direction->direction : KEYS[V_UNKNOWN]) < 0)
        goto fail;
    if (set_steal(network, K_COMMUNITY, community_id_text(f.digest)) < 0) goto fail;

    if (PyDict_SetItem(observer, KEYS[K_IP], c->exporter) < 0 ||
        set_steal(observer, K_INGRESS, interface_object(be16(r + 12), &c->en)) < 0 ||
        set_steal(observer, K_EGRESS, interface_object(be16(r + 14), &c->en)) < 0 ||
        enrich_dict_observer(observer, &c->en) < 0 || enrich_dict_endpoint(source, &fa.src) < 0 ||
        enrich_dict_endpoint(destination, &fa.dst) < 0 ||
        PyDict_SetItem(doc, KEYS[K_OBSERVER], observer) < 0 ||
        PyDict_SetItem(doc, KEYS[K_SOURCE], source) < 0 ||
        PyDict_SetItem(doc, KEYS[K_DESTINATION], destination) < 0) goto fail;
    if (PyDict_SetItem(flow, KEYS[K_SAMPLING_RATE], c->rate) < 0 ||
        set_steal(flow, K_PLAIN_ID, community_flow_id(c->tag, f.digest)) < 0 || enrich_dict_flow(flow, &fa) < 0 ||
        PyDict_SetItem(doc, KEYS[K_FLOW], flow) < 0) goto fail;
    if (PyDict_SetItem(doc, KEYS[K_NETFLOW], record) < 0 || enrich_dict_document(doc, &c->en, &fa) < 0) goto fail;
    PyObject *tree[] = {record, event, network, source, destination, observer, flow, doc};
    for (int i = 0; i < 8; i++) untrack(tree[i]);
    Py_DECREF(record); Py_DECREF(event); Py_DECREF(network); Py_DECREF(source); Py_DECREF(destination);
    Py_DECREF(observer); Py_DECREF(flow);
    enrich_flow_clear(&fa);
    return doc;
fail:
    Py_XDECREF(doc); Py_XDECREF(event); Py_XDECREF(network); Py_XDECREF(source); Py_XDECREF(destination);
    Py_XDECREF(observer); Py_XDECREF(flow); Py_XDECREF(record);
    enrich_flow_clear(&fa);
    return NULL;
}

/* v5_documents and v5_bulk take the same arguments up to here */
#define V5_ARGS "y*nUUO!UUO!O!LkOkOOOOOO"
#define V5_ARG_POINTERS(c, payload, count, uptime, scale)                                                          \
    &payload, &count, &c.exporter, &c.timestamp, &PyDict_Type, &c.exporter_fields, &c.tag, &c.id_prefix,         \
        &PyList_Type, &c.category, &PyList_Type, &c.connection, &c.export_ms, &uptime, &c.rate, &scale,          \
        &c.header[0], &c.header[1], &c.header[2], &c.header[3], &c.header[4], &c.enrichment

/* v5_documents(payload, count, exporter, timestamp, exporter_fields, exporter_tag, id_prefix, category, connection,
 * export_ms, uptime, rate, scale, engine_type, engine_id, sampling_interval, sampling_mode, sequence, enrichment)
 * -> list of ECS documents */
PyObject *py_v5_documents(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer payload;
    Py_ssize_t count;
    V5Context c;
    unsigned long scale, uptime;
    if (!PyArg_ParseTuple(args, V5_ARGS, V5_ARG_POINTERS(c, payload, count, uptime, scale))) return NULL;
    c.scale = scale;
    c.uptime = (uint32_t)uptime;
    PyObject *documents = NULL;
    if (enrich_read(&c.en, c.enrichment) < 0) goto done;
    if (count < 0 || payload.len < 24 + count * 48) {
        PyErr_SetString(PyExc_ValueError, "payload shorter than its records");
        goto done;
    }
    documents = PyList_New(count);
    if (documents == NULL) goto done;
    const unsigned char *records = (const unsigned char *)payload.buf + 24;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *doc = v5_document(records + 48 * i, i, &c);
        if (doc == NULL) { Py_CLEAR(documents); goto done; }
        PyList_SET_ITEM(documents, i, doc);
    }
done:
    PyBuffer_Release(&payload);
    return documents;
}

/* ---- bulk lines ------------------------------------------------------------------------------------------ */


/* SEG_EXTRA for v5: the header's values that close each record, before its exporter object; 0, 1, -1 */
static int v5_shared_extra(BulkShared *s, V5Context *c) {
    static const int keys[5] = {K_ENGINE_TYPE, K_ENGINE_ID, K_SAMPLING_INTERVAL, K_SAMPLING_ALGORITHM,
                                K_FLOW_SEQUENCE};
    JsonBuf *b = &s->pieces;
    if (!PyLong_CheckExact(c->rate)) return 1;
    c->rate_value = PyLong_AsUnsignedLongLong(c->rate);
    if (PyErr_Occurred()) { PyErr_Clear(); return 1; }
    for (int i = 0; i < 5; i++) {
        TRY(jb_char(b, ','));
        TRY(jb_text(b, KEY_TEXT[keys[i]], (Py_ssize_t)strlen(KEY_TEXT[keys[i]])));
        TRY(jb_char(b, ':'));
        TRY(jb_pyvalue(b, c->header[i], 0));
    }
    TRY(jb_char(b, ','));
    s->cut[SEG_COUNT] = b->len;
    return 0;
}

/* one v5 record's bulk lines with its flow's additions; 0, 1 to decline (nothing written that stays), -1 on error */
static int v5_bulk_lines(JsonBuf *b, const unsigned char *r, Py_ssize_t index, const V5Context *c,
                         const BulkShared *s, const FlowAdditions *fa) {
    V5Flow f;
    v5_flow(r, c, &f);
    int rc = bulk_action(b, s, index);
    if (rc) return rc;
    const FlowHit *direction = enrich_direction(fa);
    if (jb_piece(b, s, SEG_HEAD) < 0 || JB_LIT(b, ",\"start\":") < 0 || jb_iso_ms(b, f.start) < 0 ||
        JB_LIT(b, ",\"end\":") < 0 || jb_iso_ms(b, f.end) < 0) return -1;
    if (f.end >= f.start && (JB_LIT(b, ",\"duration\":") < 0 || jb_i64(b, (f.end - f.start) * 1000000LL) < 0))
        return -1;
    if (JB_LIT(b, "},\"network\":{\"type\":\"ipv4\",\"iana_number\":\"") < 0 || jb_u64(b, (unsigned)f.protocol) < 0 ||
        jb_char(b, '"') < 0) return -1;
    const char *transport = transport_name((unsigned)f.protocol);
    if (transport != NULL && (JB_LIT(b, ",\"transport\":\"") < 0 ||
                              jb_put(b, transport, (Py_ssize_t)strlen(transport)) < 0 || jb_char(b, '"') < 0))
        return -1;
    if (JB_LIT(b, ",\"bytes\":") < 0 || jb_u64(b, be32(r + 20) * c->scale) < 0 ||
        JB_LIT(b, ",\"packets\":") < 0 || jb_u64(b, be32(r + 16) * c->scale) < 0 ||
        JB_LIT(b, ",\"direction\":") < 0 ||
        (direction ? jb_put(b, direction->direction_json, direction->direction_json_len)
                   : JB_LIT(b, "\"unknown\"")) < 0 ||
        JB_LIT(b, ",\"community_id\":") < 0 || jb_community(b, f.digest) < 0 ||
        JB_LIT(b, "},") < 0 || jb_piece(b, s, SEG_OBSERVER) < 0 ||
        JB_LIT(b, ",\"ingress\":") < 0 || jb_enrich_interface(b, &c->en, be16(r + 12), NULL) < 0 ||
        JB_LIT(b, ",\"egress\":") < 0 || jb_enrich_interface(b, &c->en, be16(r + 14), NULL) < 0 ||
        jb_enrich_observer(b, &c->en) < 0 ||
        JB_LIT(b, "},\"source\":{\"ip\":") < 0 || jb_ipv4(b, r) < 0 ||
        JB_LIT(b, ",\"port\":") < 0 || jb_u64(b, f.src_port) < 0 || jb_enrich_endpoint(b, &fa->src) < 0 ||
        JB_LIT(b, "},\"destination\":{\"ip\":") < 0 || jb_ipv4(b, r + 4) < 0 ||
        JB_LIT(b, ",\"port\":") < 0 || jb_u64(b, f.dst_port) < 0 || jb_enrich_endpoint(b, &fa->dst) < 0 ||
        JB_LIT(b, "},\"flow\":{\"sampling_rate\":") < 0 || jb_u64(b, c->rate_value) < 0 ||
        jb_piece(b, s, SEG_FLOW) < 0 || jb_flow_id_tail(b, f.digest) < 0 ||
        jb_enrich_flow(b, fa) < 0 || jb_char(b, '}') < 0 ||
        /* netflow.*: the record under the names (and in the order) of v5_record */
        JB_LIT(b, ",\"netflow\":{\"source_ipv4_address\":") < 0 || jb_ipv4(b, r) < 0 ||
        JB_LIT(b, ",\"destination_ipv4_address\":") < 0 || jb_ipv4(b, r + 4) < 0 ||
        JB_LIT(b, ",\"ip_next_hop_ipv4_address\":") < 0 || jb_ipv4(b, r + 8) < 0 ||
        JB_LIT(b, ",\"ingress_interface\":") < 0 || jb_u64(b, be16(r + 12)) < 0 ||
        JB_LIT(b, ",\"egress_interface\":") < 0 || jb_u64(b, be16(r + 14)) < 0 ||
        JB_LIT(b, ",\"packet_delta_count\":") < 0 || jb_u64(b, be32(r + 16)) < 0 ||
        JB_LIT(b, ",\"octet_delta_count\":") < 0 || jb_u64(b, be32(r + 20)) < 0 ||
        JB_LIT(b, ",\"flow_start_sys_up_time\":") < 0 || jb_u64(b, be32(r + 24)) < 0 ||
        JB_LIT(b, ",\"flow_end_sys_up_time\":") < 0 || jb_u64(b, be32(r + 28)) < 0 ||
        JB_LIT(b, ",\"source_transport_port\":") < 0 || jb_u64(b, f.src_port) < 0 ||
        JB_LIT(b, ",\"destination_transport_port\":") < 0 || jb_u64(b, f.dst_port) < 0 ||
        JB_LIT(b, ",\"tcp_control_bits\":") < 0 || jb_u64(b, r[37]) < 0 ||
        JB_LIT(b, ",\"protocol_identifier\":") < 0 || jb_u64(b, r[38]) < 0 ||
        JB_LIT(b, ",\"ip_class_of_service\":") < 0 || jb_u64(b, r[39]) < 0 ||
        JB_LIT(b, ",\"bgp_source_as_number\":") < 0 || jb_u64(b, be16(r + 40)) < 0 ||
        JB_LIT(b, ",\"bgp_destination_as_number\":") < 0 || jb_u64(b, be16(r + 42)) < 0 ||
        JB_LIT(b, ",\"source_ipv4_prefix_length\":") < 0 || jb_u64(b, r[44]) < 0 ||
        JB_LIT(b, ",\"destination_ipv4_prefix_length\":") < 0 || jb_u64(b, r[45]) < 0 ||
        jb_piece(b, s, SEG_EXTRA) < 0 || bulk_document_end(b, s, fa) < 0)
        return -1;
    return 0;
}


/* one v5 record's bulk lines; 0, 1 to decline (nothing written that stays), -1 on error */
static int v5_bulk_one(JsonBuf *b, const unsigned char *r, Py_ssize_t index, const V5Context *c,
                       const BulkShared *s) {
    FlowAdditions fa;
    int rc = enrich_flow(&c->en, &fa, r, 4, r + 4, 4);
    if (rc == 0) rc = v5_bulk_lines(b, r, index, c, s, &fa);
    enrich_flow_clear(&fa);
    return rc;
}

typedef struct { const unsigned char *r; Py_ssize_t index; const V5Context *c; } V5Item;
static PyObject *v5_item_document(void *arg) {
    const V5Item *item = arg;
    return v5_document(item->r, item->index, item->c);
}

/* v5_bulk(<v5_documents' arguments>, action_head, keep_ids) -> list: each record's bulk lines (bytes), or
 * its document (dict) where a value cannot be written the way orjson writes it (flowsink.bulk encodes those) */
PyObject *py_v5_bulk(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer payload;
    Py_ssize_t count;
    V5Context c;
    unsigned long scale, uptime;
    PyObject *head;
    int keep_ids;
    if (!PyArg_ParseTuple(args, V5_ARGS "O!p", V5_ARG_POINTERS(c, payload, count, uptime, scale), &PyBytes_Type,
                          &head, &keep_ids))
        return NULL;
    c.scale = scale;
    c.uptime = (uint32_t)uptime;
    PyObject *out = NULL;
    BulkShared s;
    JsonBuf b = {NULL, 0, 0};
    int shared = -1;
    memset(&s, 0, sizeof(s));
    if (enrich_read(&c.en, c.enrichment) < 0) goto done;
    if (count < 0 || payload.len < 24 + count * 48) {
        PyErr_SetString(PyExc_ValueError, "payload shorter than its records");
        goto done;
    }
    shared = bulk_shared_begin(&s, head, keep_ids, c.timestamp, c.id_prefix, c.category, c.connection,
                               KEYS[V_NETFLOW_FLOW], c.exporter, c.tag, c.exporter_fields, &c.en);
    if (shared == 0) shared = v5_shared_extra(&s, &c);
    if (shared < 0) goto done;
    if ((out = PyList_New(0)) == NULL || jb_init(&b, 2048) < 0) { Py_CLEAR(out); goto done; }
    const unsigned char *records = (const unsigned char *)payload.buf + 24;
    for (Py_ssize_t i = 0; i < count; i++) {
        int rc = shared == 0 ? v5_bulk_one(&b, records + 48 * i, i, &c, &s) : 1;
        V5Item item = {records + 48 * i, i, &c};
        if (rc < 0 || bulk_append(out, &b, rc, v5_item_document, &item) < 0) { Py_CLEAR(out); goto done; }
    }
done:
    bulk_shared_free(&s);
    jb_free(&b);
    PyBuffer_Release(&payload);
    return out;
}
