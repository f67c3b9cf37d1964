/*
 * The HTTP gate: what Asterisk's HTTP server calls for res_discovery_consul's URIs.
 *
 * It is a library of its own (res_discovery_consul.d/http-gate-<RDC_GATE_ABI>.so next to the
 * module), opened once per Asterisk process with RTLD_NODELETE and never unmapped, because
 * Asterisk's HTTP server reads a URI entry and calls its callback AFTER releasing the lock that
 * ast_http_uri_unlink() takes: a request paused in between still calls into the entry once
 * `module unload` returned. The entry, its strings and the callback therefore live here; the
 * shim only lends a handler while it is loaded, and rdc_gate_close() waits until no request is
 * inside that handler (nor can enter it) before the shim may be unmapped.
 *
 * A new ABI gets a new file name, so an upgraded module never meets an older gate's layout.
 */
#ifndef RDC_GATE_H
#define RDC_GATE_H

#define RDC_GATE_ABI 1
#define RDC_GATE_SLOTS 4

struct ast_tcptls_session_instance;
struct ast_variable;

/* The shim's side of one URI: `slot` is the one given to rdc_gate_open. */
typedef int (*rdc_gate_handler)(struct ast_tcptls_session_instance *ser, int slot,
	const char *path, int method, struct ast_variable *params, struct ast_variable *headers);

/* The ABI this gate was built with: the shim refuses a gate that differs. */
int rdc_gate_abi(void);

/* Copy uri and description into the gate and link the URI to handler. 0 on success. */
int rdc_gate_open(int slot, const char *uri, const char *description, rdc_gate_handler handler);

/* Unlink the URI, take the handler back and wait up to timeout_ms for requests inside it.
 * 0: closed, nothing of the shim is running or can run for this slot. -1: a request is still
 * inside after timeout_ms: the slot is left open (linked, handler lent) as it was. */
int rdc_gate_close(int slot, int timeout_ms);

#endif
