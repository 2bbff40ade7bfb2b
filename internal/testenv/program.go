package testenv

import (
	"fmt"
	"os"
	"sync"
)

// Program lets a command (the demo, the benchmark) drive the harness outside
// `go test`: cleanups run on Close, and a missing part or a fatal error stops
// the program after cleaning up, with the reason.
type Program struct {
	Name string

	mu       sync.Mutex
	cleanups []func()
}

var _ TB = (*Program)(nil)

// failure carries a Fatalf/Skipf out of the harness to Run.
type failure struct{ msg string }

func (p *Program) Helper() {}

func (p *Program) Cleanup(f func()) {
	p.mu.Lock()
	p.cleanups = append(p.cleanups, f)
	p.mu.Unlock()
}

func (p *Program) Fatalf(format string, args ...any) { panic(failure{fmt.Sprintf(format, args...)}) }
func (p *Program) Skipf(format string, args ...any)  { panic(failure{fmt.Sprintf(format, args...)}) }
func (p *Program) Logf(format string, args ...any) {
	if os.Getenv("EDGEV2_VERBOSE") != "" {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
}

func (p *Program) TempDir() string {
	dir, err := os.MkdirTemp("", p.Name+"-")
	if err != nil {
		p.Fatalf("temp dir: %v", err)
	}
	p.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Close runs the cleanups, last registered first.
func (p *Program) Close() {
	p.mu.Lock()
	cs := p.cleanups
	p.cleanups = nil
	p.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

// Run runs body, cleans up, and exits non-zero with the reason if body (or
// the harness) failed.
func (p *Program) Run(body func() error) {
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				f, ok := r.(failure)
				if !ok {
					panic(r)
				}
				err = fmt.Errorf("%s", f.msg)
			}
		}()
		return body()
	}()
	p.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", p.Name, err)
		os.Exit(1)
	}
}
