package schedstat

//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -cflags "-O2 -g -Wall -Werror -Wpadded -nostdinc" -tags linux -target amd64,arm64 -type sched_stats -type counter bpf schedstat.c -- -I../include
