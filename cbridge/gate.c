/*
 * The HTTP gate (see gate.h for why it is a library of its own that is never unmapped).
 *
 * Everything Asterisk's HTTP server may still touch after an unload lives here: the
 * ast_http_uri entries, their strings and gate_callback. Each request counts itself in before
 * it reads the lent handler, and out after it returns: with both steps sequentially
 * consistent, rdc_gate_close() (handler taken back, then the count read) never misses a
 * request that is about to call the shim.
 */

#define AST_MODULE "res_discovery_consul"
/* asterisk.h wants this from code built outside Asterisk; the gate is no module of its own
 * and never references the symbol. */
#define AST_MODULE_SELF_SYM __internal_res_discovery_consul_gate_self

#include "asterisk.h"

#include <unistd.h>

#include "asterisk/http.h"
#include "asterisk/logger.h"
#include "asterisk/strings.h"

#include "gate.h"

#define URI_MAX 128
#define DESCRIPTION_MAX 256

struct gate_slot {
	struct ast_http_uri uri;
	char uri_text[URI_MAX];
	char description[DESCRIPTION_MAX];
	rdc_gate_handler handler;  /* lent by the shim while it is loaded; NULL otherwise */
	int in_flight;             /* requests between count-in and count-out */
	int linked;
};

static struct gate_slot slots[RDC_GATE_SLOTS];

int rdc_gate_abi(void)
{
	return RDC_GATE_ABI;
}

static int gate_callback(struct ast_tcptls_session_instance *ser, const struct ast_http_uri *urih,
	const char *path, enum ast_http_method method, struct ast_variable *params,
	struct ast_variable *headers)
{
	struct gate_slot *slot = urih->data;
	rdc_gate_handler handler;
	int res = 0;

	__atomic_add_fetch(&slot->in_flight, 1, __ATOMIC_SEQ_CST);
	handler = __atomic_load_n(&slot->handler, __ATOMIC_SEQ_CST);
	if (handler) {
		res = handler(ser, slot - slots, path, method, params, headers);
	} else {
		/* Found just before the URI was unlinked: the module is gone or going. */
		ast_http_error(ser, 503, "Service Unavailable", "res_discovery_consul is not loaded");
	}
	__atomic_sub_fetch(&slot->in_flight, 1, __ATOMIC_SEQ_CST);
	return res;
}

int rdc_gate_open(int slot_index, const char *uri, const char *description, rdc_gate_handler handler)
{
	struct gate_slot *slot;

	if (slot_index < 0 || slot_index >= RDC_GATE_SLOTS || !uri || !handler) {
		return -1;
	}
	slot = &slots[slot_index];
	if (slot->linked) {
		ast_log(LOG_ERROR, "HTTP gate slot %d is still linked to /%s\n", slot_index, slot->uri_text);
		return -1;
	}
	if (strlen(uri) >= URI_MAX) {
		ast_log(LOG_ERROR, "HTTP URI '%s' is longer than %d characters\n", uri, URI_MAX - 1);
		return -1;
	}
	ast_copy_string(slot->uri_text, uri, sizeof(slot->uri_text));
	ast_copy_string(slot->description, S_OR(description, ""), sizeof(slot->description));
	memset(&slot->uri, 0, sizeof(slot->uri));
	slot->uri.description = slot->description;
	slot->uri.uri = slot->uri_text;
	slot->uri.callback = gate_callback;
	slot->uri.has_subtree = 1;
	slot->uri.data = slot;
	slot->uri.key = AST_MODULE;
	__atomic_store_n(&slot->handler, handler, __ATOMIC_SEQ_CST);
	if (ast_http_uri_link(&slot->uri)) {
		__atomic_store_n(&slot->handler, NULL, __ATOMIC_SEQ_CST);
		return -1;
	}
	slot->linked = 1;
	return 0;
}

int rdc_gate_close(int slot_index, int timeout_ms)
{
	struct gate_slot *slot;
	rdc_gate_handler lent;
	int waited_ms = 0;

	if (slot_index < 0 || slot_index >= RDC_GATE_SLOTS) {
		return -1;
	}
	slot = &slots[slot_index];
	if (!slot->linked) {
		return 0;
	}
	/* No new lookup finds the URI after this; lookups made before still land in gate_callback. */
	ast_http_uri_unlink(&slot->uri);
	lent = __atomic_exchange_n(&slot->handler, NULL, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&slot->in_flight, __ATOMIC_SEQ_CST) > 0 && waited_ms < timeout_ms) {
		usleep(1000);
		waited_ms++;
	}
	if (__atomic_load_n(&slot->in_flight, __ATOMIC_SEQ_CST) > 0) {
		/* A request is still inside the shim: give the handler back and stay reachable. */
		__atomic_store_n(&slot->handler, lent, __ATOMIC_SEQ_CST);
		if (ast_http_uri_link(&slot->uri)) {
			ast_log(LOG_ERROR, "HTTP URI /%s could not be linked again\n", slot->uri_text);
		}
		return -1;
	}
	slot->linked = 0;
	return 0;
}
