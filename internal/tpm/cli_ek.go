package tpm

import (
	"fmt"

	"github.com/edgev2/edgev2/internal/tpm/ek"
)

// ekID prints the DPS registration id identityd and the Azure IoT SDKs
// derive, which EK it comes from, and what would change it.
func (c *cli) ekID(args []string) error {
	fs := c.flags("ek")
	tmplS := fs.String("template", "", `EK template when 0x81010001 is empty: "tcg" or "azure-sdk" (identityd.toml [tpm] ek_template); default: the one the EK certificate certifies`)
	persist := fs.Bool("persist", false, "persist the EK at 0x81010001 if it is not (needs the owner auth)")
	if _, err := c.parse(fs, args, 0); err != nil {
		return err
	}
	tmpl, err := ek.ParseTemplate(*tmplS)
	if err != nil {
		return usagef("--template: %v", err)
	}
	t, err := c.open()
	if err != nil {
		return err
	}
	defer t.Close()
	st, err := t.EKStatus(c.ctx, tmpl, *persist)
	if err != nil {
		return err
	}
	if *persist && st.Key.PersistErr != nil {
		return t.ekError(st.Key.PersistErr)
	}
	fmt.Fprint(c.out, FormatEKStatus(st))
	return nil
}

// FormatEKStatus is `edgectl tpm ek`'s report, one "key: value" a line.
func FormatEKStatus(st *EKStatus) string {
	k := st.Key
	handle := "transient (0x81010001 is empty)"
	switch {
	case k.Persisted:
		handle = "0x81010001 (persisted now)"
	case k.Persistent:
		handle = "0x81010001 (persistent)"
	}
	tmpl := templateName(k)
	if !k.Persistent && st.Template == ek.Auto {
		tmpl += " (chosen by the EK certificate)"
		if k.Cert != ek.CertMatches {
			tmpl = k.Template.String() + " (the default: no certificate names another)"
		}
	}
	cert := map[ek.CertState]string{
		ek.CertMatches:    "NV 0x01c00002 certifies this EK",
		ek.CertDiffers:    "NV 0x01c00002 certifies another key (registration id " + st.CertID + ")",
		ek.CertAbsent:     "none in NV 0x01c00002",
		ek.CertUnreadable: "NV 0x01c00002 holds no RSA certificate",
	}[k.Cert]
	out := fmt.Sprintf("registration-id: %s\nek-handle: %s\nek-template: %s\nek-certificate: %s\n", st.ID, handle, tmpl, cert)
	for _, p := range st.Problems {
		out += fmt.Sprintf("warning: %s\n  fix: %s\n", p.Message, p.Fix)
	}
	return out
}
