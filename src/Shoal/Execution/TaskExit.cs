namespace Shoal.Execution;

/// <summary>How an attempt ended. <see cref="Signal"/> is non-zero when a signal killed the task (then
/// <see cref="ExitCode"/> is meaningless). Offsets locate the attempt's output in its lane's log files of generation
/// <see cref="Log"/>. <see cref="SpawnFailed"/>: the task never started (the machine's failure, not the task's;
/// <see cref="ExitCode"/> is then the errno). <see cref="Signalled"/>: a signal of ours (timeout, stop) reached the
/// task while it still ran; false when its own exit came first.</summary>
public readonly record struct TaskExit(
    int Task,
    int Attempt,
    int ExitCode,
    int Signal,
    long StartUnixMs,
    long DurationMs,
    int Lane,
    long OutOffset,
    long OutLength,
    long ErrOffset,
    long ErrLength,
    int Worker = 0,
    bool SpawnFailed = false,
    int Log = 0,
    bool Signalled = false);
