namespace Shoal.Journal;

/// <summary>A journal that cannot be used: corrupt, from a newer Shoal, or for other tasks. The CLI exits 2.</summary>
public sealed class JournalException : Exception
{
    public JournalException(string message)
        : base(message)
    {
    }

    public JournalException(string message, Exception inner)
        : base(message, inner)
    {
    }

    public JournalException()
    {
    }
}
