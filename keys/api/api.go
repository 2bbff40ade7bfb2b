// Package api is the wire contract of the Keys service (org.edgev2.Keys1):
// its names, option keys, values and the shapes it returns, each written once.
// The adapter (keys/adapter), the client (keys/client), keyd and edgectl use
// these; the package depends on nothing else (not even godbus), so importing
// it costs nothing. dbus/org.edgev2.Keys1*.xml is the documentation of record.
package api

// Names on the bus.
const (
	BusName      = "org.edgev2.Keys1"
	ObjectPath   = "/org/edgev2/Keys1" // the manager; assignable to godbus.ObjectPath
	Interface    = "org.edgev2.Keys1"
	KeyInterface = "org.edgev2.Keys1.Key"
	// Collection is the path element under ObjectPath of the key objects:
	// /org/edgev2/Keys1/keys/<escaped id>.
	Collection = "keys"
)

// Methods of Interface.
const (
	MethodCreateKey     = "CreateKey"
	MethodCreateKeyPair = "CreateKeyPair"
	MethodGetKey        = "GetKey"
	MethodListKeys      = "ListKeys"
	MethodDeleteKey     = "DeleteKey"
	MethodMoveKey       = "MoveKey"
	MethodOpenSession   = "OpenSession"
)

// Methods of KeyInterface.
const (
	MethodSign           = "Sign"
	MethodVerify         = "Verify"
	MethodEncrypt        = "Encrypt"
	MethodDecrypt        = "Decrypt"
	MethodSignDerived    = "SignDerived"
	MethodExportDerived  = "ExportDerived"
	MethodEncryptDerived = "EncryptDerived"
	MethodDecryptDerived = "DecryptDerived"
)

// Properties of Interface.
const (
	PropEngine          = "Engine"
	PropTokenMechanisms = "TokenMechanisms"
)

// Properties of KeyInterface.
const (
	PropID         = "Id"
	PropType       = "Type"
	PropPublicKey  = "PublicKey"
	PropLocation   = "Location"
	PropMechanisms = "Mechanisms"
	PropPreloaded  = "Preloaded"
)

// polkit actions (policy/org.edgev2.policy).
const (
	ActionRead    = "org.edgev2.keys.read"
	ActionManage  = "org.edgev2.keys.manage"
	ActionUse     = "org.edgev2.keys.use"
	ActionExport  = "org.edgev2.keys.export"
	ActionSession = "org.edgev2.keys.session" // OpenSession
)

// DetailKeyID is the polkit detail naming the key a check is about; rules
// scope access per key with action.lookup("key_id").
const DetailKeyID = "key_id"

// a{sv} option keys.
const (
	OptValue = "value" // CreateKey: ay, bytes to import
	OptUsage = "usage" // CreateKey: s, one of the Usage* values
	OptIV    = "iv"    // Encrypt, Decrypt, *Derived: ay
	OptAAD   = "aad"   // Encrypt, Decrypt, *Derived: ay
	// OpenSession: restrict the session to one method (OptOnly) on one
	// key (OptKeyID); both or neither.
	OptOnly  = "only"
	OptKeyID = "key_id"
)

// Usage values of a symmetric key (the "usage" option).
const (
	UsageSign    = "sign"    // HMAC-SHA256 (Sign, Verify)
	UsageEncrypt = "encrypt" // AES-256-GCM
	UsageDerive  = "derive"  // a master key: the *Derived methods only
)

// Key types (the Type property; CreateKeyPair's preference list).
const (
	TypeSymmetric = "symmetric"
	TypeECP256    = "ec-p256"
	TypeECP384    = "ec-p384"
	TypeRSA2048   = "rsa-2048"
	TypeRSA3072   = "rsa-3072"
	TypeRSA4096   = "rsa-4096"
)

// Mechanism names (the mechanism argument of Sign, Verify, Encrypt, ...).
const (
	MechHMACSHA256     = "hmac-sha256"
	MechECDSASHA256    = "ecdsa-sha256"
	MechECDSA          = "ecdsa" // data is already a digest
	MechRSAPKCS1SHA256 = "rsa-pkcs1-sha256"
	MechRSAPSSSHA256   = "rsa-pss-sha256"
	MechRSAPKCS1       = "rsa-pkcs1" // data is a SHA-256/384/512 digest (TLS, CSRs via crypto.Signer)
	MechRSAPSS         = "rsa-pss"   // data is a digest; salt length = digest length
	MechAES256GCM      = "aes-256-gcm"
	MechRSAOAEPSHA256  = "rsa-oaep-sha256"
)

// MaxData is the most data one call may sign or encrypt; larger payloads
// belong in file descriptors, not in messages.
const MaxData = 1 << 20

// ErrLimitsExceeded is the error of an OpenSession over the session limits.
const ErrLimitsExceeded = "org.edgev2.Error.LimitsExceeded"

// KeyProperties are the properties of a key object (KeyInterface).
type KeyProperties struct {
	ID, Type, Location string
	PublicKeyDER       []byte
	Mechanisms         []string
	Preloaded          bool
}
