package identity

import (
	"strings"
	"testing"
)

func TestValidateModuleID(t *testing.T) {
	for _, ok := range []string{"edgeAgent", "my-module_1", "a:b.c+d%e#f*g?h!i(j)k,l=m@n;o$p'q"} {
		if err := ValidateModuleID(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", "a b", strings.Repeat("m", 129), "é"} {
		if err := ValidateModuleID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
