package keys

import (
	"crypto"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/keys/api"
)

// Mechanism names as they appear on the bus (keys/api names them).
const (
	MechHMACSHA256     = api.MechHMACSHA256
	MechECDSASHA256    = api.MechECDSASHA256
	MechECDSA          = api.MechECDSA
	MechRSAPKCS1SHA256 = api.MechRSAPKCS1SHA256
	MechRSAPSSSHA256   = api.MechRSAPSSSHA256
	MechRSAPKCS1       = api.MechRSAPKCS1
	MechRSAPSS         = api.MechRSAPSS
	MechAES256GCM      = api.MechAES256GCM
	MechRSAOAEPSHA256  = api.MechRSAOAEPSHA256
)

// MaxData is the most data one call may sign or encrypt (api.MaxData).
const MaxData = api.MaxData

// Mechanisms lists what a key accepts, for the Mechanisms property.
func Mechanisms(info Info) []string {
	switch {
	case info.Type == Symmetric && info.Usage == UsageEncrypt:
		return []string{MechAES256GCM}
	case info.Type == Symmetric && info.Usage == UsageDerive:
		return []string{} // the *Derived methods only
	case info.Type == Symmetric:
		return []string{MechHMACSHA256}
	case info.Type.IsEC():
		return []string{MechECDSASHA256, MechECDSA}
	case info.Type.IsRSA():
		return []string{MechRSAPKCS1SHA256, MechRSAPSSSHA256, MechRSAPKCS1, MechRSAPSS, MechRSAOAEPSHA256}
	}
	return nil
}

type opKind int

const (
	opSign opKind = iota
	opEncrypt
)

var mechanismOps = map[string]opKind{
	MechHMACSHA256: opSign, MechECDSASHA256: opSign, MechECDSA: opSign,
	MechRSAPKCS1SHA256: opSign, MechRSAPSSSHA256: opSign, MechRSAPKCS1: opSign, MechRSAPSS: opSign,
	MechAES256GCM: opEncrypt, MechRSAOAEPSHA256: opEncrypt,
}

// checkMechanism says whether mech is known, is a sign (or encrypt)
// mechanism as op requires, and fits the key.
func checkMechanism(info Info, mech string, op opKind) error {
	kind, known := mechanismOps[mech]
	if !known {
		return fault.New(fault.InvalidArgs, "unknown mechanism %q (known: hmac-sha256, ecdsa-sha256, ecdsa, rsa-pkcs1-sha256, rsa-pss-sha256, rsa-pkcs1, rsa-pss, aes-256-gcm, rsa-oaep-sha256)", mech)
	}
	if kind != op {
		verb := "signing"
		if op == opEncrypt {
			verb = "encryption"
		}
		return fault.New(fault.InvalidArgs, "mechanism %q is not for %s", mech, verb)
	}
	for _, m := range Mechanisms(info) {
		if m == mech {
			return nil
		}
	}
	return fault.New(fault.InvalidArgs, "mechanism %q does not fit key %q of type %s (it accepts %v)", mech, info.ID, describe(info), Mechanisms(info))
}

func describe(info Info) string {
	if info.Type == Symmetric {
		return "symmetric/" + string(info.Usage)
	}
	return string(info.Type)
}

// digestFor hashes data for a sign mechanism (or takes it as the digest for
// "ecdsa"), returning the digest and the hash it was made with.
func digestFor(mech string, data []byte) ([]byte, crypto.Hash, error) {
	if mech == MechRSAPKCS1 || mech == MechRSAPSS {
		switch len(data) {
		case 32:
			return data, crypto.SHA256, nil
		case 48:
			return data, crypto.SHA384, nil
		case 64:
			return data, crypto.SHA512, nil
		}
		return nil, 0, fault.New(fault.InvalidArgs, "mechanism %q takes a SHA-256, SHA-384 or SHA-512 digest (32, 48 or 64 bytes), not %d bytes", mech, len(data))
	}
	if mech == MechECDSA {
		switch len(data) {
		case 20, 28, 32, 48, 64:
			return data, 0, nil
		}
		return nil, 0, fault.New(fault.InvalidArgs, "mechanism \"ecdsa\" takes a digest of 20, 28, 32, 48 or 64 bytes, not %d", len(data))
	}
	h := crypto.SHA256.New()
	h.Write(data)
	return h.Sum(nil), crypto.SHA256, nil
}
