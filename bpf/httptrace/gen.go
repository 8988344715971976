package httptrace

//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -cflags "-O2 -g -Wall -Werror -Wpadded -nostdinc" -tags linux -target amd64,arm64 -type http_event -type http_dir -type http_counter bpf httptrace.c -- -I../include
