/* NetFlow v9 / IPFIX record dicts -> ECS documents and bulk lines (template_documents.c): what
 * template_records.c's fixed_bulk, which reads fixed-length records straight from the bytes, builds on.
 */
#ifndef FLOWSINK_NATIVE_TEMPLATE_DOCUMENTS_H
#define FLOWSINK_NATIVE_TEMPLATE_DOCUMENTS_H

#include <Python.h>

#include "enrichment.h"
#include "json_writer.h"
#include "netflow_document.h"

/* 0 once normalize.netflow has called configure_netflow(); else -1 with RuntimeError set */
int flow_documents_ready(void);

/* the interned names template_documents.c reads attributes and record fields by; 0, or -1 on error */
int template_documents_init(void);

/* a FlowPlan's and an ExportContext's attributes, read once per data set */
#define PLAN_ATTRS 11
#define CONTEXT_ATTRS 7   /* export_ms, uptime_ms, timestamp, exporter, exporter_tag, exporter_fields, enrichment */
typedef struct {
    PyObject *plan[PLAN_ATTRS];
    PyObject *ctx[CONTEXT_ATTRS];
    Enrich en;             /* the context's enrichment, read */
    int relative_fields;   /* 0 when the records have none of _relative_times' elements (known from the layout) */
} SetAttrs;

int set_attrs_read(SetAttrs *a, PyObject *plan, PyObject *context);
void set_attrs_clear(SetAttrs *a);

/* A flow record's ECS values, as normalize.netflow.flow_document computes them: the document writer and the
 * bulk-line writer both start from these. */
typedef struct {
    PyObject *src_ip, *dst_ip, *src_port, *dst_port, *protocol;   /* borrowed from the record; NULL: none */
    long long proto;                 /* 0..255; -1: none */
    int start_set, end_set;          /* 0: none, 1: in *_ms, 2: in *_obj (beyond 64 bits) */
    long long start_ms, end_ms;
    PyObject *start_obj, *end_obj;   /* owned */
    int duration_set;                /* 0: none, 1: duration_ns, 2: duration_obj */
    long long duration_ns;
    PyObject *duration_obj;          /* owned */
    PyObject *bytes, *packets;       /* owned; NULL: none */
    PyObject *counters[4];           /* owned biflow source.bytes, source.packets, destination.bytes, .packets */
    PyObject *direction;             /* borrowed */
    int have_ids;                    /* Community ID in digest; else flow_id holds flow.id */
    unsigned char digest[20];
    PyObject *flow_id;               /* owned */
    PyObject *ingress, *egress;      /* borrowed ints; NULL: none */
    FlowAdditions fa;                /* the enrichment of its addresses */
} FlowEcs;

/* 0 with e filled, 1 when the record needs the Python path (decided before the record is changed), -1 on error;
 * flow_ecs_clear(e) either way */
int flow_ecs(FlowEcs *e, PyObject *record, PyObject *context, const SetAttrs *attrs, PyObject *rate, int renormalize,
             PyObject *time_fields, PyObject *system_init);
void flow_ecs_clear(FlowEcs *e);

/* the document of flow_ecs's values: flow_document's keys, in its order; the record becomes its netflow object */
PyObject *flow_ecs_document(const FlowEcs *e, PyObject *record, const SetAttrs *attrs, PyObject *doc_id,
                            PyObject *action, PyObject *rate, PyObject *interfaces);

/* the pieces every flow document of a data set shares (bulk_shared_begin with the set's context); 0, 1, -1 */
int flow_shared_begin(BulkShared *s, PyObject *head, int keep_ids, const SetAttrs *attrs, PyObject *prefix,
                      PyObject *action);

/* the bulk lines of flow_ecs's values (flow_ecs_document's, serialised) up to the netflow object's members,
 * `"netflow":{` included; 0, 1 when a value is not one orjson writes this way (the caller makes the document
 * instead), -1 on error */
int flow_ecs_bulk_head(JsonBuf *b, const FlowEcs *e, const BulkShared *s, Py_ssize_t index, PyObject *rate,
                       PyObject *interfaces);

/* sampling_rate is one rate for all records, or a list of one per record */
static inline PyObject *record_rate(PyObject *rate, Py_ssize_t i) {
    return PyList_Check(rate) && i < PyList_GET_SIZE(rate) ? PyList_GET_ITEM(rate, i) : rate;
}

#endif
