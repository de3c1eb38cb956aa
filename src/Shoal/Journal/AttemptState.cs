namespace Shoal.Journal;

/// <summary>Stored as integers in the journal: never renumber.</summary>
public enum AttemptState : byte
{
    Running = 0,
    Succeeded = 1,
    Failed = 2,
    TimedOut = 3,
    Interrupted = 4,
}
