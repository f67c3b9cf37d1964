/*
 * rival_ami: a tiny Asterisk module that owns one of res_discovery_consul's AMI action names
 * (DiscoverySetCheck), so that the module's load fails on a taken name (test_gate_unload_paths.py).
 * Built for Asterisk 16 and 22 by integration_tests/testbed/build.py (build_rival_module).
 */

#define AST_MODULE "rival_ami"
#define AST_MODULE_SELF_SYM __internal_rival_ami_self

#include "asterisk.h"

#include "asterisk/manager.h"
#include "asterisk/module.h"

#define RIVAL_ACTION "DiscoverySetCheck"

static int rival_action(struct mansession *s, const struct message *m)
{
	astman_send_ack(s, m, "rival_ami owns this action");
	return 0;
}

static int unload_module(void)
{
	return ast_manager_unregister(RIVAL_ACTION);
}

static int load_module(void)
{
	if (ast_manager_register2(RIVAL_ACTION, EVENT_FLAG_SYSTEM, rival_action, AST_MODULE_SELF,
			"A rival's action", NULL)) {
		return AST_MODULE_LOAD_DECLINE;
	}
	return AST_MODULE_LOAD_SUCCESS;
}

AST_MODULE_INFO(ASTERISK_GPL_KEY, AST_MODFLAG_DEFAULT, "Rival of res_discovery_consul's AMI names",
	.support_level = AST_MODULE_SUPPORT_EXTENDED,
	.load = load_module,
	.unload = unload_module,
);
