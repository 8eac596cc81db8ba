/* NetFlow v9 / IPFIX records read from the bytes as their template lays them out (template_cache.Template):
 *   fixed_records(...)     fixed-length records -> record dicts;
 *   variable_records(...)  records with variable-length fields -> record dicts, and where they stop;
 *   fixed_bulk(...)        fixed-length flow records straight to bulk lines, without a dict per record (only the
 *                          fields the ECS values come from go through one; template_documents.c writes the rest).
 * Each value is what template_cache's Python readers give (tests/test_decode_fast.py compares them).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#include "bytes_text.h"
#include "json_writer.h"
#include "module.h"
#include "netflow_document.h"
#include "template_documents.h"

/* value kinds, as flowsink.decode.template_cache.c_layout numbers them */
enum { KIND_UNSIGNED, KIND_SIGNED, KIND_FLOAT32, KIND_FLOAT64, KIND_IPV4, KIND_IPV6, KIND_MAC, KIND_STRING,
       KIND_BOOLEAN, KIND_HEX, KIND_UNSIGNED_ANY, KIND_SIGNED_ANY, KIND_FLOAT_ANY };

/* big-endian integers of up to 8 bytes */
static unsigned long long read_unsigned(const unsigned char *p, Py_ssize_t n) {
    unsigned long long v = 0;
    for (Py_ssize_t i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

static long long read_signed(const unsigned char *p, Py_ssize_t n) {
    unsigned long long v = (n && (p[0] & 0x80)) ? ~0ULL : 0;
    for (Py_ssize_t i = 0; i < n; i++) v = (v << 8) | p[i];
    return (long long)v;
}

/* "aa:bb:cc" text of n bytes into out[3n - 1] (nothing for 0 bytes) */
static void mac_chars(char *out, const unsigned char *p, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i) *out++ = ':';
        *out++ = HEX[p[i] >> 4]; *out++ = HEX[p[i] & 15];
    }
}

static PyObject *field_value(const unsigned char *p, Py_ssize_t n, int kind) {
    switch (kind) {
    case KIND_UNSIGNED: return PyLong_FromUnsignedLongLong(read_unsigned(p, n));
    case KIND_SIGNED: return PyLong_FromLongLong(read_signed(p, n));
    case KIND_FLOAT32: {
        uint32_t bits = be32(p);
        float f;
        memcpy(&f, &bits, 4);
        return PyFloat_FromDouble((double)f);
    }
    case KIND_FLOAT64: {
        uint64_t bits = ((uint64_t)be32(p) << 32) | be32(p + 4);
        double d;
        memcpy(&d, &bits, 8);
        return PyFloat_FromDouble(d);
    }
    case KIND_UNSIGNED_ANY:   /* variable-length integers: past 8 bytes hex, as template_cache._unsigned_variable */
        return field_value(p, n, n <= 8 ? KIND_UNSIGNED : KIND_HEX);
    case KIND_SIGNED_ANY:
        return field_value(p, n, n <= 8 ? KIND_SIGNED : KIND_HEX);
    case KIND_FLOAT_ANY:
        return field_value(p, n, n == 4 ? KIND_FLOAT32 : n == 8 ? KIND_FLOAT64 : KIND_HEX);
    case KIND_IPV4: return ipv4_text(p);
    case KIND_IPV6: {
        char text[INET6_ADDRSTRLEN];
        if (inet_ntop(AF_INET6, p, text, sizeof(text)) == NULL) return PyErr_SetFromErrno(PyExc_OSError);
        return ascii_text(text, (Py_ssize_t)strlen(text));
    }
    case KIND_MAC: {
        if (n == 0) return ascii_text("", 0);
        PyObject *out = PyUnicode_New(3 * n - 1, 127);
        if (out != NULL) mac_chars((char *)PyUnicode_1BYTE_DATA(out), p, n);
        return out;
    }
    case KIND_STRING: {
        Py_ssize_t len = n;
        while (len > 0 && p[len - 1] == 0) len--;
        return PyUnicode_DecodeUTF8((const char *)p, len, "replace");
    }
    case KIND_BOOLEAN: {
        int v = n ? p[0] : 0;
        if (v == 1) Py_RETURN_TRUE;
        if (v == 2) Py_RETURN_FALSE;
        return PyLong_FromLong(v);
    }
    default: {
        PyObject *out = PyUnicode_New(2 * n, 127);
        if (out != NULL) hex_chars((char *)PyUnicode_1BYTE_DATA(out), p, n);
        return out;
    }
    }
}

/* fixed_records(data, start, count, record_length, layout) -> [record dicts]; layout: ((name, offset, length,
 * kind), ...) in template order, 0-length fields already left out (template_cache.Template drops them too) */
PyObject *py_fixed_records(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer data;
    Py_ssize_t start, count, length;
    PyObject *layout;
    if (!PyArg_ParseTuple(args, "y*nnnO!", &data, &start, &count, &length, &PyTuple_Type, &layout)) return NULL;
    PyObject *records = NULL;
    Py_ssize_t fields = PyTuple_GET_SIZE(layout);
    if (start < 0 || count < 0 || length <= 0 || start + count * length > data.len) {
        PyErr_SetString(PyExc_ValueError, "records beyond the data");
        goto done;
    }
    /* the layout parsed once per call; the layout is ours, but a wrong one must not read past the record */
    Py_ssize_t *spec = PyMem_Malloc(sizeof(Py_ssize_t) * 3 * (size_t)(fields ? fields : 1));
    if (spec == NULL) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t f = 0; f < fields; f++) {
        PyObject *item = PyTuple_GET_ITEM(layout, f);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 4 || !PyUnicode_Check(PyTuple_GET_ITEM(item, 0))) {
            PyErr_SetString(PyExc_ValueError, "bad layout");
            goto free_spec;
        }
        Py_ssize_t offset = spec[3 * f] = PyLong_AsSsize_t(PyTuple_GET_ITEM(item, 1));
        Py_ssize_t size = spec[3 * f + 1] = PyLong_AsSsize_t(PyTuple_GET_ITEM(item, 2));
        spec[3 * f + 2] = PyLong_AsSsize_t(PyTuple_GET_ITEM(item, 3));
        if (PyErr_Occurred()) goto free_spec;
        if (offset < 0 || size < 0 || offset + size > length) {
            PyErr_SetString(PyExc_ValueError, "layout field outside the record");
            goto free_spec;
        }
    }
    records = PyList_New(count);
    if (records == NULL) goto free_spec;
    const unsigned char *base = (const unsigned char *)data.buf + start;
    for (Py_ssize_t r = 0; r < count; r++) {
        PyObject *record = _PyDict_NewPresized(fields + 1);
        if (record == NULL) { Py_CLEAR(records); goto free_spec; }
        PyList_SET_ITEM(records, r, record);
        const unsigned char *row = base + r * length;
        for (Py_ssize_t f = 0; f < fields; f++) {
            PyObject *value = field_value(row + spec[3 * f], spec[3 * f + 1], (int)spec[3 * f + 2]);
            if (value == NULL || PyDict_SetItem(record, PyTuple_GET_ITEM(PyTuple_GET_ITEM(layout, f), 0), value) < 0) {
                Py_XDECREF(value);
                Py_CLEAR(records);
                goto free_spec;
            }
            Py_DECREF(value);
        }
    }
free_spec:
    PyMem_Free(spec);
done:
    PyBuffer_Release(&data);
    return records;
}

/* variable_records(data, start, end, minimum, layout) -> (records, None | "truncated_record"); layout:
 * ((name, length or -1 for variable, kind), ...) for every field; records end where a field runs past `end`,
 * as template_cache.Template._decode_variable does (0-length fixed fields are left out, as it leaves them out) */
PyObject *py_variable_records(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer data;
    Py_ssize_t start, end, minimum;
    PyObject *layout;
    if (!PyArg_ParseTuple(args, "y*nnnO!", &data, &start, &end, &minimum, &PyTuple_Type, &layout)) return NULL;
    PyObject *records = NULL, *error = Py_None, *result = NULL;
    Py_ssize_t fields = PyTuple_GET_SIZE(layout);
    if (start < 0 || end > data.len || minimum < 1) {
        PyErr_SetString(PyExc_ValueError, "bad bounds");
        goto done;
    }
    for (Py_ssize_t f = 0; f < fields; f++) {
        PyObject *spec = PyTuple_GET_ITEM(layout, f);
        if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 3 || !PyUnicode_Check(PyTuple_GET_ITEM(spec, 0))) {
            PyErr_SetString(PyExc_ValueError, "bad layout");
            goto done;
        }
    }
    records = PyList_New(0);
    if (records == NULL) goto done;
    const unsigned char *buf = (const unsigned char *)data.buf;
    Py_ssize_t offset = start;
    while (end - offset >= minimum) {
        PyObject *record = _PyDict_NewPresized(fields);
        if (record == NULL) goto fail;
        for (Py_ssize_t f = 0; f < fields; f++) {
            PyObject *spec = PyTuple_GET_ITEM(layout, f);
            Py_ssize_t length = PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, 1));
            int kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(spec, 2));
            if (PyErr_Occurred()) { Py_DECREF(record); goto fail; }
            int variable = length < 0;
            if (variable) {
                if (offset >= end) { Py_DECREF(record); error = KEYS[V_TRUNCATED_RECORD]; goto finish; }
                length = buf[offset++];
                if (length == 255) {
                    if (offset + 2 > end) { Py_DECREF(record); error = KEYS[V_TRUNCATED_RECORD]; goto finish; }
                    length = (buf[offset] << 8) | buf[offset + 1];
                    offset += 2;
                }
            }
            if (offset + length > end) { Py_DECREF(record); error = KEYS[V_TRUNCATED_RECORD]; goto finish; }
            if (length > 0 || variable) {
                PyObject *value = field_value(buf + offset, length, kind);
                if (value == NULL || PyDict_SetItem(record, PyTuple_GET_ITEM(spec, 0), value) < 0) {
                    Py_XDECREF(value);
                    Py_DECREF(record);
                    goto fail;
                }
                Py_DECREF(value);
            }
            offset += length;
        }
        int rc = PyList_Append(records, record);
        Py_DECREF(record);
        if (rc < 0) goto fail;
    }
finish:
    result = Py_BuildValue("(OO)", records, error);
fail:
    Py_XDECREF(records);
done:
    PyBuffer_Release(&data);
    return result;
}

/* ---- fixed-length flow records straight to bulk lines ------------------------------------------------------- */

/* a fixed_bulk layout field's role (template_cache.BULK_*): the ECS values are computed from it, it is a dateTime
 * element (rewritten as ISO text), it is one of _relative_times' elements */
enum { ROLE_NEEDED = 1, ROLE_TIMED = 2, ROLE_RELATIVE = 4 };

/* one field of a fixed_bulk layout: where it is, how to read it, its `"name":` text, and whether the ECS
 * values are computed from it (it then goes through the small record dict flow_ecs reads) */
typedef struct {
    PyObject *name;
    Py_ssize_t offset, size;
    int kind, needed, timed;   /* timed: a dateTime element, rewritten in the small dict as ISO text */
    const char *key;
    Py_ssize_t key_len;
    PyObject *value;           /* needed: this record's value (borrowed from the small dict) */
} BulkField;

/* a field's value as field_value + jb_pyvalue would write it; 1 where that is not orjson's text (floats) */
static int jb_field(JsonBuf *b, const unsigned char *p, Py_ssize_t n, int kind) {
    switch (kind) {
    case KIND_UNSIGNED: return jb_u64(b, read_unsigned(p, n));
    case KIND_SIGNED: return jb_i64(b, read_signed(p, n));
    case KIND_IPV4: return jb_ipv4(b, p);
    case KIND_MAC:
        if (jb_reserve(b, 3 * n + 2) < 0) return -1;
        b->data[b->len++] = '"';
        if (n) { mac_chars(b->data + b->len, p, n); b->len += 3 * n - 1; }
        b->data[b->len++] = '"';
        return 0;
    case KIND_HEX:
        if (jb_char(b, '"') < 0 || jb_hex(b, p, n) < 0) return -1;
        return jb_char(b, '"');
    case KIND_BOOLEAN: {
        int v = n ? p[0] : 0;
        return v == 1 ? JB_LIT(b, "true") : v == 2 ? JB_LIT(b, "false") : jb_u64(b, (unsigned)v);
    }
    case KIND_STRING: {
        Py_ssize_t len = n;
        while (len > 0 && p[len - 1] == 0) len--;
        int ascii = 1;
        for (Py_ssize_t i = 0; i < len && ascii; i++) ascii = p[i] < 0x80;
        if (ascii) return jb_text(b, (const char *)p, len);
        break;   /* UTF-8 decoded with replacement, as field_value does */
    }
    default:
        break;
    }
    PyObject *value = field_value(p, n, kind);
    if (value == NULL) return -1;
    int rc = jb_pyvalue(b, value, 0);
    Py_DECREF(value);
    return rc;
}

/* the record as a dict, in layout order: the small record's (possibly rewritten) values where it has them */
static PyObject *full_record(const unsigned char *row, const BulkField *fields, Py_ssize_t count, PyObject *small) {
    PyObject *record = _PyDict_NewPresized(count + 1);
    for (Py_ssize_t f = 0; record != NULL && f < count; f++) {
        PyObject *value = fields[f].needed && small ? Py_XNewRef(PyDict_GetItemWithError(small, fields[f].name))
                                                    : field_value(row + fields[f].offset, fields[f].size, fields[f].kind);
        if (value == NULL || PyDict_SetItem(record, fields[f].name, value) < 0) Py_CLEAR(record);
        Py_XDECREF(value);
    }
    return record;
}

/* fixed_bulk(data, start, count, record_length, layout, context, id_prefix, action, sampling_rate, renormalize,
 * plan, time_fields, interfaces, system_init_ms, action_head, keep_ids) -> (items, declined, others):
 * fixed-length flow records read straight into bulk lines, without a dict per record (only the fields the ECS
 * values come from go through one). items: per record its lines (bytes), its document (dict: a value orjson
 * writes differently), or None, where the record (in declined, in order) needs the Python path; others: how many
 * items are not bytes. layout: ((name, offset, length, kind, role, b'"name":'), ...) in template order, 0-length
 * fields left out. */
PyObject *py_fixed_bulk(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer data;
    Py_ssize_t start, count, length;
    PyObject *layout, *context, *prefix, *action, *rate, *plan, *time_fields, *interfaces, *system_init, *head;
    int renormalize, keep_ids;
    if (!PyArg_ParseTuple(args, "y*nnnO!OUUOpOOOOO!p", &data, &start, &count, &length, &PyTuple_Type, &layout,
                          &context, &prefix, &action, &rate, &renormalize, &plan, &time_fields, &interfaces,
                          &system_init, &PyBytes_Type, &head, &keep_ids))
        return NULL;
    PyObject *items = NULL, *declined = NULL, *result = NULL, *small = NULL;
    Py_ssize_t others = 0;   /* items that are not bytes */
    BulkField *fields = NULL;
    BulkShared s;
    SetAttrs attrs;
    JsonBuf b = {NULL, 0, 0};
    int shared = -1, have_attrs = 0, named_exporter = 0, relative_fields = 0;
    Py_ssize_t n_fields = PyTuple_GET_SIZE(layout), n_needed = 0;
    memset(&s, 0, sizeof(s));
    if (flow_documents_ready() < 0) goto done;
    if (start < 0 || count < 0 || length <= 0 || count > (data.len - start) / length || start > data.len) {
        PyErr_SetString(PyExc_ValueError, "records beyond the data");
        goto done;
    }
    if ((fields = PyMem_Calloc((size_t)(n_fields ? n_fields : 1), sizeof(BulkField))) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t f = 0; f < n_fields; f++) {   /* ours, but a wrong one must not read past the record */
        PyObject *spec = PyTuple_GET_ITEM(layout, f);
        if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 6 || !PyUnicode_Check(PyTuple_GET_ITEM(spec, 0)) ||
            !PyBytes_Check(PyTuple_GET_ITEM(spec, 5))) {
            PyErr_SetString(PyExc_ValueError, "bad layout");
            goto done;
        }
        BulkField *field = &fields[f];
        field->name = PyTuple_GET_ITEM(spec, 0);
        field->offset = PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, 1));
        field->size = PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, 2));
        field->kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(spec, 3));
        long role = PyLong_AsLong(PyTuple_GET_ITEM(spec, 4));
        field->needed = (role & ROLE_NEEDED) != 0;
        field->timed = (role & ROLE_TIMED) != 0;
        relative_fields |= (role & ROLE_RELATIVE) != 0;
        field->key = PyBytes_AS_STRING(PyTuple_GET_ITEM(spec, 5));
        field->key_len = PyBytes_GET_SIZE(PyTuple_GET_ITEM(spec, 5));
        if (PyErr_Occurred()) goto done;
        if (field->offset < 0 || field->size < 0 || field->offset > length - field->size) {
            PyErr_SetString(PyExc_ValueError, "layout field outside the record");
            goto done;
        }
        n_needed += field->needed;
        /* a field of that name: the document replaces it in place, the Python path writes such records */
        if (PyUnicode_Compare(field->name, KEYS[K_EXPORTER]) == 0) named_exporter = 1;
    }
    if (set_attrs_read(&attrs, plan, context) < 0) goto done;
    have_attrs = 1;
    attrs.relative_fields = relative_fields;
    shared = flow_shared_begin(&s, head, keep_ids, &attrs, prefix, action);
    if (shared < 0 || (items = PyList_New(count)) == NULL || (declined = PyList_New(0)) == NULL ||
        jb_init(&b, 4096) < 0)
        goto done;
    /* one dict for every record: each sets the same keys, so no record allocates or resizes one */
    if ((small = _PyDict_NewPresized(n_needed)) == NULL) goto done;
    const unsigned char *base = (const unsigned char *)data.buf + start;
    for (Py_ssize_t r = 0; r < count; r++) {
        const unsigned char *row = base + r * length;
        PyObject *item_rate = record_rate(rate, r), *item = NULL;
        FlowEcs e;
        memset(&e, 0, sizeof(e));
        int rc = 0;
        for (Py_ssize_t f = 0; rc == 0 && f < n_fields; f++) {
            if (!fields[f].needed) continue;
            PyObject *value = fields[f].value = field_value(row + fields[f].offset, fields[f].size, fields[f].kind);
            if (value == NULL || PyDict_SetItem(small, fields[f].name, value) < 0) rc = -1;
            Py_XDECREF(value);   /* the small dict holds it */
        }
        if (rc == 0) rc = flow_ecs(&e, small, context, &attrs, item_rate, renormalize, time_fields, system_init);
        if (rc == 1) {   /* untouched: the whole record goes to the Python path */
            PyObject *record = full_record(row, fields, n_fields, NULL);
            rc = record == NULL || PyList_Append(declined, record) < 0 ? -1 : 0;
            Py_XDECREF(record);
            item = rc == 0 ? Py_NewRef(Py_None) : NULL;
        } else if (rc == 0) {
            rc = shared || named_exporter ? 1 : flow_ecs_bulk_head(&b, &e, &s, r, item_rate, interfaces);
            for (Py_ssize_t f = 0; rc == 0 && f < n_fields; f++) {
                const BulkField *field = &fields[f];
                if (f && (rc = jb_char(&b, ',')) != 0) break;
                if ((rc = jb_put(&b, field->key, field->key_len)) != 0) break;
                PyObject *value = !field->needed ? NULL : field->timed ? PyDict_GetItem(small, field->name)
                                                                       : field->value;
                rc = !field->needed ? jb_field(&b, row + field->offset, field->size, field->kind)
                                    : value ? jb_pyvalue(&b, value, 0) : 1;
            }
            if (rc == 0 && n_fields) rc = jb_char(&b, ',');
            if (rc == 0) rc = bulk_document_end(&b, &s, &e.fa);
            if (rc == 0) {
                item = jb_take(&b, 0);
            } else if (rc == 1) {   /* the document, from the same values, for flowsink.bulk to encode */
                b.len = 0;
                PyObject *record = full_record(row, fields, n_fields, small);
                PyObject *doc_id = record ? indexed_id(prefix, r) : NULL;
                item = doc_id ? flow_ecs_document(&e, record, &attrs, doc_id, action, item_rate, interfaces) : NULL;
                Py_XDECREF(doc_id);
                Py_XDECREF(record);
            }
        }
        flow_ecs_clear(&e);
        if (item == NULL) goto done;
        others += !PyBytes_CheckExact(item);
        PyList_SET_ITEM(items, r, item);
    }
    result = Py_BuildValue("(OOn)", items, declined, others);
done:
    Py_XDECREF(items);
    Py_XDECREF(declined);
    Py_XDECREF(small);
    PyMem_Free(fields);
    if (have_attrs) set_attrs_clear(&attrs);
    bulk_shared_free(&s);
    jb_free(&b);
    PyBuffer_Release(&data);
    return result;
}
