package l7trace

//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -cflags "-O2 -g -Wall -Werror -Wpadded -nostdinc" -tags linux -target amd64,arm64 -type l7_event -type l7_dir -type l7_protocol -type l7_counter bpf l7trace.c -- -I../include
