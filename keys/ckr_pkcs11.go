// PKCS#11 return codes (CKR_*) as fault kinds and messages.

package keys

import (
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"

	"github.com/edgev2/edgev2/fault"
)

func isCKR(err error, codes ...uint) bool {
	var pe pkcs11.Error
	if !errors.As(err, &pe) {
		return false
	}
	for _, c := range codes {
		if uint(pe) == c {
			return true
		}
	}
	return false
}

// ckrName returns the CKR_* name of a PKCS#11 error ("CKR_PIN_INCORRECT").
func ckrName(err error) string {
	var pe pkcs11.Error
	if !errors.As(err, &pe) {
		return err.Error()
	}
	s := pe.Error() // "pkcs11: 0xA0: CKR_PIN_INCORRECT"
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.HasPrefix(s[i+2:], "CKR_") {
		return s[i+2:]
	}
	return fmt.Sprintf("CKR 0x%X", uint(pe))
}

// mapCKR turns a PKCS#11 error into a fault whose message says what was
// being done (format, args) and the CKR name. Errors that already carry a
// fault kind keep it.
func mapCKR(err error, format string, args ...any) error {
	var fe *fault.Error
	if errors.As(err, &fe) {
		return err
	}
	what := fmt.Sprintf(format, args...)
	var pe pkcs11.Error
	if !errors.As(err, &pe) {
		return fault.Wrap(fault.Failed, err, "%s: %v", what, err)
	}
	return fault.Wrap(ckrKind(uint(pe)), err, "%s: %s", what, ckrName(err))
}

func ckrKind(code uint) fault.Kind {
	switch code {
	case pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_TOKEN_NOT_RECOGNIZED,
		pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_DEVICE_MEMORY, pkcs11.CKR_HOST_MEMORY,
		pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_SESSION_COUNT,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, pkcs11.CKR_USER_NOT_LOGGED_IN, pkcs11.CKR_PIN_LOCKED,
		pkcs11.CKR_PIN_EXPIRED, pkcs11.CKR_TOKEN_WRITE_PROTECTED, pkcs11.CKR_FUNCTION_CANCELED:
		return fault.Unavailable
	case pkcs11.CKR_MECHANISM_INVALID, pkcs11.CKR_MECHANISM_PARAM_INVALID, pkcs11.CKR_CURVE_NOT_SUPPORTED,
		pkcs11.CKR_FUNCTION_NOT_SUPPORTED:
		// keyd builds every mechanism and parameter itself: a refusal is
		// the token's limitation, never the caller's mistake.
		return fault.NotSupported
	case pkcs11.CKR_KEY_TYPE_INCONSISTENT,
		pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED, pkcs11.CKR_KEY_SIZE_RANGE, pkcs11.CKR_DATA_LEN_RANGE,
		pkcs11.CKR_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE,
		pkcs11.CKR_ARGUMENTS_BAD, pkcs11.CKR_TEMPLATE_INCONSISTENT, pkcs11.CKR_TEMPLATE_INCOMPLETE,
		pkcs11.CKR_ATTRIBUTE_VALUE_INVALID, pkcs11.CKR_DOMAIN_PARAMS_INVALID,
		pkcs11.CKR_KEY_NOT_NEEDED, pkcs11.CKR_KEY_INDIGESTIBLE:
		return fault.InvalidArgs
	case pkcs11.CKR_OBJECT_HANDLE_INVALID, pkcs11.CKR_KEY_HANDLE_INVALID:
		return fault.NotFound
	}
	return fault.Failed
}
