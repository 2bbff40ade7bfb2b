package testenv

import (
	"strings"
	"testing"
)

func TestContainerdRunsBuiltImageAndSurvivesRestart(t *testing.T) {
	c := StartContainerd(t)
	const ref = "example.com/testenv/busybox:1"
	archive := BuildImage(t, ref, ImageConfig{Cmd: []string{"echo", "hello from busybox"}})
	ImportImage(t, c, "testenv", archive)
	if out := c.Ctr(t, "-n", "testenv", "images", "ls", "-q"); !strings.Contains(out, ref) {
		t.Fatalf("image %s not listed after import: %q", ref, out)
	}
	out := c.Ctr(t, "-n", "testenv", "run", "--rm", ref, "hello")
	if strings.TrimSpace(out) != "hello from busybox" {
		t.Fatalf("ctr run printed %q, want the image's Cmd output", out)
	}
	c.Restart(t)
	if out := c.Ctr(t, "-n", "testenv", "images", "ls", "-q"); !strings.Contains(out, ref) {
		t.Fatalf("image %s lost across a containerd restart: %q", ref, out)
	}
}
