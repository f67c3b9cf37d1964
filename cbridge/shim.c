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
#include "asterisk/utils.h"

#include <dlfcn.h>
#include <libgen.h>

#include "bridge_api.h"
#include "gate.h"

/* In pyinit.c, compiled with the cffi-generated source. */
int rdc_python_start(char *err, size_t err_len);
void rdc_python_release(void);

#define MAX_CLI 16
#define MAX_AMI 8
#define MAX_HTTP RDC_GATE_SLOTS
/* Requests with more parameters or headers than this reach Python as "too many" (-1). */
#define MAX_HTTP_PARAMS 32
#define MAX_HTTP_HEADERS 64
/* How long an unload waits for commands, actions and requests already inside the module. */
#define DOOR_TIMEOUT_MS 5000
#define GATE_ABI_TEXT(abi) #abi
#define GATE_FILE_OF(abi) "res_discovery_consul.d/http-gate-" GATE_ABI_TEXT(abi) ".so"
#define GATE_FILE GATE_FILE_OF(RDC_GATE_ABI)

/* Strings declared by Python; owned here until unload. */
struct declaration {
	char *name;
	char *summary;
	char *usage;
};

static struct declaration cli_decl[MAX_CLI];
static struct ast_cli_entry cli_entries[MAX_CLI];
static int cli_count;
static int cli_registered;

static struct declaration ami_decl[MAX_AMI];
static int ami_count;

static struct declaration http_decl[MAX_HTTP];
static int http_count;

/* The HTTP gate's entry points (gate.h), looked up at each load. */
static struct {
	int (*abi)(void);
	int (*open)(int slot, const char *uri, const char *description, rdc_gate_handler handler);
	int (*close)(int slot, int timeout_ms);
} gate;

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

int rdc_host_active_channels(void)
{
	return ast_active_channels();
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
 * Asterisk -> Python: CLI
 */

static char *cli_handler(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	int index = e - cli_entries;
	char completion[256];

	switch (cmd) {
	case CLI_INIT:
		e->command = cli_decl[index].name;
		e->usage = cli_decl[index].usage;
		return NULL;
	case CLI_GENERATE:
		completion[0] = '\0';
		if (rdc_py_cli_complete(index, a->line, a->word, a->pos, a->n,
				completion, sizeof(completion)) == RDC_OK) {
			return ast_strdup(completion);
		}
		return NULL;
	}

	switch (rdc_py_cli(index, a->fd, a->argc, a->argv)) {
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

/* ------------------------------------------------------------------------------------------
 * Asterisk -> Python: HTTP
 */

/* Lent to the gate (gate.h), which counts the request in before calling this. */
static int http_handler(struct ast_tcptls_session_instance *ser, int slot, const char *path,
	int method, struct ast_variable *get_params, struct ast_variable *headers)
{
	const char *pnames[MAX_HTTP_PARAMS], *pvalues[MAX_HTTP_PARAMS];
	const char *hnames[MAX_HTTP_HEADERS], *hvalues[MAX_HTTP_HEADERS];
	const char *method_name = ast_get_http_method(method);
	struct ast_variable *v;
	int np = 0, nh = 0;

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

/* ------------------------------------------------------------------------------------------
 * Asterisk -> Python: AMI. Actions carry no user data, so each slot has its own trampoline.
 */

static int ami_dispatch(int index, struct mansession *s, const struct message *m)
{
	if (rdc_py_ami(index, s, m, m->hdrcount, m->headers) != RDC_OK) {
		astman_send_error(s, m, "res_discovery_consul failed; see the Asterisk log");
	}
	return 0;
}

#define AMI_TRAMPOLINE(n) \
	static int ami_action_##n(struct mansession *s, const struct message *m) { return ami_dispatch(n, s, m); }
AMI_TRAMPOLINE(0)
AMI_TRAMPOLINE(1)
AMI_TRAMPOLINE(2)
AMI_TRAMPOLINE(3)
AMI_TRAMPOLINE(4)
AMI_TRAMPOLINE(5)
AMI_TRAMPOLINE(6)
AMI_TRAMPOLINE(7)

static int (*const ami_actions[MAX_AMI])(struct mansession *, const struct message *) = {
	ami_action_0, ami_action_1, ami_action_2, ami_action_3,
	ami_action_4, ami_action_5, ami_action_6, ami_action_7,
};


/* ------------------------------------------------------------------------------------------
 * The doors into this library: opened once Python declared them, shut before an unload.
 *
 * Asterisk unmaps this library as soon as unload_module() returns 0, so by then nothing that
 * Asterisk owns may point into it. Each door, and why it is shut once close_doors() returns 0:
 *  - CLI entries live here (cli_entries[]). ast_cli_unregister() refuses an entry whose inuse
 *    count is not 0 (a command between its lookup and its end) with only a warning, and returns
 *    0 all the same: a listed entry would be read by the next command lookup after the unmap.
 *    So an entry is unregistered only at inuse 0, confirmed off the list (Asterisk frees
 *    _full_cmd only when it unlinks), and inuse must then drop to 0 for commands that found
 *    the entry just before.
 *  - AMI actions: ast_manager_unregister() marks an action unregistered under the action's
 *    lock, and a caller that saw it registered took a running reference on this module under
 *    that same lock. Once every action is unregistered, the module's use count therefore
 *    covers every action (and CLI handler) still running here: it must drop to 0.
 *  - HTTP URIs belong to the gate (gate.h), a library that is never unmapped:
 *    rdc_gate_close() returns 0 once no request is inside http_handler() nor can enter it.
 *  - The atexit hook: ast_unregister_atexit() takes the lock that ast_run_atexits() holds while
 *    it runs the hooks, so on return the hook is neither listed nor running.
 *  - Python's threads: rdc_py_unload() stops and joins them, and detaches (under its lock) the
 *    host object through which they call this library, so a straggler cannot call in.
 * A door that cannot be shut within DOOR_TIMEOUT_MS opens them all again and the unload is
 * refused: the module stays as it was, and Asterisk reports "Firm unload failed".
 */

static int ami_open[MAX_AMI];
static int http_open[MAX_HTTP];

static void at_asterisk_exit(void)
{
	rdc_py_shutdown();
}

static int cli_listed(const struct ast_cli_entry *e)
{
	return e->_full_cmd != NULL;
}

static int cli_inuse(struct ast_cli_entry *e)
{
	return __atomic_load_n(&e->inuse, __ATOMIC_SEQ_CST);
}

/* -1 once the deadline has passed; otherwise sleeps a millisecond and returns 0. */
static int wait_a_little(struct timeval deadline)
{
	if (ast_tvcmp(ast_tvnow(), deadline) >= 0) {
		return -1;
	}
	usleep(1000);
	return 0;
}

static int remaining_ms(struct timeval deadline)
{
	int64_t ms = ast_tvdiff_ms(deadline, ast_tvnow());

	return ms > 0 ? (int) ms : 0;
}

static int read_usecount(const char *module, const char *description, int usecnt,
	const char *status, const char *like, enum ast_module_support_level support_level, void *data)
{
	int *usecount = data;

	if (!strcasecmp(module, ast_module_name(AST_MODULE_SELF))) {
		*usecount = usecnt;
	}
	return 0;
}

static int module_usecount(void)
{
	int usecount = 0;

	/* Takes the module list lock, which the unloading thread already holds (recursive). */
	ast_update_module_list_data(read_usecount, NULL, &usecount);
	return usecount;
}

static int open_doors(void)
{
	int i, res = 0;

	for (i = 0; i < cli_registered; i++) {
		if (!cli_listed(&cli_entries[i]) && ast_cli_register(&cli_entries[i])) {
			ast_log(LOG_ERROR, "Could not register the CLI command '%s'\n", cli_decl[i].name);
			res = -1;
		}
	}
	for (i = 0; i < ami_count; i++) {
		if (ami_open[i]) {
			continue;
		}
		if (ast_manager_register2(ami_decl[i].name, EVENT_FLAG_SYSTEM, ami_actions[i],
				AST_MODULE_SELF, ami_decl[i].summary, NULL)) {
			ast_log(LOG_ERROR, "Could not register AMI action %s\n", ami_decl[i].name);
			res = -1;
			continue;
		}
		ami_open[i] = 1;
	}
	for (i = 0; i < http_count; i++) {
		if (http_open[i]) {
			continue;
		}
		if (gate.open(i, http_decl[i].name, http_decl[i].summary, http_handler)) {
			ast_log(LOG_ERROR, "Could not register HTTP URI /%s\n", http_decl[i].name);
			res = -1;
			continue;
		}
		http_open[i] = 1;
	}
	ast_register_atexit(at_asterisk_exit);
	return res;
}

/* 0: every door is shut. Otherwise `why` says what is still inside. */
static int close_doors(char *why, size_t why_len)
{
	struct timeval deadline = ast_tvadd(ast_tvnow(), ast_samp2tv(DOOR_TIMEOUT_MS, 1000));
	int i;

	ast_unregister_atexit(at_asterisk_exit);
	for (i = 0; i < ami_count; i++) {
		if (ami_open[i]) {
			ast_manager_unregister(ami_decl[i].name);
			ami_open[i] = 0;
		}
	}
	for (i = 0; i < cli_registered; i++) {
		struct ast_cli_entry *e = &cli_entries[i];

		while (cli_listed(e)) {
			if (!cli_inuse(e)) {
				ast_cli_unregister(e);  /* may still lose a race with a lookup: looked at again */
			}
			if (cli_listed(e) && wait_a_little(deadline)) {
				snprintf(why, why_len, "the CLI command '%s' is running", cli_decl[i].name);
				return -1;
			}
		}
		while (cli_inuse(e) > 0) {
			if (wait_a_little(deadline)) {
				snprintf(why, why_len, "the CLI command '%s' is running", cli_decl[i].name);
				return -1;
			}
		}
	}
	for (i = 0; i < http_count; i++) {
		if (http_open[i]) {
			if (gate.close(i, remaining_ms(deadline))) {
				snprintf(why, why_len, "an HTTP request to /%s is being answered", http_decl[i].name);
				return -1;
			}
			http_open[i] = 0;
		}
	}
	while (module_usecount() > 0) {
		if (wait_a_little(deadline)) {
			snprintf(why, why_len, "an AMI action or CLI command is running");
			return -1;
		}
	}
	return 0;
}

static void forget_all_declarations(void)
{
	forget_declarations(cli_decl, &cli_count);
	forget_declarations(ami_decl, &ami_count);
	forget_declarations(http_decl, &http_count);
	cli_registered = 0;
}

/* Finds the HTTP gate next to this module (gate.h) and looks up its entry points. */
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
		ast_log(LOG_ERROR, "Cannot open the module's HTTP gate %s: %s (it is installed with the "
			"module by 'make install')\n", path, dlerror());
		return -1;
	}
	gate.abi = dlsym(handle, "rdc_gate_abi");
	gate.open = dlsym(handle, "rdc_gate_open");
	gate.close = dlsym(handle, "rdc_gate_close");
	if (!gate.abi || !gate.open || !gate.close || gate.abi() != RDC_GATE_ABI) {
		ast_log(LOG_ERROR, "%s is not the HTTP gate this module was built for (ABI %d)\n",
			path, RDC_GATE_ABI);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------
 * Module lifecycle
 */

static int load_module(void)
{
	char err[512] = "";
	int i, res;

	if (open_gate()) {
		return AST_MODULE_LOAD_DECLINE;
	}
	if (rdc_python_start(err, sizeof(err))) {
		ast_log(LOG_ERROR, "Cannot start the embedded Python: %s\n", err);
		return AST_MODULE_LOAD_DECLINE;
	}

	res = rdc_py_load();
	if (res != RDC_OK) {
		if (res == 0) {
			ast_log(LOG_ERROR, "The Python side of res_discovery_consul is not attached; "
				"see the errors above (cffi writes its own to Asterisk's stderr)\n");
		}
		forget_all_declarations();
		return AST_MODULE_LOAD_DECLINE;
	}

	for (i = 0; i < cli_count; i++) {
		/* summary is a const member: build each entry whole. */
		struct ast_cli_entry entry = AST_CLI_DEFINE(cli_handler, cli_decl[i].summary);

		memcpy(&cli_entries[i], &entry, sizeof(entry));
	}
	cli_registered = cli_count;
	if (open_doors()) {
		if (close_doors(err, sizeof(err))) {
			ast_log(LOG_ERROR, "res_discovery_consul could not withdraw after a failed load: %s\n", err);
		}
		rdc_py_unload();
		forget_all_declarations();
		return AST_MODULE_LOAD_DECLINE;
	}
	return AST_MODULE_LOAD_SUCCESS;
}

static int unload_module(void)
{
	char why[256] = "";

	if (close_doors(why, sizeof(why))) {
		open_doors();
		ast_log(LOG_WARNING, "res_discovery_consul stays loaded: %s after %d ms; it keeps working, "
			"try the unload again\n", why, DOOR_TIMEOUT_MS);
		return -1;
	}
	rdc_py_unload();
	rdc_python_release();
	forget_all_declarations();
	return 0;
}

static int reload_module(void)
{
	return rdc_py_reload() == RDC_OK ? AST_MODULE_LOAD_SUCCESS : AST_MODULE_LOAD_DECLINE;
}

AST_MODULE_INFO(ASTERISK_GPL_KEY, AST_MODFLAG_LOAD_ORDER, "Consul service discovery",
	.support_level = AST_MODULE_SUPPORT_EXTENDED,
	.load = load_module,
	.unload = unload_module,
	.reload = reload_module,
	.load_pri = AST_MODPRI_DEFAULT,
);
