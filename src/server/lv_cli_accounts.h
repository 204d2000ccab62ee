/* lv_cli_accounts.h - the accounts commands of the livevlm binary: `livevlm user|key|tenant|quota
 * ...` (docs/internals/accounts.md "Command line"). Each works on the database directly, opened
 * without a loop (lv_db.h), so no server is needed; a running one picks the change up within a
 * second (its meta.version poll). Secrets are printed once on standard output, alone on their
 * line; errors are a sentence on standard error and a non-zero exit (1; 2 for a usage error). */
#ifndef LV_CLI_ACCOUNTS_H
#define LV_CLI_ACCOUNTS_H

#include <stdbool.h>

/** True when name is one of the commands (user, key, tenant, quota). */
bool lv_cli_accounts_command(const char *name);
/** Run one: argv[0] is the command ("user"), argv[1] the action ("add")... prog names the binary
 * in help texts. Returns the process exit status. */
int lv_cli_accounts_main(const char *prog, int argc, char **argv);

#endif
