/* The PKCS#11 entry points that are not cryptography: initialisation,
 * fork handling, slot/token/session information, object search and
 * attributes. One slot (id 0) holds one token, always present.
 *
 * Locking: g_mu guards every module-global (sessions, objects, state);
 * nothing blocks on the bus while holding it. Fork: a pthread_atfork
 * handler keeps g_mu and the connection pool's lock consistent in the child
 * (glibc unregisters it when the module is dlclose()d); the connection pool
 * notices the new pid and opens the child's own connections. A child may
 * call C_Initialize again (it starts afresh) or carry on with its sessions. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "internal.h"

#define EXPORT __attribute__((visibility("default")))

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static int initialized;
static pid_t init_pid;
static session_t *sessions;
static CK_SESSION_HANDLE next_session = 1;
static int logged_in;

extern pthread_mutex_t pool_mu;
extern pthread_cond_t pool_cv;

void g_lock(void)
{
	pthread_mutex_lock(&g_mu);
}

void g_unlock(void)
{
	pthread_mutex_unlock(&g_mu);
}

static void atfork_prepare(void)
{
	pthread_mutex_lock(&g_mu);
	pthread_mutex_lock(&pool_mu);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&pool_mu);
	pthread_mutex_unlock(&g_mu);
}

static void atfork_child(void)
{
	pthread_mutex_unlock(&pool_mu);
	pthread_cond_init(&pool_cv, NULL); /* waiters were threads of the parent */
	pthread_mutex_unlock(&g_mu);
}

static void register_atfork(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static void pad(CK_UTF8CHAR *dst, const char *src, size_t n)
{
	size_t l = strlen(src);
	memset(dst, ' ', n);
	memcpy(dst, src, l < n ? l : n);
}

void op_clear(op_t *op)
{
	free(op->key_id);
	free(op->path);
	free(op->buf);
	free(op->iv);
	free(op->aad);
	free(op->label);
	free(op->result);
	memset(op, 0, sizeof *op);
}

/* Ends a search's results (not the search: s->finding stays). */
static void found_clear(session_t *s)
{
	free(s->found);
	s->found = NULL;
	s->nfound = s->pos = 0;
}

static void session_free(session_t *s)
{
	op_clear(&s->sign);
	op_clear(&s->verify);
	op_clear(&s->enc);
	op_clear(&s->dec);
	free(s->found);
	free(s);
}

/* Under g_lock. */
static void free_sessions(void)
{
	while (sessions) {
		session_t *n = sessions->next;
		session_free(sessions);
		sessions = n;
	}
	logged_in = 0;
}

/* Under g_lock. */
static void reset_state(void)
{
	free_sessions();
	next_session = 1;
	objects_free_all();
}

/* Takes g_lock if the module is initialised; on CKR_OK g_lock is held. */
static CK_RV lock_initialized(void)
{
	g_lock();
	if (!initialized) {
		g_unlock();
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	return CKR_OK;
}

/* lock_initialized, for a call on slot, the one slot (0). */
static CK_RV lock_slot(CK_SLOT_ID slot)
{
	CK_RV rv = lock_initialized();
	if (rv != CKR_OK)
		return rv;
	if (slot != 0) {
		g_unlock();
		return CKR_SLOT_ID_INVALID;
	}
	return CKR_OK;
}

/* Looks up a session of an initialised module; on CKR_OK g_lock is held. */
CK_RV session_get(CK_SESSION_HANDLE h, session_t **out)
{
	CK_RV rv = lock_initialized();
	if (rv != CKR_OK)
		return rv;
	for (session_t *s = sessions; s; s = s->next)
		if (s->handle == h) {
			*out = s;
			return CKR_OK;
		}
	g_unlock();
	return CKR_SESSION_HANDLE_INVALID;
}

static CK_RV check_init(void)
{
	CK_RV rv;
	g_lock();
	rv = initialized ? CKR_OK : CKR_CRYPTOKI_NOT_INITIALIZED;
	g_unlock();
	return rv;
}

/* The preamble of the slot calls that fill out: an initialised module,
 * slot 0, out not NULL. */
static CK_RV check_slot(CK_SLOT_ID slot, const void *out)
{
	CK_RV rv = check_init();
	if (rv != CKR_OK)
		return rv;
	if (slot != 0)
		return CKR_SLOT_ID_INVALID;
	if (!out)
		return CKR_ARGUMENTS_BAD;
	return CKR_OK;
}

CK_RV C_Initialize(CK_VOID_PTR pInitArgs)
{
	CK_C_INITIALIZE_ARGS *args = pInitArgs;

	if (args) {
		int some = args->CreateMutex || args->DestroyMutex || args->LockMutex || args->UnlockMutex;
		int all = args->CreateMutex && args->DestroyMutex && args->LockMutex && args->UnlockMutex;
		if (args->pReserved || (some && !all))
			return CKR_ARGUMENTS_BAD;
		/* With or without CKF_OS_LOCKING_OK, the module locks with
		 * pthreads, which every threading model on Linux can use. */
	}
	pthread_once(&atfork_once, register_atfork);
	g_lock();
	if (initialized && init_pid == getpid()) {
		g_unlock();
		return CKR_CRYPTOKI_ALREADY_INITIALIZED;
	}
	if (initialized) /* a child of the process that initialised: start afresh */
		reset_state();
	initialized = 1;
	init_pid = getpid();
	g_unlock();
	kb_pool_drop(0); /* a no-op, or drops the parent's connections after fork */
	return CKR_OK;
}

CK_RV C_Finalize(CK_VOID_PTR pReserved)
{
	CK_RV rv;
	if (pReserved)
		return CKR_ARGUMENTS_BAD;
	if ((rv = lock_initialized()) != CKR_OK)
		return rv;
	reset_state();
	initialized = 0;
	g_unlock();
	kb_pool_drop(0);
	return CKR_OK;
}

CK_RV C_GetInfo(CK_INFO_PTR info)
{
	CK_RV rv = check_init();
	if (rv != CKR_OK)
		return rv;
	if (!info)
		return CKR_ARGUMENTS_BAD;
	memset(info, 0, sizeof *info);
	info->cryptokiVersion.major = 2;
	info->cryptokiVersion.minor = 40;
	pad(info->manufacturerID, "edgev2", sizeof info->manufacturerID);
	pad(info->libraryDescription, "edgev2 Keys service", sizeof info->libraryDescription);
	info->libraryVersion.major = 1;
	info->libraryVersion.minor = 0;
	return CKR_OK;
}

CK_RV C_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR list, CK_ULONG_PTR n)
{
	CK_RV rv = check_init();
	(void)tokenPresent;
	if (rv != CKR_OK)
		return rv;
	if (!n)
		return CKR_ARGUMENTS_BAD;
	if (!list) {
		*n = 1;
		return CKR_OK;
	}
	if (*n < 1) {
		*n = 1;
		return CKR_BUFFER_TOO_SMALL;
	}
	list[0] = 0;
	*n = 1;
	return CKR_OK;
}

CK_RV C_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info)
{
	CK_RV rv = check_slot(slot, info);
	if (rv != CKR_OK)
		return rv;
	memset(info, 0, sizeof *info);
	pad(info->slotDescription, "edgev2 Keys service (org.edgev2.Keys1)", sizeof info->slotDescription);
	pad(info->manufacturerID, "edgev2", sizeof info->manufacturerID);
	info->flags = CKF_TOKEN_PRESENT;
	info->hardwareVersion.major = 1;
	info->firmwareVersion.major = 1;
	return CKR_OK;
}

CK_RV C_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
	CK_RV rv = check_slot(slot, info);
	if (rv != CKR_OK)
		return rv;
	memset(info, 0, sizeof *info);
	pad(info->label, "edgev2", sizeof info->label);
	pad(info->manufacturerID, "edgev2", sizeof info->manufacturerID);
	pad(info->model, "Keys1", sizeof info->model);
	pad(info->serialNumber, "edgev2-keys", sizeof info->serialNumber);
	/* No PIN: polkit, asked by keyd about the calling process, decides. */
	info->flags = CKF_TOKEN_INITIALIZED;
	info->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
	info->ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
	info->ulSessionCount = CK_UNAVAILABLE_INFORMATION;
	info->ulRwSessionCount = CK_UNAVAILABLE_INFORMATION;
	info->ulMaxPinLen = 0;
	info->ulMinPinLen = 0;
	info->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
	info->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
	info->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
	info->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
	info->hardwareVersion.major = 1;
	info->firmwareVersion.major = 1;
	return CKR_OK;
}

CK_RV C_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR n)
{
	CK_RV rv = check_slot(slot, n);
	if (rv != CKR_OK)
		return rv;
	return mech_list(list, n);
}

CK_RV C_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info)
{
	CK_RV rv = check_slot(slot, info);
	if (rv != CKR_OK)
		return rv;
	return mech_info(type, info);
}

CK_RV C_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
			   CK_SESSION_HANDLE_PTR ph)
{
	session_t *s;
	CK_RV rv;
	(void)app;
	(void)notify;

	if (!ph)
		return CKR_ARGUMENTS_BAD;
	if ((rv = lock_slot(slot)) != CKR_OK)
		return rv;
	if (!(flags & CKF_SERIAL_SESSION)) {
		g_unlock();
		return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
	}
	s = calloc(1, sizeof *s);
	if (!s) {
		g_unlock();
		return CKR_HOST_MEMORY;
	}
	s->handle = next_session++;
	s->flags = flags & (CKF_SERIAL_SESSION | CKF_RW_SESSION);
	s->next = sessions;
	sessions = s;
	*ph = s->handle;
	g_unlock();
	return CKR_OK;
}

CK_RV C_CloseSession(CK_SESSION_HANDLE h)
{
	session_t **pp;
	CK_RV rv;
	if ((rv = lock_initialized()) != CKR_OK)
		return rv;
	for (pp = &sessions; *pp; pp = &(*pp)->next)
		if ((*pp)->handle == h) {
			session_t *s = *pp;
			*pp = s->next;
			session_free(s);
			if (!sessions)
				logged_in = 0;
			g_unlock();
			return CKR_OK;
		}
	g_unlock();
	return CKR_SESSION_HANDLE_INVALID;
}

CK_RV C_CloseAllSessions(CK_SLOT_ID slot)
{
	CK_RV rv;
	if ((rv = lock_slot(slot)) != CKR_OK)
		return rv;
	free_sessions();
	g_unlock();
	return CKR_OK;
}

CK_RV C_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info)
{
	session_t *s;
	CK_RV rv;
	if (!info)
		return CKR_ARGUMENTS_BAD;
	if ((rv = session_get(h, &s)) != CKR_OK)
		return rv;
	memset(info, 0, sizeof *info);
	info->slotID = 0;
	info->flags = s->flags;
	if (s->flags & CKF_RW_SESSION)
		info->state = logged_in ? CKS_RW_USER_FUNCTIONS : CKS_RW_PUBLIC_SESSION;
	else
		info->state = logged_in ? CKS_RO_USER_FUNCTIONS : CKS_RO_PUBLIC_SESSION;
	g_unlock();
	return CKR_OK;
}

/* The token has no PIN: C_Login is accepted for programs that always log
 * in, and changes nothing about what keyd allows (polkit decides). */
CK_RV C_Login(CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len)
{
	session_t *s;
	CK_RV rv;
	if (!pin && pin_len)
		return CKR_ARGUMENTS_BAD;
	if ((rv = session_get(h, &s)) != CKR_OK)
		return rv;
	if (user != CKU_USER)
		rv = user == CKU_SO ? CKR_PIN_INCORRECT : CKR_USER_TYPE_INVALID;
	else if (logged_in)
		rv = CKR_USER_ALREADY_LOGGED_IN;
	else
		logged_in = 1;
	g_unlock();
	return rv;
}

CK_RV C_Logout(CK_SESSION_HANDLE h)
{
	session_t *s;
	CK_RV rv;
	if ((rv = session_get(h, &s)) != CKR_OK)
		return rv;
	rv = logged_in ? CKR_OK : CKR_USER_NOT_LOGGED_IN;
	logged_in = 0;
	g_unlock();
	return rv;
}

CK_RV C_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n)
{
	session_t *s;
	obj_t *o;
	CK_RV rv, res = CKR_OK;

	if (!tmpl && n)
		return CKR_ARGUMENTS_BAD;
	if ((rv = session_get(h, &s)) != CKR_OK)
		return rv;
	if (!(o = objects_find(oh))) {
		g_unlock();
		return CKR_OBJECT_HANDLE_INVALID;
	}
	for (CK_ULONG i = 0; i < n; i++) {
		rv = objects_get_attr(o, &tmpl[i]);
		if (rv != CKR_OK)
			res = rv;
	}
	g_unlock();
	return res;
}

CK_RV C_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n)
{
	session_t *s;
	CK_RV rv;
	size_t cap = 0;

	if (!tmpl && n)
		return CKR_ARGUMENTS_BAD;
	for (CK_ULONG i = 0; i < n; i++)
		if (!tmpl[i].pValue && tmpl[i].ulValueLen)
			return CKR_ARGUMENTS_BAD;
	if ((rv = session_get(h, &s)) != CKR_OK)
		return rv;
	rv = s->finding ? CKR_OPERATION_ACTIVE : CKR_OK;
	g_unlock();
	if (rv != CKR_OK)
		return rv;
	/* What keyd and certd show this process now. */
	if ((rv = objects_refresh()) != CKR_OK)
		return rv;
	if ((rv = session_get(h, &s)) != CKR_OK)
		return rv;
	if (s->finding) {
		g_unlock();
		return CKR_OPERATION_ACTIVE;
	}
	found_clear(s);
	for (obj_t *o = objects_first(); o; o = o->next)
		cap++;
	if (cap && !(s->found = calloc(cap, sizeof *s->found))) {
		g_unlock();
		return CKR_HOST_MEMORY;
	}
	for (obj_t *o = objects_first(); o; o = o->next)
		if (objects_match(o, tmpl, n))
			s->found[s->nfound++] = o->handle;
	s->finding = 1;
	g_unlock();
	return CKR_OK;
}

CK_RV C_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR out, CK_ULONG max, CK_ULONG_PTR n)
{
	session_t *s;
	CK_RV rv;
	if ((!out && max) || !n)
		return CKR_ARGUMENTS_BAD;
	if ((rv = session_get(h, &s)) != CKR_OK)
		return rv;
	if (!s->finding) {
		g_unlock();
		return CKR_OPERATION_NOT_INITIALIZED;
	}
	*n = 0;
	while (*n < max && s->pos < s->nfound)
		out[(*n)++] = s->found[s->pos++];
	g_unlock();
	return CKR_OK;
}

CK_RV C_FindObjectsFinal(CK_SESSION_HANDLE h)
{
	session_t *s;
	CK_RV rv;
	if ((rv = session_get(h, &s)) != CKR_OK)
		return rv;
	if (!s->finding) {
		g_unlock();
		return CKR_OPERATION_NOT_INITIALIZED;
	}
	found_clear(s);
	s->finding = 0;
	g_unlock();
	return CKR_OK;
}

EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	if (!list)
		return CKR_ARGUMENTS_BAD;
	*list = &module_functions;
	return CKR_OK;
}

/* ---- what the token does not do ---- */
#pragma GCC diagnostic ignored "-Wunused-parameter"
#define UNSUPPORTED(name, params) \
	CK_RV name params { return CKR_FUNCTION_NOT_SUPPORTED; }

UNSUPPORTED(C_WaitForSlotEvent, (CK_FLAGS a, CK_SLOT_ID_PTR b, CK_VOID_PTR c))
UNSUPPORTED(C_InitToken, (CK_SLOT_ID a, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d))
UNSUPPORTED(C_InitPIN, (CK_SESSION_HANDLE a, CK_UTF8CHAR_PTR b, CK_ULONG c))
UNSUPPORTED(C_SetPIN, (CK_SESSION_HANDLE a, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d, CK_ULONG e))
UNSUPPORTED(C_GetOperationState, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c))
UNSUPPORTED(C_SetOperationState, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_OBJECT_HANDLE d, CK_OBJECT_HANDLE e))
UNSUPPORTED(C_CreateObject, (CK_SESSION_HANDLE a, CK_ATTRIBUTE_PTR b, CK_ULONG c, CK_OBJECT_HANDLE_PTR d))
UNSUPPORTED(C_CopyObject, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d, CK_OBJECT_HANDLE_PTR e))
UNSUPPORTED(C_DestroyObject, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b))
UNSUPPORTED(C_GetObjectSize, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ULONG_PTR c))
UNSUPPORTED(C_SetAttributeValue, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d))
UNSUPPORTED(C_EncryptUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
UNSUPPORTED(C_EncryptFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c))
UNSUPPORTED(C_DecryptUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
UNSUPPORTED(C_DecryptFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c))
UNSUPPORTED(C_DigestInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b))
UNSUPPORTED(C_Digest, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
UNSUPPORTED(C_DigestUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c))
UNSUPPORTED(C_DigestKey, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b))
UNSUPPORTED(C_DigestFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c))
UNSUPPORTED(C_SignRecoverInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c))
UNSUPPORTED(C_SignRecover, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
UNSUPPORTED(C_VerifyRecoverInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c))
UNSUPPORTED(C_VerifyRecover, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
UNSUPPORTED(C_DigestEncryptUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
UNSUPPORTED(C_DecryptDigestUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
UNSUPPORTED(C_SignEncryptUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
UNSUPPORTED(C_DecryptVerifyUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
UNSUPPORTED(C_GenerateKey, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_ATTRIBUTE_PTR c, CK_ULONG d, CK_OBJECT_HANDLE_PTR e))
UNSUPPORTED(C_GenerateKeyPair, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_ATTRIBUTE_PTR c, CK_ULONG d, CK_ATTRIBUTE_PTR e, CK_ULONG f, CK_OBJECT_HANDLE_PTR g, CK_OBJECT_HANDLE_PTR i))
UNSUPPORTED(C_WrapKey, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_OBJECT_HANDLE d, CK_BYTE_PTR e, CK_ULONG_PTR f))
UNSUPPORTED(C_UnwrapKey, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_BYTE_PTR d, CK_ULONG e, CK_ATTRIBUTE_PTR f, CK_ULONG g, CK_OBJECT_HANDLE_PTR i))
UNSUPPORTED(C_DeriveKey, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_ATTRIBUTE_PTR d, CK_ULONG e, CK_OBJECT_HANDLE_PTR f))
UNSUPPORTED(C_SeedRandom, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c))
UNSUPPORTED(C_GenerateRandom, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c))
UNSUPPORTED(C_GetFunctionStatus, (CK_SESSION_HANDLE a))
UNSUPPORTED(C_CancelFunction, (CK_SESSION_HANDLE a))
#pragma GCC diagnostic warning "-Wunused-parameter"


CK_FUNCTION_LIST module_functions = {
	{2, 40},
	C_Initialize, C_Finalize, C_GetInfo, C_GetFunctionList, C_GetSlotList, C_GetSlotInfo, C_GetTokenInfo,
	C_GetMechanismList, C_GetMechanismInfo, C_InitToken, C_InitPIN, C_SetPIN, C_OpenSession, C_CloseSession,
	C_CloseAllSessions, C_GetSessionInfo, C_GetOperationState, C_SetOperationState, C_Login, C_Logout,
	C_CreateObject, C_CopyObject, C_DestroyObject, C_GetObjectSize, C_GetAttributeValue, C_SetAttributeValue,
	C_FindObjectsInit, C_FindObjects, C_FindObjectsFinal, C_EncryptInit, C_Encrypt, C_EncryptUpdate,
	C_EncryptFinal, C_DecryptInit, C_Decrypt, C_DecryptUpdate, C_DecryptFinal, C_DigestInit, C_Digest,
	C_DigestUpdate, C_DigestKey, C_DigestFinal, C_SignInit, C_Sign, C_SignUpdate, C_SignFinal,
	C_SignRecoverInit, C_SignRecover, C_VerifyInit, C_Verify, C_VerifyUpdate, C_VerifyFinal,
	C_VerifyRecoverInit, C_VerifyRecover, C_DigestEncryptUpdate, C_DecryptDigestUpdate,
	C_SignEncryptUpdate, C_DecryptVerifyUpdate, C_GenerateKey, C_GenerateKeyPair, C_WrapKey, C_UnwrapKey,
	C_DeriveKey, C_SeedRandom, C_GenerateRandom, C_GetFunctionStatus, C_CancelFunction, C_WaitForSlotEvent,
};
