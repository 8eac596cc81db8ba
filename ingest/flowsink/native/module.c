/*
 * flowsink.native._native: the optional C extension behind flowsink's decoders (loaded by flowsink.native).
 *
 * Why C: profiles of bench/bench_decode.py and bench/bench_decode_sflow.py put most of the decoders' time in
 * building each ECS document and serialising it, the interpreter's cost per value; these writers build the same
 * documents (or write their bulk lines directly) at a fraction of it. Every entry point has a pure-Python path
 * that gives byte-identical output (tests/test_decode_fast*.py, tests/test_decode_bulk*.py compare them), which
 * is also what runs when the extension is not built or FLOWSINK_NO_EXTENSION is set.
 *
 * One module built from one file per concern, so that the parts call each other directly:
 *   community_id.c        Community ID v1 (SHA-1 of the 5-tuple), for every protocol
 *   enrichment.c          what flowsink.enrich adds to documents: the AddressCache type, the additions' slots
 *   times.c               ISO-8601 text of epoch milliseconds
 *   netflow_document.c    what the NetFlow writers share (keys, ids, interface objects, shared bulk pieces)
 *   netflow_v5.c          NetFlow v5 datagrams -> documents / bulk lines
 *   template_documents.c  NetFlow v9 / IPFIX record dicts -> documents / bulk lines
 *   template_records.c    NetFlow v9 / IPFIX records read from the bytes by their template's layout
 *   sflow.c               sFlow v5 samples -> documents / bulk lines
 * and header-only helpers: bytes_text.h, json_writer.h, bulk_line.h, ecs_documents.h.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "enrichment.h"
#include "module.h"
#include "netflow_document.h"
#include "template_documents.h"

/* What the Python code calls: flowsink.native refuses a build of another version (a stale .so, not rebuilt
 * after an update), which would be called with arguments it does not take. Raise it with any change to an entry
 * point's arguments or results. */
#define INTERFACE_VERSION 2

static PyMethodDef METHODS[] = {
    {"v5_documents", py_v5_documents, METH_VARARGS,
     "v5_documents(payload, count, exporter, timestamp, exporter_fields, exporter_tag, id_prefix, category, "
     "connection, export_ms, uptime, rate, scale, engine_type, engine_id, sampling_interval, sampling_mode, "
     "sequence, enrichment) -> list of ECS documents"},
    {"v5_bulk", py_v5_bulk, METH_VARARGS,
     "v5_bulk(<v5_documents' arguments>, action_head, keep_ids) -> list of bulk lines (bytes), a document "
     "(dict) where a value must be encoded by flowsink.bulk"},
    {"flow_bulk", py_flow_bulk, METH_VARARGS,
     "flow_bulk(<flow_documents' arguments>, action_head, keep_ids) -> list of bulk lines (bytes), documents "
     "(dict) for flowsink.bulk to encode, or None where a record needs the Python path"},
    {"fixed_bulk", py_fixed_bulk, METH_VARARGS,
     "fixed_bulk(data, start, count, record_length, layout, <flow_documents' arguments after records>, "
     "action_head, keep_ids) -> (bulk lines, documents or None per record; the records None stands for; how many "
     "items are not bytes)"},
    {"options_bulk", py_options_bulk, METH_VARARGS,
     "options_bulk(records, context, id_prefix, time_fields, action_head, keep_ids) -> list of bulk lines "
     "(bytes), None where a record needs the Python path"},
    {"flow_documents", py_flow_documents, METH_VARARGS,
     "flow_documents(records, context, id_prefix, action, sampling_rate, renormalize, plan, time_fields, "
     "interfaces, system_init_ms) -> list of documents, None where a record needs the Python path (the "
     "enrichment is the context's)"},
    {"configure_netflow", py_configure_netflow, METH_VARARGS,
     "configure_netflow(record_times, iso_ms, flow_id, directions, category, connection, max_long, "
     "max_duration_ms)"},
    {"variable_records", py_variable_records, METH_VARARGS,
     "variable_records(data, start, end, minimum, layout) -> (records, None or 'truncated_record')"},
    {"fixed_records", py_fixed_records, METH_VARARGS,
     "fixed_records(data, start, count, record_length, layout) -> list of record dicts"},
    {"community_pair", py_community_pair, METH_VARARGS,
     "community_pair(src_ip, dst_ip, proto, sport, dport, exporter_tag) -> (community_id, flow_id) or None"},
    {"community_digest", py_community_digest, METH_VARARGS,
     "community_digest(src, dst, proto, sport, dport, seed) -> SHA-1 digest of the Community ID, or None"},
    {"sflow_flow_sample", (PyCFunction)(void (*)(void))py_sflow_flow_sample, METH_FASTCALL,
     "sflow_flow_sample(data, timestamp, id_prefix, tag, agent, fields, renormalize, start, end, index"
     "[, enrichment]) -> (document, sample_sequence, source_id), or None when the sample is not the common case"},
    {"sflow_samples", (PyCFunction)(void (*)(void))py_sflow_samples, METH_FASTCALL,
     "sflow_samples(data, timestamp, id_prefix, tag, agent, fields, renormalize, offset, index, count, documents, "
     "runs[, encoded, action_head, keep_ids][, enrichment]) -> (offset, index, flows, counters): the run of "
     "samples from offset, into documents (or, with a bulk format, encoded as bulk lines) and runs"},
    {"encode_documents", (PyCFunction)(void (*)(void))py_encode_documents, METH_FASTCALL,
     "encode_documents(documents, encoded, action_head, keep_ids) -> written: dict documents as bulk lines into "
     "encoded; those not written as orjson would stay in documents"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_native",
                                    "C writers behind flowsink's decoders (loaded by flowsink.native)", -1, METHODS,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void) {
    if (netflow_document_init() < 0 || template_documents_init() < 0 || sflow_init() < 0) return NULL;
    PyObject *module = PyModule_Create(&MODULE);
    if (module != NULL &&
        (PyModule_AddIntConstant(module, "INTERFACE_VERSION", INTERFACE_VERSION) < 0 || enrichment_init(module) < 0))
        Py_CLEAR(module);
    return module;
}
