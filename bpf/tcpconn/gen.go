package tcpconn

//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -cflags "-O2 -g -Wall -Werror -Wpadded -nostdinc" -tags linux -target amd64,arm64 -type tcp_flow -type tcp_flow_stats -type direction -type outcome -type counter bpf tcpconn.c -- -I../include
