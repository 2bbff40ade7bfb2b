package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// ownerSecret is what the "owner" module encrypts; the test knows it.
const ownerSecret = "the owner's secret reading: 42.17 degrees"

// encryptRole plays one side of the workload encrypt/decrypt attack test:
//
//   - "owner" encrypts ownerSecret under a random 16-byte IV, prints
//     ENCRYPT-OWNER {...} with the ciphertext, IV and its generation id,
//     then decrypts it again every 200 ms for ever, printing
//     ENCRYPT-DECRYPT {"n":..,"status":..,"ok":..} (the test restarts
//     modrtd and keyd in between);
//   - "attacker" gets the owner's module id, generation id, ciphertext and
//     IV in VICTIM_* and tries to read the plaintext every way the API
//     offers; results go into res.
func encryptRole(role, sock, api, mod, gen string, res map[string]any) {
	// A new connection per request, so every request reaches the socket
	// that is listening now.
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	call := func(asModule, genID, op string, data, iv []byte) ([]byte, int) {
		field := "plaintext"
		if op == "decrypt" {
			field = "ciphertext"
		}
		body, _ := json.Marshal(map[string]string{field: base64.StdEncoding.EncodeToString(data), "initializationVector": base64.StdEncoding.EncodeToString(iv)})
		resp, err := c.Post("http://workload/modules/"+url.PathEscape(asModule)+"/genid/"+url.PathEscape(genID)+"/"+op+"?api-version="+api, "application/json", bytes.NewReader(body))
		if err != nil {
			return nil, 0
		}
		defer resp.Body.Close()
		var out map[string]string
		json.NewDecoder(resp.Body).Decode(&out)
		answer := "ciphertext"
		if op == "decrypt" {
			answer = "plaintext"
		}
		b, _ := base64.StdEncoding.DecodeString(out[answer])
		return b, resp.StatusCode
	}
	switch role {
	case "owner":
		iv := make([]byte, 16)
		rand.Read(iv)
		ct, code := call(mod, gen, "encrypt", []byte(ownerSecret), iv)
		line, _ := json.Marshal(map[string]any{"status": code, "genid": gen,
			"ciphertext": base64.StdEncoding.EncodeToString(ct), "iv": base64.StdEncoding.EncodeToString(iv)})
		fmt.Println("ENCRYPT-OWNER " + string(line))
		for n := 1; ; n++ {
			pt, code := call(mod, gen, "decrypt", ct, iv)
			line, _ := json.Marshal(map[string]any{"n": n, "status": code, "ok": string(pt) == ownerSecret})
			fmt.Println("ENCRYPT-DECRYPT " + string(line))
			time.Sleep(200 * time.Millisecond)
		}
	case "attacker":
		victim, victimGen := os.Getenv("VICTIM"), os.Getenv("VICTIM_GENID")
		ct, _ := base64.StdEncoding.DecodeString(os.Getenv("VICTIM_CIPHERTEXT"))
		iv, _ := base64.StdEncoding.DecodeString(os.Getenv("VICTIM_IV"))
		// Its own data, the legitimate use.
		mine := []byte("the attacker's own data")
		myCT, code := call(mod, gen, "encrypt", mine, iv)
		res["own_encrypt_status"] = code
		pt, code := call(mod, gen, "decrypt", myCT, iv)
		res["own_decrypt_status"], res["own_roundtrip"] = code, string(pt) == string(mine)
		// 1. Naming the victim in the path.
		_, res["as_victim_status"] = call(victim, victimGen, "decrypt", ct, iv)
		// 2. The victim's ciphertext under its own name and generation.
		_, res["own_path_status"] = call(mod, gen, "decrypt", ct, iv)
		// 3. Its own name with a generation id that completes the victim's
		//    module id ("sensor" + "-2<gen>" = "sensor-2" + "<gen>").
		if rest, ok := strings.CutPrefix(victim, mod); ok {
			_, res["spliced_genid_status"] = call(mod, rest+victimGen, "decrypt", ct, iv)
		}
		// 4. A generation id that is not its own.
		_, res["wrong_genid_status"] = call(mod, gen+"0", "encrypt", mine, iv)
		// 5. Encrypt zeros under the victim's IV and XOR with its ciphertext.
		n := len(ct) - 16
		if n < 0 {
			n = 0
		}
		zeros, code := call(mod, gen, "encrypt", make([]byte, n), iv)
		res["zeros_status"] = code
		if len(zeros) >= n && len(ct) >= n {
			x := make([]byte, n)
			for i := range x {
				x[i] = zeros[i] ^ ct[i]
			}
			res["xor_plaintext"] = base64.StdEncoding.EncodeToString(x)
		}
	default:
		res["error"] = "unknown ENCRYPT_ROLE " + role
	}
}
