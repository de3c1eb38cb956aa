namespace Shoal.Running;

/// <summary>Counters the run loop updates and a progress display reads from another thread (plain int reads).</summary>
public sealed class RunProgress
{
    private int _succeeded;
    private int _failed;
    private int _running;
    private int _interrupted;

    public RunProgress(int total, int alreadyDone, int alreadyFailed, long startTimestamp)
    {
        Total = total;
        AlreadyDone = alreadyDone;
        AlreadyFailed = alreadyFailed;
        StartTimestamp = startTimestamp;
    }

    public int Total { get; }

    /// <summary>Tasks finished by an earlier run of the same journal (skipped now).</summary>
    public int AlreadyDone { get; }

    /// <summary>Tasks that failed in an earlier run and are not retried (no --retry-failed).</summary>
    public int AlreadyFailed { get; }

    public long StartTimestamp { get; }

    public int Succeeded => Volatile.Read(ref _succeeded);

    public int Failed => Volatile.Read(ref _failed);

    public int Running => Volatile.Read(ref _running);

    public int Interrupted => Volatile.Read(ref _interrupted);

    /// <summary>Tasks still to run in this run: neither finished now nor before.</summary>
    public int Remaining => Total - AlreadyDone - AlreadyFailed - Succeeded - Failed;

    internal void Set(int succeeded, int failed, int running, int interrupted)
    {
        Volatile.Write(ref _succeeded, succeeded);
        Volatile.Write(ref _failed, failed);
        Volatile.Write(ref _running, running);
        Volatile.Write(ref _interrupted, interrupted);
    }
}
