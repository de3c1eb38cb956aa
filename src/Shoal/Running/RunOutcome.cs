namespace Shoal.Running;

/// <summary>How a run ended. <see cref="StopSignal"/> is the signal that stopped it early (0: it ran to the end).</summary>
public sealed record RunOutcome(
    int Total,
    int AlreadyDone,
    int AlreadyFailed,
    int Succeeded,
    int Failed,
    int Interrupted,
    int NotRun,
    TimeSpan Elapsed,
    int StopSignal,
    IReadOnlyList<(int TaskId, int Status, bool TimedOut)> FirstFailures)
{
    public int ExitCode => StopSignal != 0 ? 128 + StopSignal : Failed + AlreadyFailed > 0 ? 1 : 0;
}
