/*
 * The whole interface between the Asterisk shim (shim.c) and the Python package.
 *
 * This file is read twice: by the C compiler (through shim.c and the cffi-generated
 * source) and by cffi's cdef, which cannot parse preprocessor lines, so build_bridge.py
 * drops every line starting with '#'. Keep declarations plain C.
 */
#ifndef RDC_BRIDGE_API_H
#define RDC_BRIDGE_API_H
#include <stddef.h>

/* Status codes: 0 is what cffi returns when no Python code is attached, so it is never success. */
enum {
    RDC_OK = 1,
    RDC_DECLINE = 2,
    RDC_CLI_SHOWUSAGE = 2,
    RDC_CLI_FAILURE = 3
};

/* Methods a declared answer answers (rdc_host_http_declare), as bits. */
enum {
    RDC_HTTP_GET = 1,
    RDC_HTTP_HEAD = 2
};

/* Levels of rdc_host_log, mapped by the shim onto Asterisk's logger. */
enum rdc_log_level {
    RDC_LOG_DEBUG = 0,
    RDC_LOG_VERBOSE = 1,
    RDC_LOG_NOTICE = 2,
    RDC_LOG_WARNING = 3,
    RDC_LOG_ERROR = 4
};

/* ---- Python -> Asterisk: implemented in shim.c, called by asterisk_consul/bridge.py ---- */

void rdc_host_log(int level, const char *file, int line, const char *func, const char *message);
/* The version of the package this shim was built from (RDC_VERSION at build time). */
const char *rdc_host_shim_version(void);
int rdc_host_eid(char *buf, size_t len);
const char *rdc_host_version(void);
const char *rdc_host_config_dir(void);
int rdc_host_fully_booted(void);
int rdc_host_shutting_down(void);
/* 1 once any `core stop|restart` was asked for ('when convenient' included); cheap. */
int rdc_host_stop_requested(void);
/* The stop seen was cancelled: Asterisk's leftover sign of a 'when convenient' stop (the gone
 * message queue) no longer counts, for the life of the process. */
void rdc_host_forget_stop_request(void);
int rdc_host_active_channels(void);
/* 1 when a loaded channel driver has registered the technology `name` ("PJSIP", "SIP"). */
int rdc_host_channel_tech(const char *name);
int rdc_host_db_get(const char *family, const char *key, char *buf, int len);
int rdc_host_db_put(const char *family, const char *key, const char *value);
void rdc_host_manager_event(const char *event, const char *body);

/* Declarations made by Python during rdc_py_load; the shim registers them afterwards. */
int rdc_host_declare_cli(const char *command, const char *summary, const char *usage);
int rdc_host_declare_ami(const char *action, const char *synopsis);
int rdc_host_declare_http(const char *uri, const char *description);

/* Declared answers: the complete answer to one exact request on an HTTP route (its methods,
 * RDC_HTTP_* bits, its path and its query parameters, in order), which the shim replays without
 * calling Python while the pulse vouches for it. Python alone decides the answer and declares
 * it again whenever it changes; `nparams` < 0 forgets it. */
int rdc_host_http_declare(int route, int methods, const char *path, int nparams,
                          const char *const *names, const char *const *values,
                          int status, const char *reason, const char *headers,
                          const char *body, size_t body_len);

/* The pulse, about once a second from a thread of Python's own: the interpreter can run for
 * `alive_ms` more; `answers_ms` > 0: a live worker vouches for the declared answers that long.
 * Without it the shim enters Python for nothing and replays nothing (see shim.c). */
void rdc_host_pulse(int alive_ms, int answers_ms);

/* Replies, only valid inside the handler call that received the context. */
void rdc_host_cli_write(int fd, const char *text);
void rdc_host_http_send(void *ser, int method, int status, const char *reason,
                        const char *headers, const char *body, size_t body_len);
void rdc_host_ami_respond(void *session, const void *message, int success,
                          const char *text, const char *extra_headers);

/* ---- Asterisk -> Python: implemented in asterisk_consul/bridge.py (cffi extern "Python") ----
 * Each returns RDC_OK when done; 0 (cffi's answer when nothing is attached) means failed. */
int rdc_py_load(void);
/* `unmapping` 0: a failed load; Python stays attached to this mapping for the next load. */
int rdc_py_unload(int unmapping);
int rdc_py_reload(void);
void rdc_py_shutdown(void);
int rdc_py_cli(int index, int fd, int argc, const char *const *argv);
int rdc_py_cli_complete(int index, const char *line, const char *word, int pos, int n,
                        char *out, size_t out_len);
int rdc_py_http(int index, void *ser, int method, const char *method_name, const char *path,
                int nparams, const char *const *pnames, const char *const *pvalues,
                int nheaders, const char *const *hnames, const char *const *hvalues);
int rdc_py_ami(int index, void *session, const void *message,
               int nheaders, const char *const *headers);

#endif
