module github.com/edgev2/edgev2

go 1.26.8

require (
	github.com/coreos/go-systemd/v22 v22.7.0 // indirect
	github.com/godbus/dbus/v5 v5.2.4 // indirect
	github.com/miekg/pkcs11 v1.1.2 // indirect
	github.com/pelletier/go-toml/v2 v2.4.3 // indirect
	github.com/smallstep/pkcs7 v0.2.3 // indirect
	golang.org/x/sys v0.27.0 // indirect
)
