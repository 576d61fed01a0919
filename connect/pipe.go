package connect

// methodPipeSize is the kernel buffer asked for the stream's pipes to a
// method's program (ssh, sudo, docker exec, ...). With the default 64
// KiB a 256 KiB byte-stream frame takes four wake-ups of the writer and
// of the program reading it; ssh reads its stdin 32 KiB at a time, so a
// larger pipe lets it read on without waiting for us between reads.
const methodPipeSize = 1 << 20
