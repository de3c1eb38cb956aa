namespace Shoal.Execution;

/// <summary>How an attempt ended. <see cref="Signal"/> is non-zero when a signal killed the task (then
/// <see cref="ExitCode"/> is meaningless). Offsets locate the attempt's output in its lane's log files.</summary>
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
    bool SpawnFailed = false);
