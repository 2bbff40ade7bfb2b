/* Log lines of the module: to the host's stderr and to syslog, so a denied
 * key is never a silent failure. EDGEV2_PKCS11_LOG=quiet keeps stderr quiet
 * (syslog still gets warnings); EDGEV2_PKCS11_LOG=debug adds debug lines. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "internal.h"

static const char *log_mode(void)
{
	const char *m = getenv("EDGEV2_PKCS11_LOG");
	return m ? m : "";
}

int p11_debug_enabled(void)
{
	return strcmp(log_mode(), "debug") == 0;
}

void p11_log(int prio, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (prio == LOG_DEBUG && !p11_debug_enabled())
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (strcmp(log_mode(), "quiet") != 0)
		fprintf(stderr, "edgev2-pkcs11[%d]: %s\n", (int)getpid(), msg);
	if (prio <= LOG_WARNING)
		syslog(LOG_USER | prio, "edgev2-pkcs11: %s", msg);
}
