/* The enrichment hook of the C writers: what flowsink.enrich adds to a document, applied at the same places as
 * flowsink.enrich.hook applies it on the Python path (docs/design.md, "Where a new field goes").
 *
 * The additions arrive rendered (flowsink/enrich/enricher.py): per exporter an ExporterEnrichment tuple, read once
 * per call (Enrich); per address an AddressEntry from the AddressCache (a C type: a bounded cache keyed by the
 * packed address that calls the Python lookup only on a miss); per flow a FlowEntry of the cache's table of the
 * nine (source class, destination class) pairs. Each holds its dict (for the dict builders) and the same members
 * as JSON rendered by orjson (for the bulk writers, which copy them): no writer formats an added value itself,
 * so every writer adds the same bytes. The one per-flow text written here is related.ip, from the packed
 * addresses, as inet_ntop writes them (hook.packed_addresses does the same).
 *
 * The slots, in every writer: network.direction (decided before it is written: the flow entry's, else the
 * writer's own), the end of observer.{ingress,egress}.interface (the configured name in place of the exporter's
 * own, after id; then alias, speed), the end of observer, source, destination and flow, and the end of the
 * document (related, then labels and tags).
 */
#ifndef FLOWSINK_NATIVE_ENRICHMENT_H
#define FLOWSINK_NATIVE_ENRICHMENT_H

#include <Python.h>
#include <stddef.h>

#include "json_writer.h"

typedef struct AddressCacheObject AddressCacheObject;

/* One exporter's additions, borrowed from its ExporterEnrichment (alive for the writer's call). */
typedef struct {
    int on;   /* 0: nothing is added (no enrich section, or nothing for this exporter) */
    PyObject *observer_fields, *document_fields;   /* dicts */
    const char *observer_json, *document_json;     /* their members as JSON, each with its leading comma */
    Py_ssize_t observer_json_len, document_json_len;
    PyObject *interfaces;            /* dict ifIndex -> InterfaceEnrichment; NULL when empty */
    AddressCacheObject *addresses;   /* NULL: no per-address additions */
} Enrich;

/* A configured ifIndex (InterfaceEnrichment), borrowed. */
typedef struct {
    PyObject *name;   /* str, or NULL: the exporter's own name stays */
    const char *name_json, *tail_json;   /* ,"name":".." and ,"alias":..,"speed":.. */
    Py_ssize_t name_json_len, tail_json_len;
    PyObject *tail;   /* dict */
} InterfaceHit;

/* One end's AddressEntry, owned while a document is written. */
typedef struct {
    PyObject *entry;   /* NULL: this end has no address */
    int klass;         /* 1 internal, 2 external; 0 without an address */
    long long as_number;   /* the database's AS number, -1 without */
    PyObject *fields;
    const char *json;
    Py_ssize_t json_len;
    unsigned char key[16];   /* the packed address */
    int len;
} AddressHit;

/* A FlowEntry of the cache's table, borrowed from the cache. */
typedef struct {
    PyObject *direction;   /* str, or NULL: the writer's own network.direction stays */
    const char *direction_json, *json;
    Py_ssize_t direction_json_len, json_len;
    PyObject *fields;
} FlowHit;

/* A flow's per-address additions. */
typedef struct {
    int on;   /* 0: none (no cache for this exporter) */
    AddressHit src, dst;
    const FlowHit *flow;
    int related_src, related_dst;   /* which addresses related.ip lists */
    /* source.ip and destination.ip as the writer wrote them (str, borrowed), for related.ip; NULL: the text is
     * inet_ntop's of the packed address, which is what the writer wrote */
    PyObject *src_text, *dst_text;
} FlowAdditions;

/* the AddressCache type; 0, or -1 with an exception */
int enrichment_init(PyObject *module);

/* en from an ExporterEnrichment, or off for NULL / None; -1 with TypeError for anything else */
int enrich_read(Enrich *en, PyObject *object);

/* fa for a flow's packed addresses (NULL / length 0: that end has none); fa->on is 0 without a cache. -1 on error
 * (the lookup raised); enrich_flow_clear(fa) in every case once it returned */
int enrich_flow(const Enrich *en, FlowAdditions *fa, const unsigned char *src, size_t src_len,
                const unsigned char *dst, size_t dst_len);
void enrich_flow_clear(FlowAdditions *fa);

/* 1 with *hit filled when the exporter's configuration has this ifIndex, 0 when not, -1 on error */
int enrich_interface(const Enrich *en, unsigned long long index, InterfaceHit *hit);
int enrich_interface_key(const Enrich *en, PyObject *index, InterfaceHit *hit);   /* index an int object */

/* ---- bulk lines ---------------------------------------------------------------------------------------------- */

static inline int jb_enrich_observer(JsonBuf *b, const Enrich *en) {
    return en->on && en->observer_json_len ? jb_put(b, en->observer_json, en->observer_json_len) : 0;
}

static inline int jb_enrich_endpoint(JsonBuf *b, const AddressHit *hit) {
    return hit->entry != NULL && hit->json_len ? jb_put(b, hit->json, hit->json_len) : 0;
}

/* the end of source / destination of a writer with an AS number of its own (sFlow's extended gateway record; own
 * -1 without one), written where "as" goes (after "mac"): the "as" decided (the exporter's number, with the
 * database's organization when the database gives the same number; the database's when the exporter's is 0, the
 * reserved "no AS" of RFC 7607), then the rest of the address entry (geo, locality) */
int jb_enrich_endpoint_as(JsonBuf *b, const AddressHit *hit, long long own);

static inline int jb_enrich_flow(JsonBuf *b, const FlowAdditions *fa) {
    return fa->on && fa->flow->json_len ? jb_put(b, fa->flow->json, fa->flow->json_len) : 0;
}

/* the quoted network.direction the flow entry decides, NULL when the writer's own stays */
static inline const FlowHit *enrich_direction(const FlowAdditions *fa) {
    return fa->on && fa->flow->direction != NULL ? fa->flow : NULL;
}

/* the end of the document after the protocol's object: ,"related":{"ip":[..]} (source.ip and destination.ip as
 * written, each address once) and the exporter's members; 0, 1 (a text not written as orjson would: the caller
 * declines the document), -1 */
int jb_enrich_document(JsonBuf *b, const Enrich *en, const FlowAdditions *fa);

/* after an interface's "id": the configured name (else the exporter's own, own_name NULL for none, written as
 * jb_pyvalue writes it), then the configured alias and speed; 1 when own_name is a value orjson writes otherwise */
int jb_enrich_interface_rest(JsonBuf *b, const InterfaceHit *hit, int configured, PyObject *own_name);

/* {"interface":{"id":"<index>"..}}: jb_enrich_interface_rest after the id; 0, 1, -1 */
int jb_enrich_interface(JsonBuf *b, const Enrich *en, unsigned long long index, PyObject *own_name);

/* ---- dict documents ------------------------------------------------------------------------------------------ */

/* the interface dict {"id": ..[, "name": own]} of a configured ifIndex completed: the configured name in place,
 * then alias and speed */
int enrich_dict_interface(PyObject *interface, const InterfaceHit *hit);
int enrich_dict_observer(PyObject *observer, const Enrich *en);
int enrich_dict_endpoint(PyObject *endpoint, const AddressHit *hit);
int enrich_dict_flow(PyObject *flow, const FlowAdditions *fa);
int enrich_dict_document(PyObject *document, const Enrich *en, const FlowAdditions *fa);

#endif
