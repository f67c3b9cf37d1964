/*
 * The gate (see gate.h for why it is a library of its own that is never unmapped).
 *
 * Every door counts itself in before it reads the lent handlers and out after they return.
 * With both steps sequentially consistent, rdc_gate_take_back() (handlers withdrawn, then the
 * count read) never misses a call that is about to enter the shim. Entries are written only
 * while Asterisk cannot read them (never zeroed while listed) and their strings are never
 * freed once published: Asterisk may read them at any time while they are registered, and
 * (CLI) for a moment after.
 */

#define AST_MODULE "res_discovery_consul"
/* asterisk.h wants this from code built outside Asterisk; the gate is no module of its own
 * and never references the symbol. */
#define AST_MODULE_SELF_SYM __internal_res_discovery_consul_gate_self

#include "asterisk.h"

#include <unistd.h>

#include "asterisk/cli.h"
#include "asterisk/http.h"
#include "asterisk/logger.h"
#include "asterisk/manager.h"
#include "asterisk/strings.h"
#include "asterisk/utils.h"
#include "asterisk/xml.h"
#include "asterisk/xmldoc.h"

#include "gate.h"

#define NOT_LOADED "res_discovery_consul is not loaded"

/* The lent handlers: `lent` is set after `handlers` is written and cleared before it may be
 * written again (only once no call is inside). */
static struct rdc_gate_handlers handlers;
static int lent;
static int in_flight;
static int stop_request_forgotten;

/* Published strings: kept for the life of the process (see above). */
static const char *keep(const char *text)
{
	return ast_strdup(S_OR(text, ""));
}

static int same(const char *published, const char *text)
{
	return published && !strcmp(published, S_OR(text, ""));
}

static const struct rdc_gate_handlers *enter(void)
{
	__atomic_add_fetch(&in_flight, 1, __ATOMIC_SEQ_CST);
	return __atomic_load_n(&lent, __ATOMIC_SEQ_CST) ? &handlers : NULL;
}

static void leave(void)
{
	__atomic_sub_fetch(&in_flight, 1, __ATOMIC_SEQ_CST);
}

int rdc_gate_abi(void)
{
	return RDC_GATE_ABI;
}

/* ------------------------------------------------------------------------------------------
 * CLI: entries registered with no module, so `module unload` never waits on them and nothing
 * freed at unload is referenced. An entry whose text changed (an upgrade) is withdrawn only
 * when no command is inside it, then registered anew with new strings.
 */

struct cli_text {
	const char *command, *summary, *usage;
};

static struct ast_cli_entry cli_entries[RDC_GATE_CLI];
static struct cli_text cli_texts[RDC_GATE_CLI];

static char *gate_cli(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	int slot = e - cli_entries;
	const struct rdc_gate_handlers *h;
	char *res = NULL;

	if (cmd == CLI_INIT) {
		e->command = (char *) cli_texts[slot].command;
		e->usage = cli_texts[slot].usage;
		return NULL;
	}
	h = enter();
	if (h) {
		res = h->cli(slot, cmd, a);
	} else if (cmd == CLI_HANDLER) {
		ast_cli(a->fd, "%s\n", NOT_LOADED);
		res = CLI_FAILURE;
	}
	leave();
	return res;
}

static int cli_listed(struct ast_cli_entry *e)
{
	return e->_full_cmd != NULL;
}

/* 0 once the entry is off Asterisk's list with no command inside; -1: it is in use. */
static int cli_withdraw(int slot)
{
	struct ast_cli_entry *e = &cli_entries[slot];

	if (cli_listed(e) && !__atomic_load_n(&e->inuse, __ATOMIC_SEQ_CST)) {
		ast_cli_unregister(e);
	}
	/* A lookup may have won the race with the unregistration: it counts in `inuse`. */
	return cli_listed(e) || __atomic_load_n(&e->inuse, __ATOMIC_SEQ_CST) ? -1 : 0;
}

static int cli_open(int slot, const struct rdc_gate_door *door, char *why, size_t why_len)
{
	struct ast_cli_entry *e = &cli_entries[slot];
	struct cli_text *t = &cli_texts[slot];

	if (cli_listed(e) && same(t->command, door->name) && same(t->summary, door->summary)
			&& same(t->usage, door->usage)) {
		return 0;
	}
	if (cli_withdraw(slot)) {
		/* Keeps answering with its old help until a later load finds it idle. */
		ast_log(LOG_NOTICE, "The CLI command '%s' is in use: it keeps its old help text\n", t->command);
		return 0;
	}
	{
		/* summary is a const member: the entry is built whole while it is off the list. */
		struct ast_cli_entry entry = AST_CLI_DEFINE(gate_cli, keep(door->summary));

		t->command = keep(door->name);
		t->usage = keep(door->usage);
		t->summary = entry.summary;
		memcpy(e, &entry, sizeof(entry));
	}
	if (__ast_cli_register(e, NULL)) {
		snprintf(why, why_len, "could not register the CLI command '%s'", door->name);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------
 * AMI: registered with no module, so an action is run (and answered) at once, also in the
 * module's load and unload windows, where Asterisk would otherwise answer "Permission denied"
 * and close the session. Actions carry no user data: one trampoline per slot.
 */

static const char *ami_names[RDC_GATE_AMI];
static const char *ami_synopses[RDC_GATE_AMI];

static int gate_ami(int slot, struct mansession *s, const struct message *m)
{
	const struct rdc_gate_handlers *h = enter();

	if (h) {
		h->ami(slot, s, m);
	} else {
		astman_send_error(s, m, NOT_LOADED);
	}
	leave();
	return 0;
}

#define AMI_TRAMPOLINE(n) \
	static int gate_ami_##n(struct mansession *s, const struct message *m) { return gate_ami(n, s, m); }
AMI_TRAMPOLINE(0)
AMI_TRAMPOLINE(1)
AMI_TRAMPOLINE(2)
AMI_TRAMPOLINE(3)
AMI_TRAMPOLINE(4)
AMI_TRAMPOLINE(5)
AMI_TRAMPOLINE(6)
AMI_TRAMPOLINE(7)

static int (*const ami_trampolines[RDC_GATE_AMI])(struct mansession *, const struct message *) = {
	gate_ami_0, gate_ami_1, gate_ami_2, gate_ami_3, gate_ami_4, gate_ami_5, gate_ami_6, gate_ami_7,
};

/* Whether Asterisk read XML documentation for this action at start (the module's
 * res_discovery_consul-en_US.xml): then `manager show command` is built from it. */
static int ami_documented(const char *name)
{
#ifdef AST_XML_DOCS
	struct ast_xml_xpath_results *found = ast_xmldoc_query("/docs/manager[@name='%s']", name);

	if (found) {
		ast_xml_xpath_results_free(found);
		return 1;
	}
#endif
	return 0;
}

static int ami_open(int slot, const struct rdc_gate_door *door, char *why, size_t why_len)
{
	const char *name, *synopsis;

	if (same(ami_names[slot], door->name) && same(ami_synopses[slot], door->summary)) {
		return 0;
	}
	if (ami_names[slot]) {
		/* Asterisk keeps the name pointer: the old strings stay (see above). */
		ast_manager_unregister((char *) ami_names[slot]);
		ami_names[slot] = NULL;
	}
	name = keep(door->name);
	synopsis = keep(door->summary);
	if (!name || !synopsis) {
		snprintf(why, why_len, "out of memory for the AMI action %s", door->name);
		return -1;
	}
	if (ast_manager_register2(name, EVENT_FLAG_SYSTEM, ami_trampolines[slot], NULL,
			ami_documented(name) ? NULL : synopsis, NULL)) {
		snprintf(why, why_len, "could not register the AMI action %s (is it another module's?)", name);
		return -1;
	}
	ami_names[slot] = name;
	ami_synopses[slot] = synopsis;
	return 0;
}

static void ami_close(int slot)
{
	if (ami_names[slot]) {
		ast_manager_unregister((char *) ami_names[slot]);
		ami_names[slot] = NULL;
	}
}

/* ------------------------------------------------------------------------------------------
 * HTTP: Asterisk reads an entry's callback and data after releasing the URI list lock, so
 * those never change once set; the URI text is changed only while unlinked (it is read under
 * the lock, which ast_http_uri_unlink() takes).
 */

#define URI_MAX 128
#define DESCRIPTION_MAX 256

struct http_door {
	struct ast_http_uri uri;
	char uri_text[URI_MAX];
	char description[DESCRIPTION_MAX];
	int linked;
};

static struct http_door http_doors[RDC_GATE_HTTP];

static int gate_http(struct ast_tcptls_session_instance *ser, const struct ast_http_uri *urih,
	const char *path, enum ast_http_method method, struct ast_variable *params,
	struct ast_variable *headers)
{
	struct http_door *door = urih->data;
	const struct rdc_gate_handlers *h = enter();
	int res = 0;

	if (h) {
		res = h->http(ser, door - http_doors, path, method, params, headers);
	} else {
		ast_http_error(ser, 503, "Service Unavailable", NOT_LOADED);
	}
	leave();
	return res;
}

static int http_open(int slot, const struct rdc_gate_door *spec, char *why, size_t why_len)
{
	struct http_door *door = &http_doors[slot];

	if (strlen(spec->name) >= URI_MAX || strlen(S_OR(spec->summary, "")) >= DESCRIPTION_MAX) {
		snprintf(why, why_len, "the HTTP URI '%s' or its description is too long", spec->name);
		return -1;
	}
	if (door->linked && !strcmp(door->uri_text, spec->name)) {
		return 0;
	}
	if (door->linked) {
		ast_http_uri_unlink(&door->uri);
		door->linked = 0;
	}
	if (!door->uri.callback) {
		/* Set once: never changed or zeroed afterwards. */
		door->uri.callback = gate_http;
		door->uri.data = door;
		door->uri.has_subtree = 1;
		door->uri.key = AST_MODULE;
		door->uri.uri = door->uri_text;
		door->uri.description = door->description;
	}
	ast_copy_string(door->uri_text, spec->name, sizeof(door->uri_text));
	ast_copy_string(door->description, S_OR(spec->summary, ""), sizeof(door->description));
	if (ast_http_uri_link(&door->uri)) {
		snprintf(why, why_len, "could not register the HTTP URI /%s", spec->name);
		return -1;
	}
	door->linked = 1;
	return 0;
}

static void http_close(int slot)
{
	if (http_doors[slot].linked) {
		ast_http_uri_unlink(&http_doors[slot].uri);
		http_doors[slot].linked = 0;
	}
}

/* ------------------------------------------------------------------------------------------
 * The exit hook: registered once; it reaches the module only while handlers are lent.
 */

static int at_exit_registered;

static void gate_at_exit(void)
{
	const struct rdc_gate_handlers *h = enter();

	if (h && h->at_exit) {
		h->at_exit();
	}
	leave();
}

/* ------------------------------------------------------------------------------------------ */

/* Serializes rdc_gate_set_doors (loads run on one thread, but a gate must not rely on it). */
AST_MUTEX_DEFINE_STATIC(doors_lock);

int rdc_gate_set_doors(const struct rdc_gate_doors *doors, char *why, size_t why_len)
{
	int i, res = 0;

	ast_mutex_lock(&doors_lock);
	for (i = 0; i < RDC_GATE_CLI; i++) {
		if (i < doors->ncli) {
			if (cli_open(i, &doors->cli[i], why, why_len)) {
				res = -1;
			}
		} else if (cli_listed(&cli_entries[i]) && cli_withdraw(i)) {
			ast_log(LOG_NOTICE, "The retired CLI command '%s' is in use: it stays until a later load\n",
				cli_texts[i].command);
		}
	}
	for (i = 0; i < RDC_GATE_AMI; i++) {
		if (i < doors->nami) {
			if (ami_open(i, &doors->ami[i], why, why_len)) {
				res = -1;
			}
		} else {
			ami_close(i);
		}
	}
	for (i = 0; i < RDC_GATE_HTTP; i++) {
		if (i < doors->nhttp) {
			if (http_open(i, &doors->http[i], why, why_len)) {
				res = -1;
			}
		} else {
			http_close(i);
		}
	}
	if (!at_exit_registered) {
		ast_register_atexit(gate_at_exit);
		at_exit_registered = 1;
	}
	ast_mutex_unlock(&doors_lock);
	return res;
}

void rdc_gate_lend(const struct rdc_gate_handlers *lend)
{
	/* Only after a take back that saw no call inside: nobody reads `handlers` now. */
	handlers = *lend;
	__atomic_store_n(&lent, 1, __ATOMIC_SEQ_CST);
}

int rdc_gate_take_back(void)
{
	__atomic_store_n(&lent, 0, __ATOMIC_SEQ_CST);
	return rdc_gate_in_flight();
}

int rdc_gate_in_flight(void)
{
	return __atomic_load_n(&in_flight, __ATOMIC_SEQ_CST);
}

void rdc_gate_forget_stop_request(void)
{
	__atomic_store_n(&stop_request_forgotten, 1, __ATOMIC_SEQ_CST);
}

int rdc_gate_stop_request_forgotten(void)
{
	return __atomic_load_n(&stop_request_forgotten, __ATOMIC_SEQ_CST);
}
