/*
 * res_discovery_consul: the Asterisk side of the bridge.
 *
 * This file decides nothing. It starts the embedded Python (pyinit.c), forwards Asterisk's
 * module load/unload/reload, CLI, HTTP and AMI calls to the asterisk_consul package, and
 * gives Python the few Asterisk facts and actions it asks for (bridge_api.h). Which CLI
 * commands, AMI actions and HTTP URIs exist is declared by Python during load.
 */

#define AST_MODULE "res_discovery_consul"
#define AST_MODULE_SELF_SYM __internal_res_discovery_consul_self

#include "asterisk.h"

#include "asterisk/astdb.h"
#include "asterisk/ast_version.h"
#include "asterisk/channel.h"
#include "asterisk/cli.h"
#include "asterisk/http.h"
#include "asterisk/logger.h"
#include "asterisk/manager.h"
#include "asterisk/module.h"
#include "asterisk/options.h"
#include "asterisk/paths.h"
#include "asterisk/strings.h"
#include "asterisk/taskprocessor.h"
#include "asterisk/utils.h"

#include <dlfcn.h>
#include <libgen.h>
#include <time.h>

#include "bridge_api.h"
#include "gate.h"

/* In pyinit.c, compiled with the cffi-generated source. */
int rdc_python_start(char *err, size_t err_len);
void rdc_python_release(void);

#define MAX_CLI RDC_GATE_CLI
#define MAX_AMI RDC_GATE_AMI
#define MAX_HTTP RDC_GATE_HTTP
/* Requests with more parameters or headers than this reach Python as "too many" (-1). */
#define MAX_HTTP_PARAMS 32
#define MAX_HTTP_HEADERS 64
/* How long an unload waits, once Python has stopped, for calls still inside the module. */
#define DOOR_WAIT_MS 5000
#define GATE_ABI_TEXT(abi) #abi
#define GATE_FILE_OF(abi) "res_discovery_consul.d/gate-" GATE_ABI_TEXT(abi) ".so"
#define GATE_FILE GATE_FILE_OF(RDC_GATE_ABI)
#define NOT_RESPONDING "res_discovery_consul is not responding"
#define NO_SIGN_OF_LIFE "its Python side shows no sign of life (CLI and AMI answer 'not responding')"

/* Strings declared by Python; owned here until unload. */
struct declaration {
	char *name;
	char *summary;
	char *usage;
};

static struct declaration cli_decl[MAX_CLI];
static int cli_count;

static struct declaration ami_decl[MAX_AMI];
static int ami_count;

static struct declaration http_decl[MAX_HTTP];
static int http_count;

/*
 * Declared answers (rdc_host_http_declare). The rule: Python is the only place that decides an
 * answer; the shim keeps, per route, the complete bytes of the answer to one exact request that
 * Python declared (Consul's poll of the EID check: its methods, path and parameters), compares
 * a request with it and, when it is that request, copies the answer out without calling
 * Python. Every other request goes to Python. Python declares again whenever the answer
 * changes (booted, busy, a reload); the table is emptied at unload, once nothing can declare
 * or read any more. A declared answer is true only while a live worker vouches for it (the
 * pulse below): past that it is never replayed, and the request gets 503.
 */
struct declared_answer {
	int methods;  /* RDC_HTTP_GET | RDC_HTTP_HEAD */
	char *path;
	int nparams;
	char **names;
	char **values;
	int status;
	char *reason;
	char *headers;
	char *body;
	size_t body_len;
};

static struct declared_answer *declared[MAX_HTTP];
static ast_rwlock_t declared_lock = AST_RWLOCK_INIT_VALUE;

/* The gate's entry points (gate.h), looked up at each load. */
static struct {
	int (*abi)(void);
	int (*set_doors)(const struct rdc_gate_doors *doors, char *why, size_t why_len);
	void (*lend)(const struct rdc_gate_handlers *handlers);
	int (*take_back)(void);
	int (*in_flight)(void);
	void (*forget_stop_request)(void);
	int (*stop_request_forgotten)(void);
} gate;

/*
 * The pulse: Python's own thread calls rdc_host_pulse() about once a second. Its arrival proves
 * the interpreter can run (a thread could take the GIL); `answers_ms` > 0 says the worker is
 * alive too and vouches for the declared answers. Past `alive_until` no door enters Python (it
 * would wait on a GIL that may never come) and each answers "not responding"; past
 * `answers_until` no declared answer is replayed. Monotonic milliseconds.
 */
static int64_t alive_until;
static int64_t answers_until;
static int silence_reported;  /* each silence is logged once, and its end */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int python_alive(void)
{
	return now_ms() < __atomic_load_n(&alive_until, __ATOMIC_SEQ_CST);
}

static int answers_vouched(void)
{
	return now_ms() < __atomic_load_n(&answers_until, __ATOMIC_SEQ_CST);
}

static void report_silence(const char *what)
{
	if (!__atomic_exchange_n(&silence_reported, 1, __ATOMIC_SEQ_CST)) {
		ast_log(LOG_WARNING, NOT_RESPONDING ": %s; Consul's check gets 503 until it is back\n",
			what);
	}
}

void rdc_host_pulse(int alive_ms, int answers_ms)
{
	int64_t now = now_ms();

	__atomic_store_n(&alive_until, now + alive_ms, __ATOMIC_SEQ_CST);
	__atomic_store_n(&answers_until, answers_ms > 0 ? now + answers_ms : 0, __ATOMIC_SEQ_CST);
	if (answers_ms > 0 && __atomic_exchange_n(&silence_reported, 0, __ATOMIC_SEQ_CST)) {
		ast_log(LOG_NOTICE, "res_discovery_consul responds again\n");
	}
}

/* ------------------------------------------------------------------------------------------
 * Python -> Asterisk
 */

void rdc_host_log(int level, const char *file, int line, const char *func, const char *message)
{
	switch (level) {
	case RDC_LOG_DEBUG:
		if (DEBUG_ATLEAST(1)) {
			ast_log(__LOG_DEBUG, file, line, func, "%s\n", message);
		}
		break;
	case RDC_LOG_VERBOSE:
		__ast_verbose(file, line, func, 2, "%s\n", message);
		break;
	case RDC_LOG_NOTICE:
		ast_log(__LOG_NOTICE, file, line, func, "%s\n", message);
		break;
	case RDC_LOG_WARNING:
		ast_log(__LOG_WARNING, file, line, func, "%s\n", message);
		break;
	default:
		ast_log(__LOG_ERROR, file, line, func, "%s\n", message);
		break;
	}
}

const char *rdc_host_shim_version(void)
{
	return RDC_VERSION;
}

int rdc_host_eid(char *buf, size_t len)
{
	ast_eid_to_str(buf, len, &ast_eid_default);
	return RDC_OK;
}

const char *rdc_host_version(void)
{
	return ast_get_version();
}

const char *rdc_host_config_dir(void)
{
	return ast_config_AST_CONFIG_DIR;
}

int rdc_host_fully_booted(void)
{
	return ast_fully_booted ? 1 : 0;
}

int rdc_host_shutting_down(void)
{
	return ast_shutting_down() ? 1 : 0;
}

int rdc_host_stop_requested(void)
{
	struct ast_taskprocessor *queue;

	if (ast_shutting_down()) {
		return 1;
	}
	/* 'core stop|restart when convenient' does not mark Asterisk as shutting down, but every
	 * kind of stop first drops the message queue's taskprocessor (ast_msg_shutdown), which
	 * lives from startup on and is never made again, even when the stop is cancelled: once the
	 * module has seen the stop cancelled, the queue says nothing more. Asked only once Asterisk
	 * is fully booted. */
	if (!ast_fully_booted || gate.stop_request_forgotten()) {
		return 0;
	}
	queue = ast_taskprocessor_get("ast_msg_queue", TPS_REF_IF_EXISTS);
	if (!queue) {
		return 1;
	}
	ast_taskprocessor_unreference(queue);
	return 0;
}

void rdc_host_forget_stop_request(void)
{
	gate.forget_stop_request();
}

int rdc_host_active_channels(void)
{
	return ast_active_channels();
}

int rdc_host_channel_tech(const char *name)
{
	/* Not ast_module_check: the loader holds its module list lock while it unloads this
	 * module, and unload joins the thread that asks. The channel technologies have a lock
	 * of their own. */
	return ast_get_channel_tech(name) ? 1 : 0;
}

int rdc_host_db_get(const char *family, const char *key, char *buf, int len)
{
	return ast_db_get(family, key, buf, len) ? 0 : RDC_OK;
}

int rdc_host_db_put(const char *family, const char *key, const char *value)
{
	return ast_db_put(family, key, value) ? 0 : RDC_OK;
}

void rdc_host_manager_event(const char *event, const char *body)
{
	manager_event(EVENT_FLAG_SYSTEM, event, "%s", body);
}

void rdc_host_cli_write(int fd, const char *text)
{
	ast_cli(fd, "%s", text);
}

void rdc_host_http_send(void *ser, int method, int status, const char *reason,
	const char *headers, const char *body, size_t body_len)
{
	struct ast_str *http_header = ast_str_create(128);
	struct ast_str *out = ast_str_create(body_len + 1);

	if (!http_header || !out) {
		ast_free(http_header);
		ast_free(out);
		ast_http_error(ser, 500, "Internal Server Error", "Out of memory");
		return;
	}
	ast_str_set(&http_header, 0, "%s", headers);
	/* ast_http_send takes Content-Length from the string length: bodies are text. */
	ast_str_set(&out, 0, "%.*s", (int) body_len, body);
	/* ast_http_send frees both strings and honours keep-alive and HEAD. */
	ast_http_send(ser, method, status, reason, http_header, out, 0, 0);
}

void rdc_host_ami_respond(void *session, const void *message, int success,
	const char *text, const char *extra_headers)
{
	struct mansession *s = session;
	const struct message *m = message;
	const char *action_id;

	if (!success) {
		astman_send_error(s, m, (char *) text);
		return;
	}
	action_id = astman_get_header(m, "ActionID");
	astman_append(s, "Response: Success\r\n");
	if (!ast_strlen_zero(action_id)) {
		astman_append(s, "ActionID: %s\r\n", action_id);
	}
	astman_append(s, "Message: %s\r\n%s\r\n", text, extra_headers ? extra_headers : "");
}

static int declare(struct declaration *table, int *count, int max,
	const char *name, const char *summary, const char *usage)
{
	struct declaration *d;

	if (*count >= max) {
		ast_log(LOG_ERROR, "Too many declarations (limit %d): '%s' ignored\n", max, name);
		return -1;
	}
	d = &table[*count];
	d->name = ast_strdup(name);
	d->summary = ast_strdup(summary ? summary : "");
	d->usage = ast_strdup(usage ? usage : "");
	if (!d->name || !d->summary || !d->usage) {
		ast_free(d->name);
		ast_free(d->summary);
		ast_free(d->usage);
		memset(d, 0, sizeof(*d));
		return -1;
	}
	return (*count)++;
}

int rdc_host_declare_cli(const char *command, const char *summary, const char *usage)
{
	return declare(cli_decl, &cli_count, MAX_CLI, command, summary, usage);
}

int rdc_host_declare_ami(const char *action, const char *synopsis)
{
	return declare(ami_decl, &ami_count, MAX_AMI, action, synopsis, NULL);
}

int rdc_host_declare_http(const char *uri, const char *description)
{
	return declare(http_decl, &http_count, MAX_HTTP, uri, description, NULL);
}

static void forget_declarations(struct declaration *table, int *count)
{
	int i;

	for (i = 0; i < *count; i++) {
		ast_free(table[i].name);
		ast_free(table[i].summary);
		ast_free(table[i].usage);
		memset(&table[i], 0, sizeof(table[i]));
	}
	*count = 0;
}


/* ------------------------------------------------------------------------------------------
 * Asterisk -> Python, through the gate (gate.h): the handlers lent while loaded. Each looks at
 * the pulse before it enters Python, so a wedged interpreter costs a caller nothing.
 */

static char *shim_cli(int slot, int cmd, struct ast_cli_args *a)
{
	char completion[256];

	if (!python_alive()) {
		if (cmd == CLI_HANDLER) {
			report_silence(NO_SIGN_OF_LIFE);
			ast_cli(a->fd, NOT_RESPONDING ": its Python side shows no sign of life (see the "
				"Asterisk log); Consul's check gets 503 meanwhile\n");
			return CLI_FAILURE;
		}
		return NULL;
	}
	if (cmd == CLI_GENERATE) {
		completion[0] = '\0';
		if (rdc_py_cli_complete(slot, a->line, a->word, a->pos, a->n,
				completion, sizeof(completion)) == RDC_OK) {
			return ast_strdup(completion);
		}
		return NULL;
	}
	switch (rdc_py_cli(slot, a->fd, a->argc, a->argv)) {
	case RDC_OK:
		return CLI_SUCCESS;
	case RDC_CLI_SHOWUSAGE:
		return CLI_SHOWUSAGE;
	case RDC_CLI_FAILURE:
		return CLI_FAILURE;
	default:
		ast_cli(a->fd, "res_discovery_consul: the command failed inside the module; see the Asterisk log.\n");
		return CLI_FAILURE;
	}
}

static int shim_ami(int slot, struct mansession *s, const struct message *m)
{
	if (!python_alive()) {
		report_silence(NO_SIGN_OF_LIFE);
		astman_send_error(s, m, NOT_RESPONDING);
	} else if (rdc_py_ami(slot, s, m, m->hdrcount, m->headers) != RDC_OK) {
		astman_send_error(s, m, "res_discovery_consul failed; see the Asterisk log");
	}
	return 0;
}

static void free_answer(struct declared_answer *answer)
{
	int i;

	if (!answer) {
		return;
	}
	for (i = 0; i < answer->nparams; i++) {
		ast_free(answer->names[i]);
		ast_free(answer->values[i]);
	}
	ast_free(answer->names);
	ast_free(answer->values);
	ast_free(answer->path);
	ast_free(answer->reason);
	ast_free(answer->headers);
	ast_free(answer->body);
	ast_free(answer);
}

int rdc_host_http_declare(int route, int methods, const char *path, int nparams,
	const char *const *names, const char *const *values, int status, const char *reason,
	const char *headers, const char *body, size_t body_len)
{
	struct declared_answer *answer = NULL, *old;
	int i;

	if (route < 0 || route >= MAX_HTTP) {
		return 0;
	}
	if (nparams >= 0) {
		answer = ast_calloc(1, sizeof(*answer));
		if (!answer) {
			return 0;
		}
		answer->methods = methods;
		answer->path = ast_strdup(path);
		answer->names = ast_calloc(nparams + 1, sizeof(char *));
		answer->values = ast_calloc(nparams + 1, sizeof(char *));
		answer->reason = ast_strdup(reason);
		answer->headers = ast_strdup(headers);
		answer->body = ast_malloc(body_len + 1);
		if (!answer->path || !answer->names || !answer->values || !answer->reason
				|| !answer->headers || !answer->body) {
			free_answer(answer);
			return 0;
		}
		for (i = 0; i < nparams; i++) {
			answer->names[i] = ast_strdup(names[i]);
			answer->values[i] = ast_strdup(values[i]);
			answer->nparams = i + 1;
			if (!answer->names[i] || !answer->values[i]) {
				free_answer(answer);
				return 0;
			}
		}
		memcpy(answer->body, body, body_len);
		answer->body[body_len] = '\0';
		answer->body_len = body_len;
		answer->status = status;
	}
	ast_rwlock_wrlock(&declared_lock);
	old = declared[route];
	declared[route] = answer;
	ast_rwlock_unlock(&declared_lock);
	free_answer(old);
	return RDC_OK;
}

static void forget_declared_answers(void)
{
	int i;

	for (i = 0; i < MAX_HTTP; i++) {
		rdc_host_http_declare(i, 0, NULL, -1, NULL, NULL, 0, NULL, NULL, NULL, 0);
	}
}

static int method_bit(int method)
{
	switch (method) {
	case AST_HTTP_GET:
		return RDC_HTTP_GET;
	case AST_HTTP_HEAD:
		return RDC_HTTP_HEAD;
	default:
		return 0;
	}
}

/* 1 when the request is the one declared for this route: it has been answered, with the
 * declared answer while the worker vouches for it, else with 503. */
static int replay_declared(struct ast_tcptls_session_instance *ser, int slot, const char *path,
	int method, struct ast_variable *params)
{
	struct declared_answer *answer;
	struct ast_str *http_header = NULL, *out = NULL;
	struct ast_variable *v;
	int i, status = 0, matched = 0;
	char *reason = NULL;

	ast_rwlock_rdlock(&declared_lock);
	answer = declared[slot];
	if (answer && (answer->methods & method_bit(method)) && path && !strcmp(path, answer->path)) {
		for (i = 0, v = params; v && i < answer->nparams; i++, v = v->next) {
			if (strcmp(v->name, answer->names[i]) || strcmp(v->value, answer->values[i])) {
				break;
			}
		}
		matched = !v && i == answer->nparams;
		if (matched && answers_vouched()) {
			http_header = ast_str_create(strlen(answer->headers) + 1);
			out = ast_str_create(answer->body_len + 1);
			reason = ast_strdupa(answer->reason);
			if (http_header && out) {
				ast_str_set(&http_header, 0, "%s", answer->headers);
				ast_str_set(&out, 0, "%s", answer->body);
				status = answer->status;
			}
		}
	}
	ast_rwlock_unlock(&declared_lock);
	if (!status) {
		ast_free(http_header);
		ast_free(out);
		if (matched) {
			report_silence("no live worker vouches for the health check's answer");
			ast_http_error(ser, 503, "Service Unavailable", "module not responding");
		}
		return matched;
	}
	/* ast_http_send frees both strings and honours keep-alive and HEAD. */
	ast_http_send(ser, method, status, reason, http_header, out, 0, 0);
	return 1;
}

static int shim_http(struct ast_tcptls_session_instance *ser, int slot, const char *path,
	int method, struct ast_variable *get_params, struct ast_variable *headers)
{
	const char *pnames[MAX_HTTP_PARAMS], *pvalues[MAX_HTTP_PARAMS];
	const char *hnames[MAX_HTTP_HEADERS], *hvalues[MAX_HTTP_HEADERS];
	const char *method_name = ast_get_http_method(method);
	struct ast_variable *v;
	int np = 0, nh = 0;

	if (replay_declared(ser, slot, path, method, get_params)) {
		return 0;
	}
	if (!python_alive()) {
		report_silence(NO_SIGN_OF_LIFE);
		ast_http_error(ser, 503, "Service Unavailable", "module not responding");
		return 0;
	}
	for (v = get_params; v; v = v->next) {
		if (np == MAX_HTTP_PARAMS) {
			np = -1;
			break;
		}
		pnames[np] = v->name;
		pvalues[np++] = v->value;
	}
	for (v = headers; v; v = v->next) {
		if (nh == MAX_HTTP_HEADERS) {
			nh = -1;
			break;
		}
		hnames[nh] = v->name;
		hvalues[nh++] = v->value;
	}
	if (rdc_py_http(slot, ser, method, method_name ? method_name : "UNKNOWN", path ? path : "",
			np, pnames, pvalues, nh, hnames, hvalues) != RDC_OK) {
		ast_http_error(ser, 500, "Internal Server Error", "res_discovery_consul failed; see the Asterisk log");
	}
	return 0;
}

/* `core stop now`, `core restart now`, SIGTERM: Asterisk exits without unloading modules. */
static void shim_at_exit(void)
{
	if (python_alive()) {
		rdc_py_shutdown();
	}
}

static const struct rdc_gate_handlers handlers = {
	.cli = shim_cli,
	.ami = shim_ami,
	.http = shim_http,
	.at_exit = shim_at_exit,
};

/* ------------------------------------------------------------------------------------------
 * Module lifecycle
 *
 * Asterisk unmaps this library once unload_module() returns, whatever it returned when the
 * unload is forced (`module unload -h`), and a graceful shutdown ignores the answer. So the
 * unload never refuses: it takes the handlers back from the gate (no call enters this library
 * any more), stops Python's threads (which answers the commands waiting on them), waits at
 * most DOOR_WAIT_MS for the calls still inside, and returns 0. Only if Python cannot be
 * reached (no pulse: a wedged interpreter) or a call stays inside does it pin the library in
 * memory instead: Asterisk's unload goes on, nothing it holds points here any more, and what
 * is stuck inside can still return into mapped code. Such a module cannot be loaded again
 * before Asterisk restarts; the log says so.
 */

static void forget_all_declarations(void)
{
	forget_declarations(cli_decl, &cli_count);
	forget_declarations(ami_decl, &ami_count);
	forget_declarations(http_decl, &http_count);
}

static void fill_doors(const struct declaration *table, int count, struct rdc_gate_door *out,
	int *nout)
{
	int i;

	for (i = 0; i < count; i++) {
		out[i].name = table[i].name;
		out[i].summary = table[i].summary;
		out[i].usage = table[i].usage;
	}
	*nout = count;
}

static int open_doors(char *why, size_t why_len)
{
	struct rdc_gate_doors doors;

	memset(&doors, 0, sizeof(doors));
	fill_doors(cli_decl, cli_count, doors.cli, &doors.ncli);
	fill_doors(ami_decl, ami_count, doors.ami, &doors.nami);
	fill_doors(http_decl, http_count, doors.http, &doors.nhttp);
	if (gate.set_doors(&doors, why, why_len)) {
		return -1;
	}
	gate.lend(&handlers);
	return 0;
}

/* Finds the gate next to this module (gate.h) and looks up its entry points. */
static int open_gate(void)
{
	Dl_info self;
	char dir[PATH_MAX], path[PATH_MAX];
	void *handle;

	if (!dladdr((void *) open_gate, &self) || !self.dli_fname) {
		ast_log(LOG_ERROR, "Cannot tell where res_discovery_consul.so was loaded from\n");
		return -1;
	}
	ast_copy_string(dir, self.dli_fname, sizeof(dir));
	snprintf(path, sizeof(path), "%s/%s", dirname(dir), GATE_FILE);
	/* NODELETE: the gate outlives every mapping of this module (see gate.h). */
	handle = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
	if (!handle) {
		ast_log(LOG_ERROR, "Cannot open the module's gate %s: %s (it is installed with the "
			"module by 'make install')\n", path, dlerror());
		return -1;
	}
	gate.abi = dlsym(handle, "rdc_gate_abi");
	gate.set_doors = dlsym(handle, "rdc_gate_set_doors");
	gate.lend = dlsym(handle, "rdc_gate_lend");
	gate.take_back = dlsym(handle, "rdc_gate_take_back");
	gate.in_flight = dlsym(handle, "rdc_gate_in_flight");
	gate.forget_stop_request = dlsym(handle, "rdc_gate_forget_stop_request");
	gate.stop_request_forgotten = dlsym(handle, "rdc_gate_stop_request_forgotten");
	if (!gate.abi || !gate.set_doors || !gate.lend || !gate.take_back || !gate.in_flight
			|| !gate.forget_stop_request || !gate.stop_request_forgotten
			|| gate.abi() != RDC_GATE_ABI) {
		ast_log(LOG_ERROR, "%s is not the gate this module was built for (ABI %d)\n",
			path, RDC_GATE_ABI);
		return -1;
	}
	return 0;
}

/* Keeps this library mapped for the life of the process (see above). */
static void pin_library(const char *why)
{
	Dl_info self;

	if (dladdr((void *) pin_library, &self) && self.dli_fname
			&& dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE)) {
		ast_log(LOG_ERROR, "res_discovery_consul unloaded while %s: its library stays in memory "
			"and it cannot be loaded again before Asterisk restarts\n", why);
		return;
	}
	ast_log(LOG_ERROR, "res_discovery_consul unloaded while %s, and its library could not be "
		"kept in memory: %s\n", why, dlerror());
}

static int wait_for_doors(int64_t deadline)
{
	while (gate.in_flight() > 0) {
		if (now_ms() >= deadline) {
			return -1;
		}
		usleep(1000);
	}
	return 0;
}

static int load_module(void)
{
	char err[512] = "";
	int res;

	if (open_gate()) {
		return AST_MODULE_LOAD_DECLINE;
	}
	if (rdc_python_start(err, sizeof(err))) {
		ast_log(LOG_ERROR, "Cannot start the embedded Python: %s\n", err);
		return AST_MODULE_LOAD_DECLINE;
	}
	__atomic_store_n(&silence_reported, 0, __ATOMIC_SEQ_CST);

	res = rdc_py_load();  /* declares the doors; the first pulse comes before it returns */
	if (res != RDC_OK) {
		if (res == 0) {
			ast_log(LOG_ERROR, "The Python side of res_discovery_consul is not attached; "
				"see the errors above (cffi writes its own to Asterisk's stderr)\n");
		}
		forget_declared_answers();
		forget_all_declarations();
		return AST_MODULE_LOAD_DECLINE;
	}
	if (open_doors(err, sizeof(err))) {
		ast_log(LOG_ERROR, "res_discovery_consul not loaded: %s; 'module load' it again once "
			"that is fixed\n", err);
		/* Asterisk keeps a declined module mapped and may call load() again: Python stays
		 * attached to this mapping, its threads stopped. */
		rdc_py_unload(0);
		forget_declared_answers();
		forget_all_declarations();
		return AST_MODULE_LOAD_DECLINE;
	}
	return AST_MODULE_LOAD_SUCCESS;
}

static int unload_module(void)
{
	gate.take_back();  /* no call enters this library after this */
	if (!python_alive()) {
		pin_library("its Python side showed no sign of life");
		return 0;
	}
	rdc_py_unload(1);  /* stops and joins Python's threads; what waited on them is answered */
	if (wait_for_doors(now_ms() + DOOR_WAIT_MS)) {
		pin_library("a command was still inside it");
		return 0;
	}
	rdc_python_release();
	forget_declared_answers();  /* nothing reads (doors shut) or declares (threads joined) now */
	forget_all_declarations();
	return 0;
}

static int reload_module(void)
{
	if (!python_alive()) {
		report_silence(NO_SIGN_OF_LIFE);
		return AST_MODULE_LOAD_DECLINE;
	}
	return rdc_py_reload() == RDC_OK ? AST_MODULE_LOAD_SUCCESS : AST_MODULE_LOAD_DECLINE;
}

AST_MODULE_INFO(ASTERISK_GPL_KEY, AST_MODFLAG_LOAD_ORDER, "Consul service discovery",
	.support_level = AST_MODULE_SUPPORT_EXTENDED,
	.load = load_module,
	.unload = unload_module,
	.reload = reload_module,
	.load_pri = AST_MODPRI_DEFAULT,
);
