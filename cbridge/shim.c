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

#include "bridge_api.h"

/* In pyinit.c, compiled with the cffi-generated source. */
int rdc_python_start(char *err, size_t err_len);
void rdc_python_release(void);

#define MAX_CLI 16
#define MAX_AMI 8
#define MAX_HTTP 4
/* Requests with more parameters or headers than this reach Python as "too many" (-1). */
#define MAX_HTTP_PARAMS 32
#define MAX_HTTP_HEADERS 64

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
static int ami_registered;

/* Requests inside http_callback; unload waits for them after unlinking the URIs. */
static volatile int http_in_flight;
static struct declaration http_decl[MAX_HTTP];
static struct ast_http_uri http_uris[MAX_HTTP];
static int http_count;
static int http_registered;

/* ------------------------------------------------------------------------------------------
 * Python -> Asterisk
 */

void rdc_host_log(int level, const char *file, int line, const char *func, const char *message)
{
	switch (level) {
	case 0:
		if (DEBUG_ATLEAST(1)) {
			ast_log(__LOG_DEBUG, file, line, func, "%s\n", message);
		}
		break;
	case 1:
		__ast_verbose(file, line, func, 2, "%s\n", message);
		break;
	case 2:
		ast_log(__LOG_NOTICE, file, line, func, "%s\n", message);
		break;
	case 3:
		ast_log(__LOG_WARNING, file, line, func, "%s\n", message);
		break;
	default:
		ast_log(__LOG_ERROR, file, line, func, "%s\n", message);
		break;
	}
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

static int http_callback(struct ast_tcptls_session_instance *ser, const struct ast_http_uri *urih,
	const char *uri, enum ast_http_method method, struct ast_variable *get_params,
	struct ast_variable *headers)
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

	/* Asterisk's HTTP server calls handlers without holding the module: count requests
	 * inside, so that unload waits for them before the code they run is unmapped. (A module
	 * reference would do the same but make `module unload` fail now and then, and costs
	 * a use-count update per request.) */
	ast_atomic_fetchadd_int(&http_in_flight, +1);
	if (rdc_py_http((int) (intptr_t) urih->data, ser, method, method_name ? method_name : "UNKNOWN",
			uri ? uri : "", np, pnames, pvalues, nh, hnames, hvalues) != RDC_OK) {
		ast_http_error(ser, 500, "Internal Server Error", "res_discovery_consul failed; see the Asterisk log");
	}
	ast_atomic_fetchadd_int(&http_in_flight, -1);
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
 * Registration of what Python declared
 */

static void unregister_all(void)
{
	int i;

	for (i = 0; i < ami_registered; i++) {
		ast_manager_unregister(ami_decl[i].name);
	}
	ami_registered = 0;
	for (i = 0; i < http_registered; i++) {
		ast_http_uri_unlink(&http_uris[i]);
	}
	http_registered = 0;
	/* Requests that found a URI before the unlink may still be inside (or on their way
	 * in: a short grace period covers the few instructions before the count). The check
	 * handler answers from memory in microseconds; the bound only guards a stuck one. */
	usleep(20000);
	for (i = 0; i < 1000 && http_in_flight > 0; i++) {
		usleep(10000);
	}
	if (http_in_flight > 0) {
		ast_log(LOG_ERROR, "%d HTTP request(s) still inside res_discovery_consul after 10 s\n", http_in_flight);
	}
	if (cli_registered) {
		ast_cli_unregister_multiple(cli_entries, cli_registered);
	}
	cli_registered = 0;

	forget_declarations(cli_decl, &cli_count);
	forget_declarations(ami_decl, &ami_count);
	forget_declarations(http_decl, &http_count);
}

static int register_all(void)
{
	int i;

	for (i = 0; i < cli_count; i++) {
		/* summary is a const member: build each entry whole. */
		struct ast_cli_entry entry = AST_CLI_DEFINE(cli_handler, cli_decl[i].summary);

		memcpy(&cli_entries[i], &entry, sizeof(entry));
	}
	if (cli_count && ast_cli_register_multiple(cli_entries, cli_count)) {
		ast_log(LOG_ERROR, "Could not register the CLI commands\n");
		return -1;
	}
	cli_registered = cli_count;

	for (i = 0; i < http_count; i++) {
		struct ast_http_uri *u = &http_uris[i];

		memset(u, 0, sizeof(*u));
		u->description = http_decl[i].summary;
		u->uri = http_decl[i].name;
		u->callback = http_callback;
		u->has_subtree = 1;
		u->data = (void *) (intptr_t) i;
		u->key = AST_MODULE;
		if (ast_http_uri_link(u)) {
			ast_log(LOG_ERROR, "Could not register HTTP URI /%s\n", u->uri);
			return -1;
		}
		http_registered = i + 1;
	}

	for (i = 0; i < ami_count; i++) {
		if (ast_manager_register2(ami_decl[i].name, EVENT_FLAG_SYSTEM, ami_actions[i],
				AST_MODULE_SELF, ami_decl[i].summary, NULL)) {
			ast_log(LOG_ERROR, "Could not register AMI action %s\n", ami_decl[i].name);
			return -1;
		}
		ami_registered = i + 1;
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------
 * Module lifecycle
 */

static void at_asterisk_exit(void)
{
	rdc_py_shutdown();
}

static int load_module(void)
{
	char err[512] = "";
	int res;

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
		unregister_all();
		return AST_MODULE_LOAD_DECLINE;
	}

	if (register_all()) {
		unregister_all();
		rdc_py_unload();
		return AST_MODULE_LOAD_DECLINE;
	}
	ast_register_atexit(at_asterisk_exit);
	return AST_MODULE_LOAD_SUCCESS;
}

static int unload_module(void)
{
	/* Nothing may call into this library once it is unmapped: hooks and handlers go first,
	 * then Python stops every thread it started. */
	ast_unregister_atexit(at_asterisk_exit);
	unregister_all();
	rdc_py_unload();
	rdc_python_release();
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
