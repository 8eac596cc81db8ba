/* The enrichment hook of the C writers (enrichment.h): the AddressCache type, and the additions read, written and
 * put in dicts the way flowsink.enrich.hook puts them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "bytes_text.h"
#include "enrichment.h"
#include "json_writer.h"
#include "structmember.h"

/* ---- the address cache ------------------------------------------------------------------------------------------
 *
 * Set-associative: an address hashes to a set of WAYS slots; a miss fills an empty slot of its set, or replaces
 * them in turn. So the cache never grows past its slots, never empties all at once (a full dict cleared would
 * make every hot address miss together) and needs no rehashing; a miss costs one call of the Python lookup. The
 * hash is seeded per cache so that addresses chosen to collide cannot be prepared in advance. */

#define WAYS 4

typedef struct {
    PyObject *entry;   /* NULL: empty */
    int klass;
    int len;
    long long as_number;
    uint64_t key[2];   /* the packed address, zero-filled past len: compared as two words */
} Slot;

struct AddressCacheObject {
    PyObject_HEAD
    PyObject *lookup;   /* packed address -> AddressEntry */
    PyObject *flows;    /* the nine FlowEntry tuples */
    FlowHit flow_hits[9];
    Slot *slots;
    unsigned char *turn;   /* per set: the way a miss replaces next */
    size_t sets;           /* a power of two */
    uint64_t seed;
    unsigned long long hits, misses, evictions;
};

static PyTypeObject AddressCacheType;

static uint64_t address_hash(const AddressCacheObject *c, const uint64_t words[2], size_t len) {
    uint64_t h = (words[0] ^ c->seed ^ ((uint64_t)len << 56)) * 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h = (h ^ words[1]) * 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

static void cache_clear_slots(AddressCacheObject *c) {
    for (size_t i = 0; c->slots != NULL && i < c->sets * WAYS; i++) Py_CLEAR(c->slots[i].entry);
}

/* an AddressEntry (klass, fields, json, as_number, as_fields, rest, rest_json) as the writers read it; 0, or -1
 * with TypeError */
static int entry_parts(PyObject *entry, int *klass, long long *as_number) {
    if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 7) goto bad;
    long value = PyLong_Check(PyTuple_GET_ITEM(entry, 0)) ? PyLong_AsLong(PyTuple_GET_ITEM(entry, 0)) : -1;
    if (value == -1 && PyErr_Occurred()) PyErr_Clear();
    if (value != 1 && value != 2) goto bad;
    *klass = (int)value;
    PyObject *number = PyTuple_GET_ITEM(entry, 3);
    *as_number = PyLong_Check(number) ? PyLong_AsLongLong(number) : -2;
    if (*as_number == -1 && PyErr_Occurred()) PyErr_Clear(), *as_number = -2;
    if (*as_number < -1 || *as_number > 0xFFFFFFFFLL) goto bad;
    if (!PyDict_Check(PyTuple_GET_ITEM(entry, 1)) || !PyBytes_Check(PyTuple_GET_ITEM(entry, 2)) ||
        !PyDict_Check(PyTuple_GET_ITEM(entry, 4)) || !PyDict_Check(PyTuple_GET_ITEM(entry, 5)) ||
        !PyBytes_Check(PyTuple_GET_ITEM(entry, 6)))
        goto bad;
    return 0;
bad:
    PyErr_Format(PyExc_TypeError,
                 "the address lookup must give an AddressEntry (class 1 or 2, dict, bytes, AS number or -1, dict, dict, "
                 "bytes), not %R",
                 entry);
    return -1;
}

/* the entry of a packed address into hit (a new reference), from the slots or, on a miss, the lookup; 0 or -1 */
static int cache_get(AddressCacheObject *c, const unsigned char *key, size_t len, AddressHit *hit) {
    if (len != 4 && len != 16) {
        PyErr_SetString(PyExc_ValueError, "an address is 4 or 16 bytes");
        return -1;
    }
    uint64_t words[2] = {0, 0};
    memcpy(words, key, len);
    Slot *row = c->slots + (address_hash(c, words, len) & (c->sets - 1)) * WAYS;
    for (int w = 0; w < WAYS; w++) {
        if (row[w].entry != NULL && row[w].len == (int)len && row[w].key[0] == words[0] &&
            row[w].key[1] == words[1]) {
            c->hits++;
            hit->entry = Py_NewRef(row[w].entry);
            hit->klass = row[w].klass;
            hit->as_number = row[w].as_number;
            goto found;
        }
    }
    c->misses++;
    PyObject *packed = PyBytes_FromStringAndSize((const char *)key, (Py_ssize_t)len);
    PyObject *entry = packed == NULL ? NULL : PyObject_CallOneArg(c->lookup, packed);
    Py_XDECREF(packed);
    if (entry == NULL) return -1;
    int klass;
    long long as_number;
    if (entry_parts(entry, &klass, &as_number) < 0) {
        Py_DECREF(entry);
        return -1;
    }
    /* the set again: the lookup ran Python code (the slots array itself never moves) */
    size_t set = (size_t)(row - c->slots) / WAYS;
    int way = -1;
    for (int w = 0; w < WAYS && way < 0; w++)
        if (row[w].entry == NULL) way = w;
    if (way < 0) {
        way = c->turn[set]++ % WAYS;
        c->evictions++;
    }
    Py_XSETREF(row[way].entry, Py_NewRef(entry));
    row[way].klass = klass;
    row[way].as_number = as_number;
    row[way].len = (int)len;
    memcpy(row[way].key, words, sizeof(words));
    hit->entry = entry;
    hit->klass = klass;
    hit->as_number = as_number;
found:
    hit->fields = PyTuple_GET_ITEM(hit->entry, 1);
    hit->json = PyBytes_AS_STRING(PyTuple_GET_ITEM(hit->entry, 2));
    hit->json_len = PyBytes_GET_SIZE(PyTuple_GET_ITEM(hit->entry, 2));
    memcpy(hit->key, key, len);
    hit->len = (int)len;
    return 0;
}

/* AddressCache(lookup, flows, capacity): flows the nine FlowEntry tuples (flowsink.enrich.enricher.flow_table) */
static PyObject *cache_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"lookup", "flows", "capacity", NULL};
    PyObject *lookup, *flows;
    Py_ssize_t capacity;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!n", names, &lookup, &PyTuple_Type, &flows, &capacity))
        return NULL;
    if (!PyCallable_Check(lookup) || PyTuple_GET_SIZE(flows) != 9 || capacity < 1 || capacity > (1 << 26)) {
        PyErr_SetString(PyExc_ValueError, "AddressCache(lookup: callable, flows: 9 FlowEntry, capacity: 1..2^26)");
        return NULL;
    }
    FlowHit hits[9];
    for (int i = 0; i < 9; i++) {
        PyObject *flow = PyTuple_GET_ITEM(flows, i);
        if (!PyTuple_Check(flow) || PyTuple_GET_SIZE(flow) < 4 ||
            !(PyUnicode_Check(PyTuple_GET_ITEM(flow, 0)) || PyTuple_GET_ITEM(flow, 0) == Py_None) ||
            !PyBytes_Check(PyTuple_GET_ITEM(flow, 1)) || !PyDict_Check(PyTuple_GET_ITEM(flow, 2)) ||
            !PyBytes_Check(PyTuple_GET_ITEM(flow, 3))) {
            PyErr_Format(PyExc_TypeError, "flows[%d] is not a FlowEntry (direction, bytes, dict, bytes): %R", i,
                         flow);
            return NULL;
        }
        hits[i].direction = PyTuple_GET_ITEM(flow, 0) == Py_None ? NULL : PyTuple_GET_ITEM(flow, 0);
        hits[i].direction_json = PyBytes_AS_STRING(PyTuple_GET_ITEM(flow, 1));
        hits[i].direction_json_len = PyBytes_GET_SIZE(PyTuple_GET_ITEM(flow, 1));
        hits[i].fields = PyTuple_GET_ITEM(flow, 2);
        hits[i].json = PyBytes_AS_STRING(PyTuple_GET_ITEM(flow, 3));
        hits[i].json_len = PyBytes_GET_SIZE(PyTuple_GET_ITEM(flow, 3));
        if (hits[i].direction != NULL && hits[i].direction_json_len == 0) {
            PyErr_Format(PyExc_ValueError, "flows[%d]: a direction without its JSON", i);
            return NULL;
        }
    }
    AddressCacheObject *c = (AddressCacheObject *)type->tp_alloc(type, 0);
    if (c == NULL) return NULL;
    size_t sets = 1;
    while (sets * WAYS < (size_t)capacity) sets <<= 1;
    c->slots = PyMem_Calloc(sets * WAYS, sizeof(Slot));
    c->turn = PyMem_Calloc(sets, 1);
    if (c->slots == NULL || c->turn == NULL) {
        Py_DECREF(c);
        return PyErr_NoMemory();
    }
    c->sets = sets;
    c->seed = ((uint64_t)(uintptr_t)c * 0x9E3779B97F4A7C15ULL) ^ ((uint64_t)time(NULL) << 20) ^ (uint64_t)clock();
    c->lookup = Py_NewRef(lookup);
    c->flows = Py_NewRef(flows);
    memcpy(c->flow_hits, hits, sizeof(hits));
    return (PyObject *)c;
}

static int cache_traverse(AddressCacheObject *c, visitproc visit, void *arg) {
    Py_VISIT(c->lookup);   /* an Enricher's method: the Enricher holds this cache */
    Py_VISIT(c->flows);
    return 0;
}

static int cache_tp_clear(AddressCacheObject *c) {
    Py_CLEAR(c->lookup);
    Py_CLEAR(c->flows);
    cache_clear_slots(c);
    return 0;
}

static void cache_dealloc(AddressCacheObject *c) {
    PyObject_GC_UnTrack(c);
    cache_tp_clear(c);
    PyMem_Free(c->slots);
    PyMem_Free(c->turn);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static PyObject *cache_py_get(AddressCacheObject *c, PyObject *packed) {
    if (!PyBytes_Check(packed) || (PyBytes_GET_SIZE(packed) != 4 && PyBytes_GET_SIZE(packed) != 16)) {
        PyErr_SetString(PyExc_ValueError, "AddressCache.get takes a packed address: 4 or 16 bytes");
        return NULL;
    }
    if (c->lookup == NULL) {
        PyErr_SetString(PyExc_ValueError, "AddressCache cleared by the garbage collector");
        return NULL;
    }
    AddressHit hit;
    if (cache_get(c, (const unsigned char *)PyBytes_AS_STRING(packed), (size_t)PyBytes_GET_SIZE(packed), &hit) < 0)
        return NULL;
    return hit.entry;
}

static PyObject *cache_py_flow(AddressCacheObject *c, PyObject *args) {
    int source, destination;
    if (!PyArg_ParseTuple(args, "ii", &source, &destination)) return NULL;
    if (source < 0 || source > 2 || destination < 0 || destination > 2 || c->flows == NULL) {
        PyErr_SetString(PyExc_ValueError, "AddressCache.flow(source class, destination class): classes 0..2");
        return NULL;
    }
    return Py_NewRef(PyTuple_GET_ITEM(c->flows, 3 * source + destination));
}

static PyObject *cache_py_clear(AddressCacheObject *c, PyObject *Py_UNUSED(ignored)) {
    cache_clear_slots(c);
    Py_RETURN_NONE;
}

static Py_ssize_t cache_len(AddressCacheObject *c) {
    Py_ssize_t n = 0;
    for (size_t i = 0; c->slots != NULL && i < c->sets * WAYS; i++) n += c->slots[i].entry != NULL;
    return n;
}

static PyMethodDef CACHE_METHODS[] = {
    {"get", (PyCFunction)cache_py_get, METH_O, "get(packed) -> the address's AddressEntry (the lookup's, cached)"},
    {"flow", (PyCFunction)cache_py_flow, METH_VARARGS,
     "flow(source_class, destination_class) -> the FlowEntry of the pair (class 0: no address)"},
    {"clear", (PyCFunction)cache_py_clear, METH_NOARGS, "forget every cached address"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef CACHE_MEMBERS[] = {
    {"hits", T_ULONGLONG, offsetof(AddressCacheObject, hits), READONLY, "lookups answered from the cache"},
    {"misses", T_ULONGLONG, offsetof(AddressCacheObject, misses), READONLY, "lookups that called the lookup"},
    {"evictions", T_ULONGLONG, offsetof(AddressCacheObject, evictions), READONLY, "entries replaced when full"},
    {NULL, 0, 0, 0, NULL},
};

static PySequenceMethods CACHE_SEQUENCE = {.sq_length = (lenfunc)cache_len};

static PyTypeObject AddressCacheType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "flowsink.native._native.AddressCache",
    .tp_doc = "AddressCache(lookup, flows, capacity): per-address enrichment entries, bounded, looked up in C",
    .tp_basicsize = sizeof(AddressCacheObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = cache_new,
    .tp_dealloc = (destructor)cache_dealloc,
    .tp_traverse = (traverseproc)cache_traverse,
    .tp_clear = (inquiry)cache_tp_clear,
    .tp_methods = CACHE_METHODS,
    .tp_members = CACHE_MEMBERS,
    .tp_as_sequence = &CACHE_SEQUENCE,
};

static PyObject *KEY_NAME, *KEY_RELATED, *KEY_IP;

int enrichment_init(PyObject *module) {
    if (PyType_Ready(&AddressCacheType) < 0) return -1;
    if (PyModule_AddObjectRef(module, "AddressCache", (PyObject *)&AddressCacheType) < 0) return -1;
    if ((KEY_NAME = PyUnicode_InternFromString("name")) == NULL ||
        (KEY_RELATED = PyUnicode_InternFromString("related")) == NULL ||
        (KEY_IP = PyUnicode_InternFromString("ip")) == NULL)
        return -1;
    return 0;
}

/* ---- an exporter's additions --------------------------------------------------------------------------------- */

int enrich_read(Enrich *en, PyObject *object) {
    memset(en, 0, sizeof(*en));
    if (object == NULL || object == Py_None) return 0;
    if (!PyTuple_Check(object) || PyTuple_GET_SIZE(object) != 6) goto bad;
    PyObject *const *item = &PyTuple_GET_ITEM(object, 0);
    PyObject *cache = item[5];
    if (!PyDict_Check(item[0]) || !PyBytes_Check(item[1]) || !PyDict_Check(item[2]) || !PyBytes_Check(item[3]) ||
        !PyDict_Check(item[4]) || (cache != Py_None && !PyObject_TypeCheck(cache, &AddressCacheType)))
        goto bad;
    en->on = 1;
    en->observer_fields = item[0];
    en->observer_json = PyBytes_AS_STRING(item[1]);
    en->observer_json_len = PyBytes_GET_SIZE(item[1]);
    en->document_fields = item[2];
    en->document_json = PyBytes_AS_STRING(item[3]);
    en->document_json_len = PyBytes_GET_SIZE(item[3]);
    en->interfaces = PyDict_GET_SIZE(item[4]) ? item[4] : NULL;
    en->addresses = cache == Py_None || ((AddressCacheObject *)cache)->lookup == NULL ? NULL
                                                                                      : (AddressCacheObject *)cache;
    return 0;
bad:
    PyErr_Format(PyExc_TypeError, "enrichment must be an ExporterEnrichment or None, not %R", object);
    return -1;
}

/* ---- a flow's additions -------------------------------------------------------------------------------------- */

int enrich_flow(const Enrich *en, FlowAdditions *fa, const unsigned char *src, size_t src_len,
                const unsigned char *dst, size_t dst_len) {
    memset(fa, 0, sizeof(*fa));
    if (!en->on || en->addresses == NULL) return 0;
    fa->on = 1;
    if (src != NULL && src_len && cache_get(en->addresses, src, src_len, &fa->src) < 0) return -1;
    if (dst != NULL && dst_len && cache_get(en->addresses, dst, dst_len, &fa->dst) < 0) return -1;
    fa->flow = &en->addresses->flow_hits[3 * fa->src.klass + fa->dst.klass];
    fa->related_src = fa->src.entry != NULL;
    fa->related_dst = fa->dst.entry != NULL &&
                      !(fa->related_src && fa->src.len == fa->dst.len && memcmp(fa->src.key, fa->dst.key, fa->src.len) == 0);
    return 0;
}

void enrich_flow_clear(FlowAdditions *fa) {
    Py_CLEAR(fa->src.entry);
    Py_CLEAR(fa->dst.entry);
}

/* ---- configured interfaces ----------------------------------------------------------------------------------- */

int enrich_interface_key(const Enrich *en, PyObject *index, InterfaceHit *hit) {
    if (!en->on || en->interfaces == NULL) return 0;
    PyObject *found = PyDict_GetItemWithError(en->interfaces, index);
    if (found == NULL) return PyErr_Occurred() ? -1 : 0;
    PyObject *name = PyTuple_Check(found) && PyTuple_GET_SIZE(found) == 4 ? PyTuple_GET_ITEM(found, 0) : NULL;
    if (name == NULL || !(name == Py_None || PyUnicode_Check(name)) || !PyBytes_Check(PyTuple_GET_ITEM(found, 1)) ||
        !PyDict_Check(PyTuple_GET_ITEM(found, 2)) || !PyBytes_Check(PyTuple_GET_ITEM(found, 3))) {
        PyErr_Format(PyExc_TypeError, "interfaces hold InterfaceEnrichment (name, bytes, dict, bytes), not %R", found);
        return -1;
    }
    hit->name = name == Py_None ? NULL : name;
    hit->name_json = PyBytes_AS_STRING(PyTuple_GET_ITEM(found, 1));
    hit->name_json_len = PyBytes_GET_SIZE(PyTuple_GET_ITEM(found, 1));
    hit->tail = PyTuple_GET_ITEM(found, 2);
    hit->tail_json = PyBytes_AS_STRING(PyTuple_GET_ITEM(found, 3));
    hit->tail_json_len = PyBytes_GET_SIZE(PyTuple_GET_ITEM(found, 3));
    return 1;
}

int enrich_interface(const Enrich *en, unsigned long long index, InterfaceHit *hit) {
    if (!en->on || en->interfaces == NULL) return 0;
    PyObject *key = PyLong_FromUnsignedLongLong(index);
    if (key == NULL) return -1;
    int found = enrich_interface_key(en, key, hit);
    Py_DECREF(key);
    return found;
}

/* ---- bulk lines ---------------------------------------------------------------------------------------------- */

/* an address of related.ip: the writer's text, or the packed address as inet_ntop writes it, quoted */
static int jb_related_address(JsonBuf *b, PyObject *written, const unsigned char *key, int len) {
    if (written != NULL) return jb_pystr(b, written);
    if (len == 4) return jb_ipv4(b, key);
    char text[INET6_ADDRSTRLEN];
    if (inet_ntop(AF_INET6, key, text, sizeof(text)) == NULL) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return jb_text(b, text, (Py_ssize_t)strlen(text));
}

int jb_enrich_document(JsonBuf *b, const Enrich *en, const FlowAdditions *fa) {
    if (!en->on) return 0;
    if (fa != NULL && fa->on && (fa->related_src || fa->related_dst)) {
        int rc;
        if (JB_LIT(b, ",\"related\":{\"ip\":[") < 0) return -1;
        /* the texts are addresses inet_pton took (ASCII), so jb_pystr never declines them; if it did, so would
         * the document */
        if (fa->related_src && (rc = jb_related_address(b, fa->src_text, fa->src.key, fa->src.len)) != 0) return rc;
        if (fa->related_src && fa->related_dst && jb_char(b, ',') < 0) return -1;
        if (fa->related_dst && (rc = jb_related_address(b, fa->dst_text, fa->dst.key, fa->dst.len)) != 0) return rc;
        if (JB_LIT(b, "]}") < 0) return -1;
    }
    return en->document_json_len ? jb_put(b, en->document_json, en->document_json_len) : 0;
}

int jb_enrich_endpoint_as(JsonBuf *b, const AddressHit *hit, long long own) {
    if (own < 0) return jb_enrich_endpoint(b, hit);   /* no number of its own: the entry as it is */
    /* the database's "as" (its number, its organization) when it agrees, or fills the exporter's 0 */
    if (hit->entry != NULL && hit->as_number >= 0 && (own == 0 || own == hit->as_number))
        return jb_enrich_endpoint(b, hit);
    /* the exporter's number: the database knows none for the address, or another one */
    if (JB_LIT(b, ",\"as\":{\"number\":") < 0 || jb_u64(b, (unsigned long long)own) < 0 || jb_char(b, '}') < 0)
        return -1;
    if (hit->entry == NULL) return 0;
    PyObject *rest = PyTuple_GET_ITEM(hit->entry, 6);
    return PyBytes_GET_SIZE(rest) ? jb_put(b, PyBytes_AS_STRING(rest), PyBytes_GET_SIZE(rest)) : 0;
}

int jb_enrich_interface_rest(JsonBuf *b, const InterfaceHit *hit, int configured, PyObject *own_name) {
    if (configured && hit->name != NULL) {
        if (jb_put(b, hit->name_json, hit->name_json_len) < 0) return -1;
    } else if (own_name != NULL) {
        if (JB_LIT(b, ",\"name\":") < 0) return -1;
        int rc = jb_pyvalue(b, own_name, 0);
        if (rc) return rc;
    }
    return configured && hit->tail_json_len ? jb_put(b, hit->tail_json, hit->tail_json_len) : 0;
}

int jb_enrich_interface(JsonBuf *b, const Enrich *en, unsigned long long index, PyObject *own_name) {
    InterfaceHit hit;
    int configured = enrich_interface(en, index, &hit);
    if (configured < 0) return -1;
    if (JB_LIT(b, "{\"interface\":{\"id\":\"") < 0 || jb_u64(b, index) < 0 || jb_char(b, '"') < 0) return -1;
    int rc = jb_enrich_interface_rest(b, &hit, configured, own_name);
    if (rc) return rc;
    return JB_LIT(b, "}}");
}

/* ---- dict documents ------------------------------------------------------------------------------------------ */

int enrich_dict_interface(PyObject *interface, const InterfaceHit *hit) {
    if (hit->name != NULL && PyDict_SetItem(interface, KEY_NAME, hit->name) < 0) return -1;
    return PyDict_GET_SIZE(hit->tail) ? PyDict_Update(interface, hit->tail) : 0;
}

int enrich_dict_observer(PyObject *observer, const Enrich *en) {
    return en->on && PyDict_GET_SIZE(en->observer_fields) ? PyDict_Update(observer, en->observer_fields) : 0;
}

int enrich_dict_endpoint(PyObject *endpoint, const AddressHit *hit) {
    return hit->entry != NULL && PyDict_GET_SIZE(hit->fields) ? PyDict_Update(endpoint, hit->fields) : 0;
}

int enrich_dict_flow(PyObject *flow, const FlowAdditions *fa) {
    return fa->on && PyDict_GET_SIZE(fa->flow->fields) ? PyDict_Update(flow, fa->flow->fields) : 0;
}

static PyObject *packed_text(const unsigned char *key, int len) {
    if (len == 4) return ipv4_text(key);
    char text[INET6_ADDRSTRLEN];
    if (inet_ntop(AF_INET6, key, text, sizeof(text)) == NULL) return PyErr_SetFromErrno(PyExc_OSError);
    return ascii_text(text, (Py_ssize_t)strlen(text));
}

int enrich_dict_document(PyObject *document, const Enrich *en, const FlowAdditions *fa) {
    if (!en->on) return 0;
    if (fa != NULL && fa->on && (fa->related_src || fa->related_dst)) {
        PyObject *ips = PyList_New(0), *related = PyDict_New();
        int rc = ips == NULL || related == NULL ? -1 : 0;
        const AddressHit *ends[2] = {fa->related_src ? &fa->src : NULL, fa->related_dst ? &fa->dst : NULL};
        PyObject *texts[2] = {fa->src_text, fa->dst_text};
        for (int i = 0; rc == 0 && i < 2; i++) {
            if (ends[i] == NULL) continue;
            PyObject *text = texts[i] != NULL ? Py_NewRef(texts[i]) : packed_text(ends[i]->key, ends[i]->len);
            rc = text == NULL ? -1 : PyList_Append(ips, text);
            Py_XDECREF(text);
        }
        if (rc == 0) rc = PyDict_SetItem(related, KEY_IP, ips);
        if (rc == 0) rc = PyDict_SetItem(document, KEY_RELATED, related);
        Py_XDECREF(ips);
        Py_XDECREF(related);
        if (rc < 0) return -1;
    }
    return PyDict_GET_SIZE(en->document_fields) ? PyDict_Update(document, en->document_fields) : 0;
}
