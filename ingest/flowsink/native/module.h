/* The entry points module.c puts in flowsink.native._native, and each part's start-up, declared once so that
 * every definition is checked against what the module table calls. */
#ifndef FLOWSINK_NATIVE_MODULE_H
#define FLOWSINK_NATIVE_MODULE_H

#include <Python.h>

/* community_id.c */
PyObject *py_community_pair(PyObject *self, PyObject *args);
PyObject *py_community_digest(PyObject *self, PyObject *args);

/* netflow_v5.c */
PyObject *py_v5_documents(PyObject *self, PyObject *args);
PyObject *py_v5_bulk(PyObject *self, PyObject *args);

/* template_documents.c */
PyObject *py_flow_documents(PyObject *self, PyObject *args);
PyObject *py_flow_bulk(PyObject *self, PyObject *args);
PyObject *py_options_bulk(PyObject *self, PyObject *args);
PyObject *py_configure_netflow(PyObject *self, PyObject *args);

/* template_records.c */
PyObject *py_fixed_records(PyObject *self, PyObject *args);
PyObject *py_variable_records(PyObject *self, PyObject *args);
PyObject *py_fixed_bulk(PyObject *self, PyObject *args);

/* sflow.c */
PyObject *py_sflow_samples(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *py_sflow_flow_sample(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *py_encode_documents(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
int sflow_init(void);

#endif
