package procexit

//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -cflags "-O2 -g -Wall -Werror -Wpadded -nostdinc" -tags linux -target amd64,arm64 -type event -type exit_key -type oom_victim -type event_kind -type counter -type series bpf procexit.c -- -I../include
