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
    /// <summary>Attempts that could not start (the machine's failure: a process or open-file limit) and were retried.</summary>
    public int SpawnFailures { get; init; }

    /// <summary>Why the run stopped starting tasks on a worker for good, when it did.</summary>
    public string? SpawnError { get; init; }

    /// <summary>The exit code of a run that ended by itself before the allocation's end with tasks left that did not
    /// fit in the time left: "not finished, continue in the next job" (EX_TEMPFAIL of sysexits.h).</summary>
    public const int Unfinished = 75;

    /// <summary>True when the run ended by itself because nothing left could finish before the allocation's end.</summary>
    public bool OutOfTime { get; init; }

    /// <summary>When the allocation ends, if known.</summary>
    public DateTimeOffset? End { get; init; }

    /// <summary>Where the run stopped at a <c>#SHOAL barrier stop-on-failure</c>: its line and the failures above it.</summary>
    public (int Line, int Failed)? StoppedAtBarrier { get; init; }

    /// <summary>Nodes whose setup failed (no task ran on them).</summary>
    public int SetupFailures { get; init; }

    /// <summary>True when no node passed its setup: the tasks did not run (they are not failed).</summary>
    public bool SetupFailedEverywhere { get; init; }

    /// <summary>The job submitted to go on with the run (--continue), if one was.</summary>
    public string? NextJob { get; init; }

    /// <summary>0 all succeeded; 1 some failed, or some never ran (every worker lost); 75 (<see cref="Unfinished"/>)
    /// tasks are left for the next job; 128+signal when stopped.</summary>
    public int ExitCode => StopSignal != 0 ? 128 + StopSignal : OutOfTime ? Unfinished : Failed + AlreadyFailed + NotRun > 0 ? 1 : 0;
}
