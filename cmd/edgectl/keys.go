package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/edgev2/edgev2/fault"
	keysapi "github.com/edgev2/edgev2/keys/api"
	"github.com/edgev2/edgev2/keys/client"
)

func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return subcommands(ctx, "keys", args, stdout, stderr, map[string]func(context.Context, *cli, []string) int{
		"list": keysList, "create": keysCreate, "sign": keysSign,
	})
}

func keysClient(c *cli, action string) (*client.Client, int) {
	return serviceClient(c, "edgev2-keyd", action, client.New)
}

type keyJSON struct {
	ID         string   `json:"id"`
	Type       string   `json:"type"`
	Location   string   `json:"location"`
	Mechanisms []string `json:"mechanisms"`
	Preloaded  bool     `json:"preloaded"`
	PublicKey  string   `json:"public_key,omitempty"` // base64 DER SubjectPublicKeyInfo
}

// keyOf is key id's JSON shape, from its properties.
func keyOf(id string, p client.Properties) keyJSON {
	k := keyJSON{ID: id, Type: p.Type, Location: p.Location, Mechanisms: p.Mechanisms, Preloaded: p.Preloaded}
	if k.Mechanisms == nil {
		k.Mechanisms = []string{}
	}
	if len(p.PublicKeyDER) > 0 {
		k.PublicKey = base64.StdEncoding.EncodeToString(p.PublicKeyDER)
	}
	return k
}

func keysList(ctx context.Context, c *cli, args []string) int {
	_, kc, code := parseThenOpen(c, c.flags(), args, 0, 0, "[--json]", keysClient, keysapi.ActionRead)
	if code >= 0 {
		return code
	}
	ids, err := kc.ListKeys(ctx)
	if err != nil {
		return c.fail(err)
	}
	out := make([]keyJSON, 0, len(ids))
	for _, id := range ids {
		p, err := kc.Key(id).Properties(ctx)
		if err != nil {
			return c.fail(fmt.Errorf("key %q: %w", id, err))
		}
		out = append(out, keyOf(id, p))
	}
	if c.json {
		return c.emit(out)
	}
	rows := make([][]string, 0, len(out))
	for _, k := range out {
		rows = append(rows, []string{k.ID, k.Type, strings.Join(k.Mechanisms, ","), k.Location})
	}
	c.table([]string{"ID", "TYPE", "MECHANISMS", "LOCATION"}, rows)
	return exitOK
}

func keysCreate(ctx context.Context, c *cli, args []string) int {
	fs := c.flags()
	typ := fs.String("type", "ec-p256", "key type: symmetric, or a key-pair preference list such as ec-p256:rsa-2048:*")
	usage := fs.String("usage", keysapi.UsageSign, "symmetric keys: sign, encrypt or derive")
	rest, kc, code := parseThenOpen(c, fs, args, 1, 1, "ID [--type ec-p256|ec-p384|rsa-2048|...|symmetric] [--usage sign|encrypt|derive] [--json]", keysClient, keysapi.ActionManage)
	if code >= 0 {
		return code
	}
	id := rest[0]
	var key *client.Key
	var err error
	if *typ == "symmetric" {
		key, err = kc.CreateKey(ctx, id, *usage, nil)
	} else {
		key, err = kc.CreateKeyPair(ctx, id, *typ)
	}
	if err != nil {
		return c.fail(err)
	}
	p, err := key.Properties(ctx)
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		return c.emit(keyOf(id, p))
	}
	fmt.Fprintf(c.stdout, "key %s: %s at %s\n", id, p.Type, p.Location)
	return exitOK
}

// defaultMechanism is the usual mechanism for a key type (data is hashed
// by the service).
func defaultMechanism(typ string) string {
	switch {
	case typ == keysapi.TypeSymmetric:
		return keysapi.MechHMACSHA256
	case strings.HasPrefix(typ, "ec-"):
		return keysapi.MechECDSASHA256
	case strings.HasPrefix(typ, "rsa-"):
		return keysapi.MechRSAPKCS1SHA256
	}
	return ""
}

func keysSign(ctx context.Context, c *cli, args []string) int {
	fs := c.flags()
	mech := fs.String("mechanism", "", "hmac-sha256, ecdsa-sha256, ecdsa, rsa-pkcs1-sha256, rsa-pss-sha256 (default: from the key's type)")
	data := fs.String("data", "", "the data to sign (default: read --in)")
	in := fs.String("in", "-", "file with the data to sign; - is stdin")
	rest, kc, code := parseThenOpen(c, fs, args, 1, 1, "ID [--mechanism M] [--data TEXT | --in FILE] [--json]", keysClient, keysapi.ActionUse)
	if code >= 0 {
		return code
	}
	id := rest[0]
	var payload []byte
	if isSet(fs, "data") {
		payload = []byte(*data)
	} else {
		var err error
		if payload, err = readInput(*in); err != nil {
			return c.fail(err)
		}
	}
	key := kc.Key(id)
	m := *mech
	if m == "" {
		p, err := key.Properties(ctx)
		if err != nil {
			err = notFound(err, "key", id, "edgectl keys list")
			if fault.Is(err, fault.NotAuthorized) {
				return c.fail(fault.New(fault.InvalidArgs, "cannot read key %q to choose a mechanism; pass --mechanism", id))
			}
			return c.fail(err)
		}
		if m = defaultMechanism(p.Type); m == "" {
			return c.fail(fault.New(fault.InvalidArgs, "key %q of type %s has no default mechanism; pass --mechanism", id, p.Type))
		}
	}
	sig, err := key.Sign(ctx, m, payload)
	if err != nil {
		return c.fail(notFound(err, "key", id, "edgectl keys list"))
	}
	b64 := base64.StdEncoding.EncodeToString(sig)
	if c.json {
		return c.emit(map[string]string{"key": id, "mechanism": m, "signature": b64})
	}
	fmt.Fprintln(c.stdout, b64)
	return exitOK
}

func readInput(path string) ([]byte, error) {
	if path == "-" {
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return nil, fmt.Errorf("read standard input: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fault.Wrap(fault.InvalidArgs, err, "read %s: %v", path, err)
	}
	return b, nil
}
