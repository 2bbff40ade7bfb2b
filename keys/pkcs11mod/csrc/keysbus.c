/* keyd and certd over the system bus (sd-bus). Calls run on connections
 * from a small pool, so threads of the host sign in parallel without
 * sharing an sd_bus object (sd-bus objects are single-threaded). The pool
 * belongs to one process: after fork the child drops the parent's
 * connections (closing only its copies of their sockets) and opens its own. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "internal.h"

#define KEYS_NAME "org.edgev2.Keys1"
#define KEYS_PATH "/org/edgev2/Keys1"
#define KEY_IFACE "org.edgev2.Keys1.Key"
#define CERTS_NAME "org.edgev2.Certificates1"
#define CERTS_PATH "/org/edgev2/Certificates1"
#define CERTS_IFACE "org.edgev2.Certificates1"
#define POOL_MAX 16
#define CALL_TIMEOUT_USEC (30ULL * 1000 * 1000)

HIDDEN pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
HIDDEN pthread_cond_t pool_cv = PTHREAD_COND_INITIALIZER;
static sd_bus *pool_free[POOL_MAX];
static int pool_nfree, pool_nopen;
static pid_t pool_pid;

/* Forget connections inherited from another process: unref closes this
 * process's copy of the socket and frees memory, and sends nothing. */
static void pool_reset_locked(void)
{
	for (int i = 0; i < pool_nfree; i++)
		sd_bus_unref(pool_free[i]);
	pool_nfree = 0;
	pool_nopen = 0;
	pool_pid = getpid();
}

void kb_pool_drop(int after_fork)
{
	pthread_mutex_lock(&pool_mu);
	if (after_fork || pool_pid != getpid()) {
		pool_reset_locked();
	} else {
		for (int i = 0; i < pool_nfree; i++)
			sd_bus_flush_close_unref(pool_free[i]);
		pool_nopen -= pool_nfree;
		pool_nfree = 0;
	}
	pthread_mutex_unlock(&pool_mu);
}

static sd_bus *pool_get(int *err)
{
	sd_bus *bus = NULL;
	int r;

	pthread_mutex_lock(&pool_mu);
	if (pool_pid != getpid())
		pool_reset_locked();
	while (pool_nfree == 0 && pool_nopen >= POOL_MAX)
		pthread_cond_wait(&pool_cv, &pool_mu);
	if (pool_nfree > 0) {
		bus = pool_free[--pool_nfree];
		pthread_mutex_unlock(&pool_mu);
		return bus;
	}
	pool_nopen++;
	pthread_mutex_unlock(&pool_mu);

	/* The system bus, or DBUS_SYSTEM_BUS_ADDRESS. */
	r = sd_bus_open_system(&bus);
	if (r < 0) {
		*err = r;
		pthread_mutex_lock(&pool_mu);
		pool_nopen--;
		pthread_cond_signal(&pool_cv);
		pthread_mutex_unlock(&pool_mu);
		return NULL;
	}
	return bus;
}

static void pool_put(sd_bus *bus, int healthy)
{
	pthread_mutex_lock(&pool_mu);
	if (pool_pid != getpid()) {
		sd_bus_unref(bus);
	} else if (healthy && pool_nfree < POOL_MAX && sd_bus_is_open(bus) > 0) {
		pool_free[pool_nfree++] = bus;
	} else {
		sd_bus_flush_close_unref(bus);
		pool_nopen--;
	}
	pthread_cond_signal(&pool_cv);
	pthread_mutex_unlock(&pool_mu);
}

/* A transport failure (as opposed to an error reply) spoils the connection. */
static int transport_failed(int r, const sd_bus_error *e)
{
	return r < 0 && !sd_bus_error_is_set(e);
}

static int err_is(const sd_bus_error *e, const char *name)
{
	return sd_bus_error_has_name(e, name);
}

/* The action keyd asks polkit about for a method (docs/keys.md). */
static const char *action_of(const char *method)
{
	if (strcmp(method, "GetManagedObjects") == 0)
		return "org.edgev2.keys.read";
	if (strcmp(method, "ListCertificates") == 0 || strcmp(method, "GetCertificate") == 0)
		return "org.edgev2.certs.read";
	return "org.edgev2.keys.use";
}

static CK_RV map_error(int r, const sd_bus_error *e, const char *method, const char *object)
{
	const char *action = action_of(method);
	const char *msg = e && e->message ? e->message : strerror(-r);

	if (!e || !sd_bus_error_is_set(e)) {
		p11_log(LOG_ERR, "%s on %s: the system bus is not reachable: %s", method, object, strerror(-r));
		return CKR_DEVICE_ERROR;
	}
	if (err_is(e, "org.edgev2.Error.NotAuthorized")) {
		p11_log(LOG_WARNING,
			"%s on %s refused: polkit action %s is not granted to uid %u (pid %d): %s; "
			"a polkit rule must allow it (docs/pkcs11.md, \"Who may use a key\")",
			method, object, action, (unsigned)getuid(), (int)getpid(), msg);
		return CKR_KEY_FUNCTION_NOT_PERMITTED;
	}
	if (err_is(e, "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired")) {
		p11_log(LOG_WARNING,
			"%s on %s refused: polkit action %s needs interactive authentication for uid %u (pid %d), "
			"which a PKCS#11 module cannot offer; grant it with a polkit rule (docs/pkcs11.md)",
			method, object, action, (unsigned)getuid(), (int)getpid());
		return CKR_USER_NOT_LOGGED_IN;
	}
	if (err_is(e, "org.edgev2.Error.NotFound"))
		return CKR_KEY_HANDLE_INVALID;
	if (err_is(e, "org.edgev2.Error.InvalidArgs")) {
		p11_log(LOG_DEBUG, "%s on %s: %s", method, object, msg);
		return CKR_DATA_INVALID;
	}
	if (err_is(e, "org.edgev2.Error.NotSupported")) {
		p11_log(LOG_WARNING, "%s on %s: %s", method, object, msg);
		return CKR_MECHANISM_INVALID;
	}
	if (err_is(e, "org.edgev2.Error.Unavailable")) {
		p11_log(LOG_WARNING, "%s on %s: %s", method, object, msg);
		return CKR_DEVICE_ERROR;
	}
	if (err_is(e, SD_BUS_ERROR_SERVICE_UNKNOWN) || err_is(e, SD_BUS_ERROR_NAME_HAS_NO_OWNER) ||
	    err_is(e, SD_BUS_ERROR_NO_REPLY) || err_is(e, SD_BUS_ERROR_TIMEOUT) ||
	    err_is(e, SD_BUS_ERROR_DISCONNECTED)) {
		p11_log(LOG_ERR, "%s on %s: the service is not reachable: %s", method, object, msg);
		return CKR_DEVICE_ERROR;
	}
	p11_log(LOG_ERR, "%s on %s failed: %s: %s", method, object, e->name, msg);
	return CKR_FUNCTION_FAILED;
}

static int append_opt(sd_bus_message *m, const char *key, const unsigned char *v, size_t n)
{
	int r;
	if ((r = sd_bus_message_open_container(m, 'e', "sv")) < 0 || (r = sd_bus_message_append(m, "s", key)) < 0 ||
	    (r = sd_bus_message_open_container(m, 'v', "ay")) < 0 ||
	    (r = sd_bus_message_append_array(m, 'y', v, n)) < 0 || (r = sd_bus_message_close_container(m)) < 0 ||
	    (r = sd_bus_message_close_container(m)) < 0)
		return r;
	return 0;
}

static int append_opts(sd_bus_message *m, const kopts_t *o)
{
	int r;
	if ((r = sd_bus_message_open_container(m, 'a', "{sv}")) < 0)
		return r;
	if (o && o->iv && (r = append_opt(m, "iv", o->iv, o->iv_len)) < 0)
		return r;
	if (o && o->aad && (r = append_opt(m, "aad", o->aad, o->aad_len)) < 0)
		return r;
	if (o && o->label && o->label_len && (r = append_opt(m, "label", o->label, o->label_len)) < 0)
		return r;
	return sd_bus_message_close_container(m);
}

/* A host's signals interrupt sd-bus's poll(): Go's SIGURG preemption, a
 * timer without SA_RESTART. sd_bus_call (systemd 252) returns -EINTR then,
 * with the call already sent, and a PKCS#11 call would fail for nothing. So
 * a call is sent asynchronously and its reply awaited here, where EINTR only
 * means "wait again"; the call's own timeout still bounds the wait (sd-bus
 * answers it with a NoReply error). Same contract as sd_bus_call. */
struct pending {
	int done;
	sd_bus_message *reply;
};

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct pending *p = userdata;
	(void)ret_error;
	p->reply = sd_bus_message_ref(m);
	p->done = 1;
	return 1;
}

static int call(sd_bus *bus, sd_bus_message *m, sd_bus_error *e, sd_bus_message **reply)
{
	struct pending p = {0};
	sd_bus_slot *slot = NULL;
	int r = sd_bus_call_async(bus, &slot, m, on_reply, &p, CALL_TIMEOUT_USEC);

	if (r < 0)
		return r;
	while (!p.done) {
		r = sd_bus_process(bus, NULL);
		if (r > 0 || r == -EINTR)
			continue;
		if (r < 0)
			break;
		r = sd_bus_wait(bus, UINT64_MAX);
		if (r < 0 && r != -EINTR)
			break;
	}
	sd_bus_slot_unref(slot);
	if (!p.done)
		return r;
	if (sd_bus_message_is_method_error(p.reply, NULL)) {
		r = sd_bus_error_copy(e, sd_bus_message_get_error(p.reply));
		sd_bus_message_unref(p.reply);
		if (sd_bus_is_open(bus) <= 0) {
			/* The reply sd-bus made up as the connection went: a
			 * transport failure (no error set), so the pool drops it. */
			sd_bus_error_free(e);
			return -ENOTCONN;
		}
		return r < 0 ? r : -EIO;
	}
	*reply = p.reply;
	return 1;
}

/* call_method is sd_bus_call_method through call(): no argument or one string. */
static int call_method(sd_bus *bus, const char *dest, const char *path, const char *iface, const char *member,
		       sd_bus_error *e, sd_bus_message **reply, const char *arg)
{
	sd_bus_message *m = NULL;
	int r = sd_bus_message_new_method_call(bus, &m, dest, path, iface, member);
	if (r >= 0 && arg)
		r = sd_bus_message_append(m, "s", arg);
	if (r >= 0)
		r = call(bus, m, e, reply);
	sd_bus_message_unref(m);
	return r;
}

CK_RV kb_key_op(const char *path, const char *key_id, const char *method, const char *mech,
		const unsigned char *data, size_t len, const kopts_t *opts, unsigned char **out, size_t *out_len)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *m = NULL, *reply = NULL;
	const void *res;
	size_t res_len;
	CK_RV rv;
	int r = 0;
	sd_bus *bus = pool_get(&r);

	if (!bus)
		return map_error(r, NULL, method, key_id);
	if ((r = sd_bus_message_new_method_call(bus, &m, KEYS_NAME, path, KEY_IFACE, method)) < 0 ||
	    (r = sd_bus_message_append(m, "s", mech)) < 0 || (r = sd_bus_message_append_array(m, 'y', data, len)) < 0 ||
	    (r = append_opts(m, opts)) < 0) {
		sd_bus_message_unref(m);
		pool_put(bus, 1);
		p11_log(LOG_ERR, "%s on %s: build message: %s", method, key_id, strerror(-r));
		return CKR_HOST_MEMORY;
	}
	r = call(bus, m, &e, &reply);
	sd_bus_message_unref(m);
	if (r < 0) {
		rv = map_error(r, &e, method, key_id);
		pool_put(bus, !transport_failed(r, &e));
		sd_bus_error_free(&e);
		return rv;
	}
	/* A message holds a (non-atomic) reference on its bus: every message
	 * of a connection is gone before the connection goes back to the pool. */
	rv = CKR_OK;
	r = sd_bus_message_read_array(reply, 'y', &res, &res_len);
	if (r < 0) {
		p11_log(LOG_ERR, "%s on %s: unexpected reply: %s", method, key_id, strerror(-r));
		rv = CKR_FUNCTION_FAILED;
	} else if (!(*out = malloc(res_len ? res_len : 1))) {
		rv = CKR_HOST_MEMORY;
	} else {
		memcpy(*out, res, res_len);
		*out_len = res_len;
	}
	sd_bus_message_unref(reply);
	pool_put(bus, 1);
	return rv;
}

CK_RV kb_verify(const char *path, const char *key_id, const char *mech, const unsigned char *data, size_t len,
		const unsigned char *sig, size_t sig_len, int *valid)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *m = NULL, *reply = NULL;
	CK_RV rv;
	int r = 0, b = 0;
	sd_bus *bus = pool_get(&r);

	if (!bus)
		return map_error(r, NULL, "Verify", key_id);
	if ((r = sd_bus_message_new_method_call(bus, &m, KEYS_NAME, path, KEY_IFACE, "Verify")) < 0 ||
	    (r = sd_bus_message_append(m, "s", mech)) < 0 || (r = sd_bus_message_append_array(m, 'y', data, len)) < 0 ||
	    (r = sd_bus_message_append_array(m, 'y', sig, sig_len)) < 0 || (r = append_opts(m, NULL)) < 0) {
		sd_bus_message_unref(m);
		pool_put(bus, 1);
		return CKR_HOST_MEMORY;
	}
	r = call(bus, m, &e, &reply);
	sd_bus_message_unref(m);
	if (r < 0) {
		rv = map_error(r, &e, "Verify", key_id);
		pool_put(bus, !transport_failed(r, &e));
		sd_bus_error_free(&e);
		return rv;
	}
	r = sd_bus_message_read(reply, "b", &b);
	sd_bus_message_unref(reply);
	pool_put(bus, 1);
	if (r < 0)
		return CKR_FUNCTION_FAILED;
	*valid = b;
	return CKR_OK;
}

static unsigned mech_bit(const char *s)
{
	static const struct {
		const char *name;
		unsigned bit;
	} names[] = {
		{"hmac-sha256", KM_HMAC_SHA256}, {"ecdsa-sha256", KM_ECDSA_SHA256},
		{"ecdsa", KM_ECDSA}, {"rsa-pkcs1-sha256", KM_RSA_PKCS1_SHA256},
		{"rsa-pss-sha256", KM_RSA_PSS_SHA256}, {"rsa-pkcs1", KM_RSA_PKCS1},
		{"rsa-pss", KM_RSA_PSS}, {"aes-256-gcm", KM_AES_256_GCM},
		{"rsa-oaep-sha256", KM_RSA_OAEP_SHA256},
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strcmp(s, names[i].name) == 0)
			return names[i].bit;
	return 0;
}

/* One key's org.edgev2.Keys1.Key properties, from GetManagedObjects. */
static int read_key_props(sd_bus_message *r, const char **id, const char **type, const void **spki,
			  size_t *spki_len, unsigned *mechs)
{
	const char *name;
	int k;

	if ((k = sd_bus_message_enter_container(r, 'a', "{sv}")) < 0)
		return k;
	while ((k = sd_bus_message_enter_container(r, 'e', "sv")) > 0) {
		if ((k = sd_bus_message_read(r, "s", &name)) < 0)
			return k;
		if (strcmp(name, "Id") == 0 || strcmp(name, "Type") == 0) {
			if ((k = sd_bus_message_read(r, "v", "s", strcmp(name, "Id") == 0 ? id : type)) < 0)
				return k;
		} else if (strcmp(name, "PublicKey") == 0) {
			if ((k = sd_bus_message_enter_container(r, 'v', "ay")) < 0 ||
			    (k = sd_bus_message_read_array(r, 'y', spki, spki_len)) < 0 ||
			    (k = sd_bus_message_exit_container(r)) < 0)
				return k;
		} else if (strcmp(name, "Mechanisms") == 0) {
			const char *s;
			if ((k = sd_bus_message_enter_container(r, 'v', "as")) < 0 ||
			    (k = sd_bus_message_enter_container(r, 'a', "s")) < 0)
				return k;
			while ((k = sd_bus_message_read(r, "s", &s)) > 0)
				*mechs |= mech_bit(s);
			if (k < 0 || (k = sd_bus_message_exit_container(r)) < 0 ||
			    (k = sd_bus_message_exit_container(r)) < 0)
				return k;
		} else if ((k = sd_bus_message_skip(r, "v")) < 0) {
			return k;
		}
		if ((k = sd_bus_message_exit_container(r)) < 0)
			return k;
	}
	if (k < 0)
		return k;
	return sd_bus_message_exit_container(r);
}

CK_RV kb_list_keys(key_cb cb, void *ctx)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	CK_RV rv;
	int r = 0, k;
	sd_bus *bus = pool_get(&r);

	if (!bus)
		return map_error(r, NULL, "GetManagedObjects", KEYS_NAME);
	r = call_method(bus, KEYS_NAME, KEYS_PATH, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", &e, &reply,
			NULL);
	if (r < 0) {
		rv = map_error(r, &e, "GetManagedObjects", KEYS_NAME);
		pool_put(bus, !transport_failed(r, &e));
		sd_bus_error_free(&e);
		return rv;
	}
	if ((k = sd_bus_message_enter_container(reply, 'a', "{oa{sa{sv}}}")) < 0)
		goto bad;
	while ((k = sd_bus_message_enter_container(reply, 'e', "oa{sa{sv}}")) > 0) {
		const char *path, *iface, *id = NULL, *type = NULL;
		const void *spki = NULL;
		size_t spki_len = 0;
		unsigned mechs = 0;
		if ((k = sd_bus_message_read(reply, "o", &path)) < 0 ||
		    (k = sd_bus_message_enter_container(reply, 'a', "{sa{sv}}")) < 0)
			goto bad;
		while ((k = sd_bus_message_enter_container(reply, 'e', "sa{sv}")) > 0) {
			if ((k = sd_bus_message_read(reply, "s", &iface)) < 0)
				goto bad;
			if (strcmp(iface, KEY_IFACE) == 0)
				k = read_key_props(reply, &id, &type, &spki, &spki_len, &mechs);
			else
				k = sd_bus_message_skip(reply, "a{sv}");
			if (k < 0 || (k = sd_bus_message_exit_container(reply)) < 0)
				goto bad;
		}
		if (k < 0 || (k = sd_bus_message_exit_container(reply)) < 0 ||
		    (k = sd_bus_message_exit_container(reply)) < 0)
			goto bad;
		if (id && type)
			cb(ctx, path, id, type, spki, spki_len, mechs);
	}
	if (k < 0)
		goto bad;
	sd_bus_message_unref(reply);
	pool_put(bus, 1);
	return CKR_OK;
bad:
	p11_log(LOG_ERR, "GetManagedObjects of %s: unexpected reply: %s", KEYS_NAME, strerror(-k));
	sd_bus_message_unref(reply);
	pool_put(bus, 1);
	return CKR_FUNCTION_FAILED;
}

CK_RV kb_list_certs(cert_cb cb, void *ctx)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *ids = NULL;
	const char *id;
	CK_RV rv = CKR_OK;
	int r = 0, k;
	sd_bus *bus = pool_get(&r);

	if (!bus)
		return map_error(r, NULL, "ListCertificates", CERTS_NAME);
	r = call_method(bus, CERTS_NAME, CERTS_PATH, CERTS_IFACE, "ListCertificates", &e, &ids, NULL);
	if (r < 0) {
		/* A device without certd still has keys to show. */
		if (err_is(&e, SD_BUS_ERROR_SERVICE_UNKNOWN) || err_is(&e, SD_BUS_ERROR_NAME_HAS_NO_OWNER)) {
			p11_log(LOG_DEBUG, "no certificates: %s is not on the bus", CERTS_NAME);
			rv = CKR_OK;
		} else {
			rv = map_error(r, &e, "ListCertificates", CERTS_NAME);
		}
		pool_put(bus, !transport_failed(r, &e));
		sd_bus_error_free(&e);
		return rv;
	}
	if ((k = sd_bus_message_enter_container(ids, 'a', "s")) < 0) {
		sd_bus_message_unref(ids);
		pool_put(bus, 1);
		return CKR_FUNCTION_FAILED;
	}
	while ((k = sd_bus_message_read(ids, "s", &id)) > 0) {
		sd_bus_message *pem = NULL;
		const char *text;
		r = call_method(bus, CERTS_NAME, CERTS_PATH, CERTS_IFACE, "GetCertificate", &e, &pem, id);
		if (r < 0) {
			/* One certificate the caller may not read (or that just went)
			 * leaves the others listed. */
			if (!err_is(&e, "org.edgev2.Error.NotFound"))
				map_error(r, &e, "GetCertificate", id);
			int spoiled = transport_failed(r, &e);
			sd_bus_error_free(&e);
			if (spoiled) {
				rv = CKR_DEVICE_ERROR;
				break;
			}
			continue;
		}
		if (sd_bus_message_read(pem, "s", &text) >= 0)
			cb(ctx, id, text);
		sd_bus_message_unref(pem);
	}
	sd_bus_message_unref(ids);
	pool_put(bus, rv == CKR_OK);
	return rv;
}
