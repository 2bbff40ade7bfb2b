// Package api names the Certificates service's D-Bus contract once: bus
// name, object paths, interfaces, polkit actions, option and property keys,
// and the PEM chain codec every caller of the service shares.
package api

// Bus names of the Certificates service (dbus/org.edgev2.Certificates1*.xml).
const (
	BusName       = "org.edgev2.Certificates1"
	ObjectPath    = "/org/edgev2/Certificates1"
	Interface     = "org.edgev2.Certificates1"
	CertInterface = "org.edgev2.Certificates1.Certificate"
	// Collection is the path element under ObjectPath holding one child
	// object per certificate (ObjectPath/certs/<escaped id>).
	Collection = "certs"
)

// Methods of Interface.
const (
	MethodImportCertificate = "ImportCertificate"
	MethodGetCertificate    = "GetCertificate"
	MethodListCertificates  = "ListCertificates"
	MethodCreateCertificate = "CreateCertificate"
	MethodEnsureCertificate = "EnsureCertificate"
	MethodDeleteCertificate = "DeleteCertificate"
)

// Method and signal of CertInterface.
const (
	MethodRenew   = "Renew"
	SignalRenewed = "Renewed"
)

// polkit actions.
const (
	ActionRead   = "org.edgev2.certs.read"
	ActionManage = "org.edgev2.certs.manage"
	// ActionIssue: sign under a CA (details cert_id = the CA's certificate
	// id, issued_cert_id = the new certificate's id, subject = "configured"
	// when [cert_issuance.<id>] fixes the subject, else "requested").
	ActionIssue = "org.edgev2.certs.issue"
	// ActionIssueCA: issue a CA certificate (details cert_id = the issuing
	// CA, the certificate itself when self-signed; issued_cert_id).
	ActionIssueCA = "org.edgev2.certs.issue-ca"
)

// polkit detail keys.
const (
	DetailCertID       = "cert_id"
	DetailIssuedCertID = "issued_cert_id"
	DetailSubject      = "subject"
)

// Values of DetailSubject.
const (
	SubjectConfigured = "configured"
	SubjectRequested  = "requested"
)

// Keys of CreateCertificate's a{sv} options, with their D-Bus signatures
// in CreateOptionTypes.
const (
	OptIssuer     = "issuer"      // s: self_signed | local_ca | est
	OptKeyID      = "key_id"      // s
	OptIssuerCert = "issuer_cert" // s
	OptIssuerKey  = "issuer_key"  // s
	OptValidity   = "validity"    // t: seconds
	OptCA         = "ca"          // b
	OptPathLen    = "path_len"    // u
	OptESTURL     = "est_url"     // s
	OptESTLabel   = "est_label"   // s
)

// CreateOptionTypes are the D-Bus signatures of CreateCertificate's options.
var CreateOptionTypes = map[string]string{
	OptIssuer: "s", OptKeyID: "s", OptIssuerCert: "s", OptIssuerKey: "s",
	OptValidity: "t", OptCA: "b", OptPathLen: "u", OptESTURL: "s", OptESTLabel: "s",
}

// Bounds of CreateCertificate's numeric options.
const (
	MaxValiditySeconds uint64 = 100 * 365 * 24 * 3600 // the option is a "t"
	MaxPathLen                = 16
)

// Properties of CertInterface.
const (
	PropID          = "Id"          // s
	PropSubject     = "Subject"     // s
	PropIssuer      = "Issuer"      // s
	PropSerial      = "Serial"      // s: lower-case hex
	PropNotBefore   = "NotBefore"   // t: Unix seconds, 0 = none
	PropNotAfter    = "NotAfter"    // t
	PropFingerprint = "Fingerprint" // s: SHA-256 of the leaf's DER, hex
	PropRenewAt     = "RenewAt"     // t: 0 = not renewed automatically
	PropPreloaded   = "Preloaded"   // b
)
