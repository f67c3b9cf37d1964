/*
 * The gate: every door Asterisk can call into res_discovery_consul (CLI entries, AMI actions,
 * HTTP URIs, the exit hook) and the little the module must remember for the whole process.
 *
 * It is a library of its own (res_discovery_consul.d/gate-<RDC_GATE_ABI>.so next to the
 * module), opened once per Asterisk process with RTLD_NODELETE and never unmapped. Asterisk
 * reads its entries (an URI entry after releasing the URI list lock, a CLI entry between its
 * lookup and its end, an AMI action after its lookup) at moments the module cannot see, and
 * after a failed unload it may unmap the module all the same (`module unload -h`, a graceful
 * shutdown that ignores the answer). So the entries, their strings and their callbacks live
 * here, are registered with no module pointer (nothing of Asterisk's that is freed at unload
 * refers to them) and stay registered for the life of the process. The shim only lends a table
 * of handlers while it is loaded; without one the gate answers by itself ("not loaded").
 *
 * A new ABI gets a new file name, so an upgraded module never meets an older gate's layout.
 */
#ifndef RDC_GATE_H
#define RDC_GATE_H

#include <stddef.h>

#define RDC_GATE_ABI 2
#define RDC_GATE_CLI 16
#define RDC_GATE_AMI 8
#define RDC_GATE_HTTP 4

struct ast_cli_args;
struct ast_tcptls_session_instance;
struct ast_variable;
struct mansession;
struct message;

/* One door as the module declares it: a CLI command, an AMI action or an HTTP URI. */
struct rdc_gate_door {
	const char *name;     /* command words, action name, URI */
	const char *summary;  /* CLI summary, AMI synopsis, URI description */
	const char *usage;    /* CLI usage (NULL otherwise) */
};

struct rdc_gate_doors {
	int ncli, nami, nhttp;
	struct rdc_gate_door cli[RDC_GATE_CLI];
	struct rdc_gate_door ami[RDC_GATE_AMI];
	struct rdc_gate_door http[RDC_GATE_HTTP];
};

/* What the shim lends while it is loaded; `slot` is the door's index in rdc_gate_doors. */
struct rdc_gate_handlers {
	char *(*cli)(int slot, int cmd, struct ast_cli_args *a);  /* cmd: CLI_GENERATE or CLI_HANDLER */
	int (*ami)(int slot, struct mansession *s, const struct message *m);
	int (*http)(struct ast_tcptls_session_instance *ser, int slot, const char *path, int method,
		struct ast_variable *params, struct ast_variable *headers);
	void (*at_exit)(void);
};

/* The ABI this gate was built with: the shim refuses a gate that differs. */
int rdc_gate_abi(void);

/* Make the registered doors match `doors` (registering each new one, withdrawing those no
 * longer declared). Handlers are not lent. 0 on success; -1 when a door could not be
 * registered, with the reason in `why` (the other doors stay registered, answering "not loaded"). */
int rdc_gate_set_doors(const struct rdc_gate_doors *doors, char *why, size_t why_len);

/* Lend the handlers: from now on the doors call them. */
void rdc_gate_lend(const struct rdc_gate_handlers *handlers);

/* Take the handlers back: no call enters them after this returns. Returns the number of calls
 * still inside them (0 once they have all left). */
int rdc_gate_take_back(void);

/* Calls still inside the lent handlers (entered before rdc_gate_take_back). */
int rdc_gate_in_flight(void);

/* Process-wide memory: 'core stop when convenient' cannot be undone in Asterisk's own state
 * (the message queue stays gone), so the module remembers here, across its unloads, that the
 * stop it saw was cancelled. */
void rdc_gate_forget_stop_request(void);
int rdc_gate_stop_request_forgotten(void);

#endif
