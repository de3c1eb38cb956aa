namespace Shoal.Journal;

/// <summary>One row of the journal: one attempt of one task. <see cref="Status"/> is the exit code, or minus the
/// signal number that killed the task. Output offsets point into the lane logs of (session, worker, lane, log
/// generation: a lane moves to a fresh log file when a task left a process behind that still holds the old one).</summary>
public readonly record struct AttemptRecord(
    int TaskId,
    int Attempt,
    AttemptState State,
    int Status,
    long StartUnixMs,
    long DurationMs,
    int Session,
    int Worker,
    int Lane,
    long OutOffset,
    long OutLength,
    long ErrOffset,
    long ErrLength,
    int Log = 0)
{
    public bool Finished => State is AttemptState.Succeeded or AttemptState.Failed or AttemptState.TimedOut;
}
