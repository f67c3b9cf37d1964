/*
 * Starting the embedded interpreter. Compiled inside the cffi-generated source (it is the
 * set_source preamble), because cffi_start_python() is static there.
 *
 * RDC_PYTHON_EXECUTABLE (the bin/python of the virtualenv or install that built the module)
 * and RDC_LIBPYTHON (its libpython soname) are written in by build_bridge.py.
 */
#include <dlfcn.h>
#include <stdio.h>

int rdc_python_start(char *err, size_t err_len)
{
	PyPreConfig preconfig;
	PyConfig config;
	PyStatus status;

	/* Asterisk dlopens modules RTLD_LOCAL, so libpython came in as a local dependency and
	 * Python's extension modules (which do not link libpython) could not resolve its
	 * symbols. Promote it to global; NODELETE because the interpreter outlives the module. */
	if (!dlopen(RDC_LIBPYTHON, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD | RTLD_NODELETE)) {
		snprintf(err, err_len, "cannot make %s global: %s", RDC_LIBPYTHON, dlerror());
		return -1;
	}

	/* Started once per Asterisk process and never finalized: later loads join it. */
	if (!Py_IsInitialized()) {
		/* Isolated: Asterisk's environment, argv, locale and signals stay Asterisk's. */
		PyPreConfig_InitIsolatedConfig(&preconfig);
		preconfig.utf8_mode = 1;
		status = Py_PreInitialize(&preconfig);
		if (PyStatus_Exception(status)) {
			snprintf(err, err_len, "Python pre-initialization failed: %s",
				status.err_msg ? status.err_msg : "unknown error");
			return -1;
		}

		PyConfig_InitIsolatedConfig(&config);
		config.install_signal_handlers = 0;
		config.parse_argv = 0;
		config.use_environment = 0;
		config.user_site_directory = 0;
		config.site_import = 1;
		/* The executable decides sys.prefix: a virtualenv's pyvenv.cfg is found from it. */
		status = PyConfig_SetBytesString(&config, &config.program_name, RDC_PYTHON_EXECUTABLE);
		if (!PyStatus_Exception(status)) {
			status = PyConfig_SetBytesString(&config, &config.executable, RDC_PYTHON_EXECUTABLE);
		}
		if (!PyStatus_Exception(status)) {
			status = Py_InitializeFromConfig(&config);
		}
		PyConfig_Clear(&config);
		if (PyStatus_Exception(status)) {
			snprintf(err, err_len, "Python initialization with %s failed: %s",
				RDC_PYTHON_EXECUTABLE, status.err_msg ? status.err_msg : "unknown error");
			return -1;
		}
		/* Release the GIL taken by initialization; every entry point takes it itself. */
		PyEval_SaveThread();
	}

	if (cffi_start_python()) {
		snprintf(err, err_len, "cffi could not start the module's Python side "
			"(its error went to Asterisk's stderr); check that %s has cffi and asterisk_consul installed",
			RDC_PYTHON_EXECUTABLE);
		return -1;
	}
	return 0;
}

/*
 * cffi caches, per extern "Python" function, the Python callable that serves it: one reference
 * in the function's static struct (in this mapping) and one in an interpreter-wide dict keyed
 * by that struct's address. Nothing releases them when Asterisk unmaps the module, so every
 * unload/load cycle would keep its Python side alive. Drop them while still mapped.
 * RDC_EXTERNPY_LIST (written by build_bridge.py) names the functions: X(rdc_py_load) ...
 */
#define X(name) static struct _cffi_externpy_s _cffi_externpy__##name;
RDC_EXTERNPY_LIST
#undef X

static void release_externpy(struct _cffi_externpy_s *externpy, PyObject *registry)
{
	PyObject *key;

	Py_CLEAR(*(PyObject **) &externpy->reserved1);
	Py_CLEAR(*(PyObject **) &externpy->reserved2);
	if (registry) {
		key = PyLong_FromVoidPtr(externpy);
		if (key && PyDict_DelItem(registry, key) < 0) {
			PyErr_Clear();  /* never attached: nothing to drop */
		}
		Py_XDECREF(key);
	}
}

void rdc_python_release(void)
{
	PyGILState_STATE gil;
	PyObject *interp_dict, *registry = NULL;

	if (!Py_IsInitialized()) {
		return;
	}
	gil = PyGILState_Ensure();
	interp_dict = PyInterpreterState_GetDict(PyInterpreterState_Get());
	if (interp_dict) {
		registry = PyDict_GetItemString(interp_dict, "__cffi_backend_extern_py");
	}
#define X(name) release_externpy(&_cffi_externpy__##name, registry);
	RDC_EXTERNPY_LIST
#undef X
	PyErr_Clear();
	PyGILState_Release(gil);
}
