package launch

import "syscall"

var sigterm = syscall.SIGTERM
