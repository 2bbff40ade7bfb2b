package ek_test

import (
	"context"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/internal/tpm"
	. "github.com/edgev2/edgev2/internal/tpm/ek"
)

// Another tool (an Azure SDK) persists its EK between Find's look at
// 0x81010001 and its own persist: Find settles on the persisted one.
func TestPersistRaceEndsOnTheEKAtTheHandle(t *testing.T) {
	testenv.RequireRoot(t)
	sw := testenv.StartSwtpm(t)
	tr, err := tpm.OpenTransport(context.Background(), "", sw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	_, name, _, _, err := ReadPublic(tr, Handle)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (tpm2.EvictControl{Auth: owner, ObjectHandle: tpm2.NamedHandle{Handle: Handle, Name: name}, PersistentHandle: Handle}).Execute(tr); err != nil {
		t.Fatal(err)
	}
	ours, err := Create(tr, TCG, nil)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := Create(tr, AzureSDK, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (tpm2.EvictControl{Auth: owner, ObjectHandle: tpm2.NamedHandle{Handle: theirs.Handle, Name: theirs.Name}, PersistentHandle: Handle}).Execute(tr); err != nil {
		t.Fatal(err)
	}
	Flush(tr, theirs.Handle)
	ours.CertKey, ours.Cert = nil, CertAbsent
	Persist(tr, ours, nil)
	if ours.PersistErr != nil || !ours.Persistent || ours.Persisted || ours.RegistrationID() != theirs.RegistrationID() || ours.Identified {
		t.Fatalf("after losing the race: %+v (err %v); want the persisted azure-sdk EK, template unknown", ours, ours.PersistErr)
	}
}
