package dps

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/cloudhttp/cloudhttptest"
	"github.com/edgev2/edgev2/internal/testpki"
)

// enrollmentKey is the symmetric key the fake DPS and the device share.
const enrollmentKey = "NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg="

// The fake cloud of cloudhttptest, named as these tests use it.
type (
	reply         = cloudhttptest.Reply
	seen          = cloudhttptest.Request
	fakeDPS       = cloudhttptest.Server
	sleepRecorder = cloudhttptest.SleepRecorder
	opaqueSigner  = testpki.OpaqueSigner
	testCA        = testpki.CA
)

var (
	hmacSigner = cloudhttptest.HMACSigner
	newCA      = testpki.NewCA
)

// newFakeDPS answers requests with the queued replies, in order; the last
// one repeats. It records every request.
func newFakeDPS(t *testing.T, tlsCfg *tls.Config, replies ...reply) *fakeDPS {
	t.Helper()
	return cloudhttptest.NewServer(t, tlsCfg, nil, cloudhttptest.Replies(replies...))
}

var fixedNow = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// symmetricConfig is a symmetric-key registration against f.
func symmetricConfig(t *testing.T, f *fakeDPS, s *sleepRecorder) Config {
	return Config{
		Endpoint:       f.URL,
		IDScope:        "0ne00000001",
		RegistrationID: "dev-1",
		SAS:            hmacSigner(t, enrollmentKey),
		TrustAnchors:   f.Anchors(),
		Sleep:          s.Sleep,
		Now:            func() time.Time { return fixedNow },
		Timeout:        5 * time.Second,
	}
}
