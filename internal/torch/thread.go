// Package torch holds the few libtorch helpers every captiongo package needs:
// the OS-thread lock that libtorch's per-thread grad mode demands, a grad-mode
// guard that restores what it found, device choice, and a report of the libtorch
// this binary runs on.
package torch

// #include <stdlib.h>
// int captiongo_grad_set_enabled(int on);
// int captiongo_grad_enabled();
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
)

// PanicError is a panic inside Run, returned as an error; Stack says where.
type PanicError struct {
	Value any
	Stack string
}

func (p *PanicError) Error() string { return fmt.Sprintf("panic: %v", p.Value) }

// Run calls fn on a goroutine locked to its own OS thread and returns fn's error.
//
// libtorch keeps grad mode (and its other thread-local state) per OS thread. A Go
// goroutine may move between OS threads at any call, so a goroutine that drives
// libtorch without a lock can switch grad mode off on one thread and find it still
// on (or off) on another: training then silently records no gradients. Every
// captiongo entry point that touches tensors goes through Run (or Lock), so that
// the rule is one function, not a habit. A panic in fn comes back as an error.
func Run(fn func() error) (err error) {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked: when this goroutine exits, the Go runtime
		// ends the thread too, so no other goroutine inherits its libtorch state.
		var err error
		returned := false
		defer func() {
			switch r := recover(); {
			case r != nil:
				done <- &PanicError{Value: r, Stack: string(debug.Stack())}
			case !returned:
				done <- errors.New("torch.Run: fn exited through runtime.Goexit (t.Fatal inside Run?)")
			default:
				done <- err
			}
		}()
		err = fn()
		returned = true
	}()
	return <-done
}

// Lock pins the calling goroutine to its current OS thread for the rest of its
// life. Use it at the top of a goroutine that owns a model (a worker of its own);
// Run is the usual entry point.
func Lock() { runtime.LockOSThread() }

// NoGrad runs fn with gradient recording off and restores the previous grad mode
// afterwards, even when fn panics. The caller must be on a locked thread (see Run).
//
// It does not use gotch's ts.NoGrad: that one switches grad mode back on rather
// than restoring it, and gotch's GradSetEnabled misreads the previous mode.
func NoGrad(fn func()) {
	prev := SetGradEnabled(false)
	defer SetGradEnabled(prev)
	fn()
}

// SetGradEnabled sets this OS thread's grad mode and returns the previous one.
func SetGradEnabled(on bool) bool {
	v := C.int(0)
	if on {
		v = 1
	}
	return C.captiongo_grad_set_enabled(v) == 1
}

// GradEnabled reports whether libtorch records gradients on this OS thread.
func GradEnabled() bool { return C.captiongo_grad_enabled() == 1 }
