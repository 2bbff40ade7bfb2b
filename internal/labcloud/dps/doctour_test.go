package dps_test

import (
	"testing"

	"github.com/edgev2/edgev2/internal/testenv"
)

// TestDocTourWorksWithCurlAndOpenSSL runs every "$ " command of the tour in
// docs/labcloud.md in one bash session, against edgev2-labcloud built here.
func TestDocTourWorksWithCurlAndOpenSSL(t *testing.T) {
	testenv.LabcloudDocTour(t, "docs/labcloud.md", "dps", 12, "curl", "openssl", "base64", "od")
}
